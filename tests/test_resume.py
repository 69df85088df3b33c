"""--resume: a run killed after epoch N continues from its checkpoint to the result of an uninterrupted run. The runs
are made once: 2 native ranks on the feature cache (bit-for-bit deterministic, so "the same result" is exact), one
process on the image pipeline (conftest.single), 2 ranks in the container (conftest.docker_runs)."""

import json

import pytest

from conftest import have_horovod, invoke, load, one_line_error, only_run, run, scaled
from xeontl.experiment import events

SMOKE = ["--profile", "smoke", "--set", "epochs=6", "--set", "patience=20", "--set", "verbose=0"]


def val_losses(run_dir):
    return [e["val_loss"] for e in load(run_dir, "metrics.json")["per_epoch"]]


@pytest.fixture(scope="module")
def native_resume(tmp_path_factory):
    """The feature-cache path: fixed per-epoch order, no augmentation at train time. Killed after epoch 3 (rank 1
    SIGKILLs itself), resumed, and the same run uninterrupted for comparison."""
    if not have_horovod():
        pytest.skip("native Horovod not installed (invoke setup --native)")
    d = tmp_path_factory.mktemp("resume")
    args = ["reproduce", "--sockets", "2", "--emulate-sockets", "--native", *SMOKE, "--set", "feature_cache=true",
            "--set", f"feature_cache_dir={d / 'cache'}"]
    killed = invoke(*args, "--results-dir", str(d / "a"), "--fault-after-epoch", "3", timeout=scaled(900))
    assert killed.returncode == 1, killed.stdout[-2000:]
    dead = only_run(d / "a", "failed")
    resumed = invoke("reproduce", "--resume", str(dead), "--native", "--results-dir", str(d / "a"), timeout=scaled(900))
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    whole = invoke(*args, "--results-dir", str(d / "b"), timeout=scaled(900))
    assert whole.returncode == 0, whole.stdout[-2000:]
    return {"dead": dead, "cont": only_run(d / "a", "success"), "ref": only_run(d / "b", "success"),
            "stdout": resumed.stdout}


@pytest.mark.slow
def test_the_killed_run_is_failed_with_its_rank_and_a_checkpoint(native_resume):
    dead = native_resume["dead"]
    m = load(dead, "metrics.json")
    assert m["status"] == "failed" and m["failure"]["rank"] == 1 and m["failure"]["signal"] == 9, m["failure"]
    assert [p.name for p in (dead / "checkpoints").iterdir()] == ["epoch-0003"]


@pytest.mark.slow
def test_the_continuation_is_a_new_run_that_records_its_source(native_resume):
    dead, cont = native_resume["dead"], native_resume["cont"]
    assert f"resuming {dead.name} after epoch 3" in native_resume["stdout"]
    assert cont.name != dead.name
    m = load(cont, "metrics.json")
    assert m["resumed_from"]["epoch"] == 3 and m["resumed_from"]["optimizer_iterations"] == 15  # 3 x 80/16
    assert load(cont, "provenance.json")["resumed_from"]["run"] == str(dead)
    assert "EMULATED SOCKETS" in (cont / "command.txt").read_text()  # the same launch: 2 emulated sockets
    assert m["epochs_run"] == 6 and m["workers"] == 2
    # its event log starts at epoch 4 and complies (MLPerf's checker, the bundle's rules)
    log = events.read(cont / events.FILE)
    assert [e["metadata"]["epoch_num"] for e in log if e["key"] == "epoch_start"][0] == 4
    assert events.check(cont / events.FILE) == []


@pytest.mark.slow
def test_the_resumed_run_reaches_the_uninterrupted_result_exactly(native_resume):
    cont, ref = native_resume["cont"], native_resume["ref"]
    assert len(val_losses(ref)) == 6
    assert val_losses(cont) == val_losses(ref)  # every epoch's averaged val_loss, before and after the kill
    assert load(cont, "metrics.json")["final_val_accuracy"] == load(ref, "metrics.json")["final_val_accuracy"]


# ---------------------------------------------------------------------------------------------- one process, images
@pytest.mark.slow
def test_image_pipeline_resume_continues_the_schedule(single):
    """The paper's own path (augmentation on the fly): resumed history, optimizer and final result within tolerance."""
    state = json.loads((single["killed"] / "checkpoints" / "epoch-0002" / "state.json").read_text())
    assert state["epoch"] == 2 and state["optimizer_iterations"] == 2 * 20  # 320 images / 16 per step, one worker
    m = load(single["resumed"], "metrics.json")
    assert m["epochs_run"] == 4 and m["per_epoch"][:2] == state["per_epoch"]  # history carried over
    assert m["per_epoch"][2]["val_loss"] < state["per_epoch"][0]["val_loss"]  # not restarted from scratch
    whole = load(single["whole"], "metrics.json")
    assert abs(m["final_val_accuracy"] - whole["final_val_accuracy"]) <= 0.1  # thread scheduling is not deterministic
    assert m["per_epoch"][-1]["val_loss"] == pytest.approx(whole["per_epoch"][-1]["val_loss"], rel=0.15)


@pytest.mark.slow
def test_resume_refuses_a_different_config(single, tmp_path):
    from conftest import SINGLE

    r = run([*SINGLE, "--seed", "5", "--output", str(tmp_path / "b"), "--resume-from", str(single["killed"])])
    one_line_error(r, "different config (seed)")
    assert not (tmp_path / "b").exists()


def test_resume_bad_input_launches_nothing(tmp_path):
    results = tmp_path / "results"
    one_line_error(invoke("reproduce", "--resume", str(tmp_path / "nope"), "--results-dir", str(results)),
                   "not a run dir")
    run_dir = tmp_path / "r1"
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({"profile": "smoke"}))
    one_line_error(invoke("reproduce", "--resume", str(run_dir), "--results-dir", str(results)),
                   "no completed-epoch checkpoint")
    (run_dir / "metrics.json").write_text(json.dumps({"status": "success"}))
    one_line_error(invoke("reproduce", "--resume", str(run_dir), "--results-dir", str(results)),
                   "finished successfully")
    one_line_error(invoke("reproduce", "--resume", str(run_dir), "--set", "epochs=50", "--results-dir", str(results)),
                   "its own config", "epochs")
    assert not results.exists()


# ---------------------------------------------------------------------------------------------- in the container
@pytest.mark.slow
def test_a_rank_killed_in_the_container_fails_the_run_and_is_named(docker_runs):
    m = load(docker_runs["dead"], "metrics.json")
    assert m["status"] == "failed" and m["failure"]["rank"] == 1 and m["failure"]["signal"] == 9, m["failure"]
    assert load(docker_runs["dead"], "provenance.json")["status"] == "failed"


@pytest.mark.slow
def test_container_run_resumes_in_the_container(docker_runs):
    dead, cont = docker_runs["dead"], docker_runs["cont"]
    m = load(cont, "metrics.json")
    assert m["resumed_from"] == {"checkpoint": "/resume/checkpoints/epoch-0002", "epoch": 2,
                                 "optimizer_iterations": 10}
    assert m["epochs_run"] == 4 and m["per_epoch"][:2] == json.loads(
        (dead / "checkpoints" / "epoch-0002" / "state.json").read_text())["per_epoch"]
    prov = load(cont, "provenance.json")
    assert prov["execution"]["mode"] == "docker" and prov["resumed_from"]["run"] == str(dead)
    assert f"{dead}:/resume:ro" in (cont / "command.txt").read_text()  # mounted read-only: the old run is kept as is


def test_a_run_recorded_before_engine_checks_still_resumes(tmp_path):
    """launch.json of local runs made before 2026-11-30 carries Slurm's container default; resuming one must not be
    refused as '--container with the local engine'."""
    from xeontl.experiment import config
    from xeontl.launch import launch
    from xeontl.launch.options import Options

    run_dir = tmp_path / "old"
    (run_dir / "checkpoints" / "epoch-0002").mkdir(parents=True)
    config.save(config.resolve("smoke"), run_dir / "config.json")
    (run_dir / "launch.json").write_text(json.dumps({
        "sockets": 2, "profile": "smoke", "native": True, "emulate_sockets": True, "cores_per_socket": 0,
        "controller": "mpi", "hosts": "", "image": "xeontl:latest", "extra_env": {}, "engine": "local", "nodes": 1,
        "partition": None, "container": "charliecloud", "time_limit": None}))
    p = launch.prepare(Options(resume=run_dir, native=True, dry_run=True, results_dir=tmp_path / "r"))
    assert p.opts.container is None and p.opts.engine == "local" and p.plan.sockets == 2
