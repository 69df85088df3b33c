"""--resume: a run killed after epoch N continues from its checkpoint to the result of an uninterrupted run."""

import json
import sys

import pytest

from conftest import invoke, needs_horovod, one_line_error, run

pytestmark = pytest.mark.slow

SMOKE = ["--profile", "smoke", "--set", "epochs=6", "--set", "patience=20", "--set", "verbose=0"]


def only_run(results, status):
    runs = [p for p in results.iterdir() if p.is_dir() and not p.name.startswith(".")]
    found = [r for r in runs if json.loads((r / "metrics.json").read_text())["status"] == status]
    assert len(found) == 1, [(r.name, json.loads((r / "metrics.json").read_text())["status"]) for r in runs]
    return found[0]


def val_losses(run_dir):
    return [e["val_loss"] for e in json.loads((run_dir / "metrics.json").read_text())["per_epoch"]]


@needs_horovod
def test_two_rank_run_killed_after_epoch_3_resumes_to_the_uninterrupted_result(tmp_path):
    # The feature-cache path is bit-for-bit deterministic (fixed per-epoch order, no augmentation at train time), so
    # "the same result" can be checked exactly: every epoch's averaged val_loss, before and after the interruption.
    args = ["reproduce", "--sockets", "2", "--emulate-sockets", "--native", *SMOKE, "--set", "feature_cache=true",
            "--set", f"feature_cache_dir={tmp_path / 'cache'}"]
    killed = invoke(*args, "--results-dir", str(tmp_path / "a"), "--fault-after-epoch", "3", timeout=600)
    assert killed.returncode == 1, killed.stdout[-2000:]
    dead = only_run(tmp_path / "a", "failed")
    assert json.loads((dead / "metrics.json").read_text())["failure"]["rank"] == 1
    assert [p.name for p in (dead / "checkpoints").iterdir()] == ["epoch-0003"]

    resumed = invoke("reproduce", "--resume", str(dead), "--native", "--results-dir", str(tmp_path / "a"), timeout=600)
    assert resumed.returncode == 0, resumed.stdout[-3000:]
    assert f"resuming {dead.name} after epoch 3" in resumed.stdout
    cont = only_run(tmp_path / "a", "success")
    assert cont.name != dead.name  # a new run id ...
    m = json.loads((cont / "metrics.json").read_text())
    # ... recording its source
    assert m["resumed_from"]["epoch"] == 3 and m["resumed_from"]["optimizer_iterations"] == 15
    assert json.loads((cont / "provenance.json").read_text())["resumed_from"]["run"] == str(dead)
    assert "EMULATED SOCKETS" in (cont / "command.txt").read_text()  # the same launch: 2 emulated sockets
    assert m["epochs_run"] == 6 and m["workers"] == 2

    whole = invoke(*args, "--results-dir", str(tmp_path / "b"), timeout=600)
    assert whole.returncode == 0, whole.stdout[-2000:]
    ref = only_run(tmp_path / "b", "success")
    assert val_losses(cont) == val_losses(ref)
    assert m["final_val_accuracy"] == json.loads((ref / "metrics.json").read_text())["final_val_accuracy"]


def test_image_pipeline_resume_continues_the_schedule(tmp_path):
    """The paper's own path (augmentation on the fly): resumed history, optimizer and final result within tolerance."""
    base = [sys.executable, "-m", "xeontl", "train", "--profile", "smoke", "--epochs", "4", "--patience", "20",
            "--verbose", "0", "--synthetic-train", "320", "--synthetic-val", "160"]
    killed = run([*base, "--output", str(tmp_path / "a"), "--fault-after-epoch", "2"])
    assert killed.returncode == -9
    state = json.loads((tmp_path / "a" / "checkpoints" / "epoch-0002" / "state.json").read_text())
    assert state["epoch"] == 2 and state["optimizer_iterations"] == 2 * 20  # 320 images / 16 per step, one worker
    r = run([*base, "--output", str(tmp_path / "b"), "--resume-from", str(tmp_path / "a")])
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((tmp_path / "b" / "metrics.json").read_text())
    assert m["epochs_run"] == 4 and m["per_epoch"][:2] == state["per_epoch"]  # history carried over
    assert m["per_epoch"][2]["val_loss"] < state["per_epoch"][0]["val_loss"]  # not restarted from scratch
    u = run([*base, "--output", str(tmp_path / "c")])
    assert u.returncode == 0, u.stderr[-2000:]
    whole = json.loads((tmp_path / "c" / "metrics.json").read_text())
    assert abs(m["final_val_accuracy"] - whole["final_val_accuracy"]) <= 0.1  # thread scheduling is not deterministic
    assert m["per_epoch"][-1]["val_loss"] == pytest.approx(whole["per_epoch"][-1]["val_loss"], rel=0.15)


def test_resume_refuses_a_different_config(tmp_path):
    killed = run([sys.executable, "-m", "xeontl", "train", "--profile", "smoke", "--epochs", "3", "--verbose", "0",
                  "--output", str(tmp_path / "a"), "--fault-after-epoch", "1"])
    assert killed.returncode == -9
    r = run([sys.executable, "-m", "xeontl", "train", "--profile", "smoke", "--epochs", "3", "--seed", "5",
             "--output", str(tmp_path / "b"), "--resume-from", str(tmp_path / "a")])
    one_line_error(r, "different config (seed)")


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


def test_container_run_killed_after_epoch_2_resumes_in_the_container(image, tmp_path):
    from xeontl import launch

    opts = launch.Options(sockets=2, emulate_sockets=True, profile="smoke", image=image, results_dir=tmp_path,
                          overrides={"epochs": "4", "patience": "20", "verbose": "0"},
                          fault_after_epoch=2)  # reaches the ranks inside the container
    rc, dead = launch.execute(launch.prepare(opts))
    assert rc == 1 and json.loads((dead / "metrics.json").read_text())["failure"]["rank"] == 1
    r = invoke("reproduce", "--resume", str(dead), "--results-dir", str(tmp_path), timeout=600)
    assert r.returncode == 0, r.stdout[-3000:]
    cont = only_run(tmp_path, "success")
    m = json.loads((cont / "metrics.json").read_text())
    assert m["resumed_from"] == {"checkpoint": "/resume/checkpoints/epoch-0002", "epoch": 2,
                                 "optimizer_iterations": 10}
    assert m["epochs_run"] == 4 and m["per_epoch"][:2] == json.loads(
        (dead / "checkpoints" / "epoch-0002" / "state.json").read_text())["per_epoch"]
    prov = json.loads((cont / "provenance.json").read_text())
    assert prov["execution"]["mode"] == "docker" and prov["resumed_from"]["run"] == str(dead)
    assert f"{dead}:/resume:ro" in (cont / "command.txt").read_text()  # mounted read-only: the old run is kept as is
