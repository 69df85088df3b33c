"""Training for real (small): one process, two Horovod ranks over MPI (through the launcher) and over Gloo, end to end
on this machine. The runs are made once (fixtures) and asserted from every angle."""

import json
import os
import re
import sys

import jsonschema
import pytest

from conftest import (
    CANARY,
    EARLY_STOP,
    SINGLE,
    ctrl_c,
    have_horovod,
    ignores_sigint,
    load,
    one_line_error,
    run,
    runs_in,
    scaled,
    staged_epoch,
    start,
    wait_for,
)
from xeontl.experiment import events
from xeontl.measure.smoke import check_run
from xeontl.records import provenance

pytestmark = pytest.mark.slow

METRIC_KEYS = {"status", "final_val_accuracy", "best_epoch", "epochs_run", "train_seconds", "images_per_second",
               "per_epoch", "confusion_matrix", "per_class_accuracy"}


def epochs_logged(log_text):
    return [json.loads(m) for m in re.findall(r"epoch \d+: (\{.*\})", log_text)]


# ---------------------------------------------------------------------------------------------- one process
def test_one_process_train_writes_valid_metrics(single):
    out = single["whole"]
    m = load(out, "metrics.json")
    assert METRIC_KEYS <= set(m) and m["status"] == "success" and m["epochs_run"] == 4 and m["workers"] == 1
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(m["per_epoch"][0])
    assert sum(map(sum, m["confusion_matrix"])) == 160 and len(m["per_class_accuracy"]) == 8
    assert "synthetic data — not the paper's dataset" in m["notices"] and "synthetic data" in single["stdout"]
    assert (out / "head.weights.h5").exists() and (out / "logs" / "rank-0.log").exists()
    assert m["learning_rate"] == pytest.approx(0.001)  # one worker: the base LR, unscaled


def test_a_finished_run_is_never_overwritten(single):
    before = (single["whole"] / "metrics.json").read_bytes()
    again = run([*SINGLE, "--output", str(single["whole"])])
    assert again.returncode == 2 and "nothing was overwritten" in again.stderr
    assert (single["whole"] / "metrics.json").read_bytes() == before


# ---------------------------------------------------------------------------------------------- two ranks, MPI
def test_native_run_is_complete_and_recorded(native_run):
    check_run(native_run, 2)
    prov = load(native_run, "provenance.json")
    jsonschema.validate(prov, provenance.schema())
    ex = prov["execution"]
    assert ex["emulated_sockets"] is True and ex["mode"] == "native"
    # the ranks ran where the launcher runs (this very environment, which may itself be a container), not in the image
    assert ex["inside"]["container_runtime"] == provenance.container_runtime() and ex["inside"]["uid"] == os.getuid()
    assert [a["cpus"] for a in ex["per_rank_affinity"]] == ["0", "1"]  # each rank on its own core
    assert prov["software"]["horovod"]["mpi_built"] and prov["math_path"]["isas_dispatched"]
    assert ex["horovod_controller_used"] == ["mpi"] and prov["math_path"]["onednn_version"]
    report = (native_run / "report.md").read_text()
    assert "Emulated sockets" in report and "Synthetic data" in report and "| paper |" in report
    assert "EMULATED SOCKETS" in (native_run / "command.txt").read_text()
    assert (native_run / "curves.png").stat().st_size > 1000


def test_a_secret_in_the_environment_reaches_no_file(native_run):
    assert load(native_run, "provenance.json")["env"]["values"]["XEONTL_TEST_API_TOKEN"] == "<redacted>"
    for f in native_run.rglob("*"):  # logs included
        if f.is_file():
            assert CANARY.encode() not in f.read_bytes(), f


def assert_stopped_together(run_dir, controller):
    """Early stopping decided on the averaged val_loss and acted on by both ranks at the same epoch."""
    m = load(run_dir, "metrics.json")
    assert m["stopped_early"] and m["epochs_run"] == 2 and m["workers"] == 2
    per_rank = [epochs_logged((run_dir / "logs" / f"rank-{k}.log").read_text()) for k in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) == 2  # both ranks stopped at the same epoch
    assert [e["val_loss"] for e in per_rank[0]] == [e["val_loss"] for e in per_rank[1]]  # the averaged one
    assert sorted(x["rank"] for x in m["ranks"]) == [0, 1]
    assert {x["controller"] for x in m["ranks"]} == {controller}  # the controller really used


def test_ranks_stop_together_on_the_averaged_val_loss(native_run):
    assert_stopped_together(native_run, "mpi")


def test_ranks_train_on_disjoint_halves_with_the_lr_scaled(native_run):
    m = load(native_run, "metrics.json")
    assert sum(x["train_images"] for x in m["ranks"]) == 160  # disjoint halves of the 160 training tiles
    assert [x["train_images"] for x in m["ranks"]] == [80, 80]
    assert m["learning_rate"] == pytest.approx(2 * 0.001) and "linear" in m["lr_rule"]
    assert sum(map(sum, m["confusion_matrix"])) == 80  # every validation tile once, each rank predicting its half
    assert all(r["peak_rss_mib"] > 100 for r in m["ranks"])


def test_only_rank_0_writes_results(native_run):
    ranks_wrote = {"checkpoints", "head.weights.h5", "logs", "metrics.json", "mllog.txt", "probe.json"}
    launcher_wrote = {"command.txt", "config.json", "plan.json", "launch.json", "logs-launcher.txt",
                      "provenance.json", "report.md", "setup.json", "curves.png", "throughput.png"}
    assert {p.name for p in native_run.iterdir()} == ranks_wrote | launcher_wrote
    assert [p.name for p in (native_run / "checkpoints").iterdir()] == ["epoch-0002"]  # one, the last epoch's
    assert sorted(p.name for p in (native_run / "logs").iterdir()) == ["rank-0.log", "rank-1.log"]
    probe = load(native_run, "probe.json")  # rank 0's view, with the kernels its own training ran
    math = probe["math_path"]
    assert math["source"] == "training" and math["convolutions"] > 0 and math["isas_dispatched"], math
    assert "ONEDNN_VERBOSE" not in probe["env"]["values"]  # the environment as given, not the capture's switch


def test_event_log_is_mlperf_and_in_order(native_run):
    keys = [e["key"] for e in events.read(native_run / events.FILE)]
    assert keys.count("run_start") == 1 and "early_stop" in keys and keys[-1] == "run_stop"
    assert keys.index("init_start") < keys.index("init_stop") < keys.index("run_start")
    assert_mlperf_parses(native_run / events.FILE)
    assert events.check(native_run / events.FILE) == []  # MLPerf's compliance checker, the bundle's rules


def test_the_compliance_rules_catch_a_broken_log(native_run, tmp_path):
    """The rules can fail: an epoch out of order, a hyper-parameter missing, a second run_stop."""
    lines = (native_run / events.FILE).read_text().splitlines()
    for spoil, needle in ((lambda ls: [ls[0], *[x for x in ls[1:] if '"seed"' not in x]], "'seed'"),
                          (lambda ls: ls + [ls[-1]], "'run_stop'"),
                          (lambda ls: [x.replace('"epoch_num": 2}', '"epoch_num": 3}') for x in ls], "epoch")):
        bad = tmp_path / "mllog.txt"
        bad.write_text("\n".join(spoil(list(lines))) + "\n")
        problems = events.check(bad)
        assert problems and any(needle in p for p in problems), problems


def assert_mlperf_parses(path):
    """MLPerf's own parser reads the event log: every line, the standard keys, epoch numbers and the status."""
    import pkgutil

    from mlperf_logging.compliance_checker import mlp_parser

    newest = max(m.name for m in pkgutil.iter_modules(mlp_parser.__path__) if m.name.startswith("ruleset_"))
    lines, failed = mlp_parser.parse_file(str(path), ruleset=".".join(newest.removeprefix("ruleset_")))
    assert not failed and len(lines) == len(path.read_text().splitlines())
    keys = [ln.key for ln in lines]
    for key in ("init_start", "init_stop", "run_start", "global_batch_size", "opt_base_learning_rate",
                "eval_accuracy", "epoch_start", "epoch_stop", "run_stop"):
        assert key in keys, key
    assert lines[keys.index("global_batch_size")].value["value"] == 32  # 16 per worker x 2
    assert all(ln.value["metadata"]["epoch_num"] >= 1 for ln in lines if ln.key in ("epoch_start", "epoch_stop"))
    assert lines[-1].key == "run_stop" and lines[-1].value["metadata"]["status"] == "success"


# ---------------------------------------------------------------------------------------------- two launches, Gloo
@pytest.fixture(scope="module")
def two_launches(tmp_path_factory):
    """A 2-socket Gloo run started as `nohup ... &` starts it (SIGINT ignored) and sent a Ctrl-C while it trains;
    meanwhile a 1-socket run on the same cores, refused, then queued behind it with --wait."""
    if not have_horovod():
        pytest.skip("native Horovod not installed (invoke setup --native)")
    results = tmp_path_factory.mktemp("two-launches")
    base = [sys.executable, "-m", "invoke", "reproduce", "--profile", "smoke", "--native",
            "--results-dir", str(results)]
    first = start([*base, "--sockets", "2", "--emulate-sockets", "--controller", "gloo", *EARLY_STOP],
                  sigint="ignore")
    queued = None
    try:
        wait_for(lambda: list(results.glob(".staging-*/command.txt")), what="the first run holding its CPUs",
                 proc=first)
        refused = run([*base, "--sockets", "1"], timeout=scaled(300))
        listing_while_refused = sorted(p.name for p in results.iterdir())
        queued = start([*base, "--sockets", "1", "--wait"])
        wait_for(lambda: staged_epoch(results, 1), what="the first run training", proc=first)
        sigint_ignored = ignores_sigint(first.pid)
        ctrl_c(first)  # honoured as `nohup` users expect: ignored, the run goes on
        alive_after_sigint = first.poll() is None
        out_first, _ = first.communicate(timeout=scaled(900))
        out_queued, _ = queued.communicate(timeout=scaled(900))
    finally:
        for p in (first, queued):
            if p is not None and p.poll() is None:
                p.kill()
    return {"results": results, "refused": refused, "listing_while_refused": listing_while_refused,
            "first": (first.returncode, out_first), "queued": (queued.returncode, out_queued),
            "sigint_ignored": sigint_ignored, "alive_after_sigint": alive_after_sigint}


def gloo_run(two_launches):
    return next(r for r in runs_in(two_launches["results"]) if load(r, "plan.json")["sockets"] == 2)


def test_a_run_on_held_cores_is_refused_in_one_line_and_writes_nothing(two_launches):
    line = one_line_error(two_launches["refused"], "in use", "--wait")
    assert re.search(r"CPUs 0-1 by run \d{8}-\d{6}-smoke-2s-[0-9a-f]{4} \(pid \d+\)", line), line
    assert len(two_launches["listing_while_refused"]) == 1  # the first run's staging dir only


def test_with_wait_it_queues_and_both_runs_complete(two_launches):
    rc, out = two_launches["queued"]
    assert rc == 0 and "waiting (--wait)" in out, out[-1500:]
    assert two_launches["first"][0] == 0, two_launches["first"][1][-1500:]
    runs = runs_in(two_launches["results"])
    assert len(runs) == 2 and not any(p.name.startswith(".staging") for p in two_launches["results"].iterdir())
    for r in runs:
        assert load(r, "metrics.json")["status"] == "success" and load(r, "provenance.json")["run_id"] == r.name


def test_an_inherited_sigint_ignore_is_honoured(two_launches):
    """`nohup`/`&` set SIGINT to ignored: a SIGINT to the group while training leaves the run to finish."""
    assert two_launches["sigint_ignored"] and two_launches["alive_after_sigint"]
    assert two_launches["first"][0] == 0 and load(gloo_run(two_launches), "metrics.json")["status"] == "success"


def test_gloo_ranks_stop_together(two_launches):
    run_dir = gloo_run(two_launches)
    assert_stopped_together(run_dir, "gloo")
    assert "--gloo" in (run_dir / "command.txt").read_text()
