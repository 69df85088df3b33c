"""Training for real (small): one process, two Horovod ranks, and the launcher end to end on this machine."""

import json
import re
import sys

import jsonschema
import pytest

from conftest import invoke, needs_horovod, run
from xeontl import events, provenance
from xeontl.smoke import check_run

pytestmark = pytest.mark.slow

METRIC_KEYS = {"status", "final_val_accuracy", "best_epoch", "epochs_run", "train_seconds", "images_per_second",
               "per_epoch", "confusion_matrix", "per_class_accuracy"}


def test_one_epoch_smoke_train_writes_valid_metrics(tmp_path):
    out = tmp_path / "run"
    r = run([sys.executable, "-m", "xeontl", "train", "--profile", "smoke", "--epochs", "1", "--output", str(out)])
    assert r.returncode == 0, r.stderr[-2000:]
    m = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(m) and m["status"] == "success" and m["epochs_run"] == 1
    assert {"loss", "accuracy", "val_loss", "val_accuracy", "seconds"} <= set(m["per_epoch"][0])
    assert sum(map(sum, m["confusion_matrix"])) == 80 and len(m["per_class_accuracy"]) == 8
    assert "synthetic data — not the paper's dataset" in m["notices"] and "synthetic data" in r.stdout
    assert (out / "head.weights.h5").exists() and (out / "logs" / "rank-0.log").exists()
    # never overwrite a finished run
    again = run([sys.executable, "-m", "xeontl", "train", "--profile", "smoke", "--output", str(out)])
    assert again.returncode == 2 and "nothing was overwritten" in again.stderr


def epochs_logged(log_text):
    return [json.loads(m) for m in re.findall(r"epoch \d+: (\{.*\})", log_text)]


@needs_horovod
@pytest.mark.parametrize("controller", ["mpi", "gloo"])
def test_two_horovod_ranks_stop_together_on_disjoint_shards(tmp_path, controller):
    out = tmp_path / "run"
    # min_delta 10: no epoch after the first counts as better, so early stopping fires after epoch 1 + patience 1.
    r = run(["horovodrun", "-np", "2", "-H", "localhost:2", f"--{controller}", sys.executable, "-m", "xeontl",
             "train", "--profile", "smoke", "--epochs", "6", "--patience", "1", "--min-delta", "10",
             "--output", str(out)], timeout=600, env={"OMPI_MCA_mpi_yield_when_idle": "1"})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    m = json.loads((out / "metrics.json").read_text())
    assert m["stopped_early"] and m["epochs_run"] == 2 and m["workers"] == 2
    per_rank = [epochs_logged((out / "logs" / f"rank-{k}.log").read_text()) for k in (0, 1)]
    assert len(per_rank[0]) == len(per_rank[1]) == 2  # both ranks stopped at the same epoch
    # the val_loss both ranks acted on is the averaged one: identical
    assert [e["val_loss"] for e in per_rank[0]] == [e["val_loss"] for e in per_rank[1]]
    assert sorted(x["rank"] for x in m["ranks"]) == [0, 1]
    assert {x["controller"] for x in m["ranks"]} == {controller}  # the controller really used
    assert sum(x["train_images"] for x in m["ranks"]) == 160  # disjoint halves of the 160 training tiles
    assert m["learning_rate"] == pytest.approx(2 * 0.001) and "linear" in m["lr_rule"]
    # only rank 0 writes results, its last epoch's checkpoint included (one, not one per rank or per epoch)
    assert sorted(p.name for p in out.iterdir()) == ["checkpoints", "head.weights.h5", "logs", "metrics.json",
                                                     "mllog.txt", "probe.json"]
    probe = json.loads((out / "probe.json").read_text())  # rank 0's view, with the math sample oneDNN ran
    assert probe["math_path"]["returncode"] == 0 and probe["math_path"]["isas_dispatched"], probe["math_path"]
    assert sum(map(sum, m["confusion_matrix"])) == 80  # every validation tile once, each rank predicting its half
    assert all(r["peak_rss_mib"] > 100 for r in m["ranks"])
    assert [p.name for p in (out / "checkpoints").iterdir()] == ["epoch-0002"]
    keys = [e["key"] for e in events.read(out / events.FILE)]
    assert keys.count("run_start") == 1 and "early_stop" in keys and keys[-1] == "run_stop"
    assert keys.index("init_start") < keys.index("init_stop") < keys.index("run_start")


@needs_horovod
def test_native_reproduce_two_emulated_sockets_end_to_end(tmp_path):
    canary = "canary-9f3b2c-do-not-leak"
    r = invoke("reproduce", "--sockets", "2", "--emulate-sockets", "--profile", "smoke", "--native",
               "--results-dir", str(tmp_path), timeout=900, env={"XEONTL_TEST_API_TOKEN": canary})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    runs = [p for p in tmp_path.iterdir() if p.is_dir()]
    assert len(runs) == 1 and not runs[0].name.startswith(".staging")
    run_dir = runs[0]
    check_run(run_dir, 2)
    prov = json.loads((run_dir / "provenance.json").read_text())
    jsonschema.validate(prov, provenance.schema())
    assert prov["execution"]["emulated_sockets"] is True and prov["execution"]["mode"] == "native"
    assert [a["cpus"] for a in prov["execution"]["per_rank_affinity"]] == ["0", "1"]  # each rank on its own core
    assert prov["env"]["values"]["XEONTL_TEST_API_TOKEN"] == "<redacted>"
    assert prov["software"]["horovod"]["mpi_built"] and prov["math_path"]["isas_dispatched"]
    assert prov["execution"]["horovod_controller_used"] == ["mpi"] and prov["math_path"]["onednn_version"]
    for f in run_dir.rglob("*"):  # the canary secret reaches no file, logs included
        if f.is_file():
            assert canary.encode() not in f.read_bytes(), f
    report = (run_dir / "report.md").read_text()
    assert "Emulated sockets" in report and "Synthetic data" in report and "| paper |" in report
    assert "EMULATED SOCKETS" in (run_dir / "command.txt").read_text()
    assert (run_dir / "curves.png").stat().st_size > 1000
    assert_mlperf_parses(run_dir / events.FILE)


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
