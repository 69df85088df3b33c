"""report.md verdicts, speedup and compare on run dirs the tests write; two launches at once never collide."""

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, needs_horovod, one_line_error
from xeontl import claims, report


def fake_run(path, sockets, seconds, acc=0.95, epochs=44, notices=(), emulated=False, profile="paper", metrics=None,
             dataset="colorectal_histology", weights="savedmodel", precision="bf16", cpu="Xeon 8480+", **prov):
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({
        "dataset": {"name": dataset}, "weights": {"kind": weights, "topology": "ResNet50 v1.5"}, **(metrics or {}),
        "status": "success", "final_val_accuracy": acc, "epochs_run": epochs, "best_epoch": epochs - 10,
        "train_seconds": seconds, "notices": list(notices), "images_per_second": 100.0,
        "per_epoch": [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.5, "seconds": 3.0}],
        "ranks": [{"rank": r, "images_per_second": 50.0, "affinity": [r], "train_images": 2000}
                  for r in range(sockets)]}))
    (path / "plan.json").write_text(json.dumps({"sockets": sockets, "emulated": emulated,
                                                "workers": [{"cores": 56}] * sockets}))
    (path / "config.json").write_text(json.dumps({"profile": profile, "seed": 42, "precision": precision}))
    (path / "provenance.json").write_text(json.dumps({"run_id": path.name, "math_path": {"amx_used": True}, "host": {
        "cpu": {"model_name": cpu, "flags_of_note": {"amx_bf16": True}},
        "topology": {"sockets": 2, "cores_per_socket": [56, 56]}}, "execution": {"mode": "native"}, **prov}))
    return path


def test_real_data_on_paper_hardware_gets_verdicts(tmp_path):
    one = fake_run(tmp_path / "a", 1, 300.0)
    two = fake_run(tmp_path / "b", 2, 165.0, acc=0.90)
    text = report.write(two, [one]).read_text()
    assert "| validation accuracy 94.5 % (2-socket run) | 0.945 | +-0.01 (absolute) | 0.900 | FAIL |" in text
    assert "| converges in ~43-45 epochs (early stopping, patience 10) | 44 | +-7 epochs | 44 | PASS |" in text
    assert "| 2 sockets: about 3 min | 3.00 min | +-20% | 2.75 min | PASS |" in text
    assert "| 1 socket: under 5.5 min | 5.50 min | upper bound | 5.00 min | PASS |" in text
    assert "| speedup 1 -> 2 sockets 1.83x | 1.83x | +-0.1x | 1.82x | PASS |" in text
    assert "| BF16 accuracy = FP32 accuracy | 0.000 | +-0.01 (absolute) | - | not comparable: fp32_run" in text
    assert (two / "curves.png").exists() and (two / "throughput.png").exists()


def test_demo_runs_say_not_comparable_and_list_differences_first(tmp_path):
    run = fake_run(tmp_path / "d", 2, 170.0, notices=["synthetic data — not the paper's dataset"], emulated=True,
                   dataset="synthetic", weights="random", profile="demo")
    text = report.write(run).read_text()
    differences = text.index("## How this run differs")
    assert differences < text.index("## The paper's claims")
    assert "Synthetic data" in text and "Emulated sockets" in text
    assert "PASS" not in text and "FAIL" not in text and "not comparable" in text
    assert "paper_data: dataset synthetic" in text and "real_sockets: emulated sockets" in text


def test_feature_cache_and_resumed_runs_are_not_the_papers_protocol(tmp_path):
    run = fake_run(tmp_path / "f", 2, 20.0, metrics={
        "feature_cache": {"views": 2, "hit": False, "build_seconds": 12.5},
        "resumed_from": {"epoch": 3, "checkpoint": "results/x/checkpoints/epoch-0003"}})
    text = report.write(run).read_text()
    assert "Feature cache (--feature-cache)" in text and "2 augmented view(s)" in text and "built in 12.5 s" in text
    assert "Resumed after epoch 3" in text
    assert "PASS" not in text and "FAIL" not in text and "paper_protocol: feature cache, resumed" in text


def test_verdicts_come_from_structured_fields_not_sentences(tmp_path):
    """A run whose notices say nothing still is not comparable when its fields say synthetic data; and wording
    alone (a notice) never makes a real-data run not comparable."""
    quiet = fake_run(tmp_path / "q", 2, 170.0, dataset="synthetic", weights="random")
    rows = {r["claim"]: r["verdict"] for r in claims.judge(None, claims.load_run(quiet))}
    assert rows["accuracy"].startswith("not comparable: paper_data: dataset synthetic; paper_weights: weights random")
    noisy = fake_run(tmp_path / "n", 2, 170.0, notices=["synthetic data — not the paper's dataset"])
    rows = {r["claim"]: r["verdict"] for r in claims.judge(None, claims.load_run(noisy))}
    assert rows["accuracy"] == "PASS"


def test_ratio_claims_on_a_host_that_is_not_the_papers(tmp_path):
    """Real sockets, real data, another CPU: times are not judged, the speedup and efficiency are."""
    kw = dict(cpu="AMD EPYC 9654", metrics=None)
    one = fake_run(tmp_path / "a", 1, 200.0, **kw)
    two = fake_run(tmp_path / "b", 2, 110.0, **kw)
    prov = json.loads((two / "provenance.json").read_text())
    for run in (one, two):
        p = json.loads((run / "provenance.json").read_text())
        p["host"]["cpu"]["flags_of_note"] = {"amx_bf16": False}
        (run / "provenance.json").write_text(json.dumps(p))
    rows = {r["claim"]: r for r in claims.judge(claims.load_run(one), claims.load_run(two))}
    assert rows["minutes_2s"]["verdict"].startswith("not comparable: paper_hardware: no AMX")
    assert rows["speedup"]["verdict"] == "PASS" and rows["efficiency"]["verdict"] == "PASS"  # 1.82x, 0.909
    assert rows["accuracy"]["verdict"] == "PASS" and prov


def test_a_run_is_judged_against_the_committed_reference_of_its_kind(tmp_path):
    ref_dir = tmp_path / "reference"
    fake_run(ref_dir / "r1", 2, 150.0, acc=0.935, emulated=True, profile="demo", cpu="AMD EPYC")
    close = claims.load_run(fake_run(tmp_path / "a", 2, 170.0, acc=0.92, emulated=True, profile="demo",
                                     cpu="AMD EPYC"))
    verdict = claims.against_reference(close, claims.find_reference(close, ref_dir))
    assert verdict["reproduced"] and verdict["reference"] == "r1" and verdict["time_judged"]
    slow = claims.load_run(fake_run(tmp_path / "b", 2, 250.0, acc=0.93, emulated=True, profile="demo",
                                    cpu="AMD EPYC"))
    verdict = claims.against_reference(slow, claims.find_reference(slow, ref_dir))
    assert not verdict["reproduced"] and "+67%" in verdict["why"][1]
    other_cpu = claims.load_run(fake_run(tmp_path / "c", 2, 400.0, acc=0.95, emulated=True, profile="demo",
                                         cpu="Intel Xeon"))
    verdict = claims.against_reference(other_cpu, claims.find_reference(other_cpu, ref_dir))
    assert verdict["reproduced"] and "not judged" in verdict["why"][1]
    wrong = claims.load_run(fake_run(tmp_path / "d", 2, 150.0, acc=0.85, emulated=True, profile="demo",
                                     cpu="AMD EPYC"))
    assert not claims.against_reference(wrong, claims.find_reference(wrong, ref_dir))["reproduced"]
    assert claims.find_reference(claims.load_run(fake_run(tmp_path / "e", 1, 1.0, profile="demo")), ref_dir) is None


def test_compare_names_what_differs(tmp_path):
    a = fake_run(tmp_path / "a", 2, 170.0, software={"tensorflow": "2.14.0"})
    b = fake_run(tmp_path / "b", 2, 200.0, software={"tensorflow": "2.13.0"})
    diffs = {k: (x, y) for k, x, y in report.compare(a, b)}
    assert diffs["provenance.software.tensorflow"] == ("2.14.0", "2.13.0")
    assert diffs["metrics.train_seconds"] == (170.0, 200.0)
    assert not any(k.startswith("provenance.run_id") for k in diffs)  # ids and timestamps are noise


@needs_horovod
@pytest.mark.slow
def test_two_launches_at_once_on_the_same_cores(tmp_path):
    """The second run that needs held cores is refused in one line, launches nothing; with --wait it queues, and
    both end in distinct, complete run dirs."""
    cmd = [sys.executable, "-m", "invoke", "reproduce", "--sockets", "1", "--profile", "smoke", "--native",
           "--set", "epochs=2", "--results-dir", str(tmp_path)]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline = time.time() + 120
        while not list(tmp_path.glob(".staging-*/command.txt")):  # the first run holds its CPUs from here on
            assert time.time() < deadline and first.poll() is None, "first run never started"
            time.sleep(0.2)
        refused = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=120)
        line = one_line_error(refused, "in use", "--wait")
        assert re.search(r"CPUs 0-1 by run \d{8}-\d{6}-smoke-1s-[0-9a-f]{4} \(pid \d+\)", line), line
        assert len(list(tmp_path.iterdir())) == 1  # nothing launched, nothing written
        queued = subprocess.run(cmd + ["--wait"], cwd=ROOT, capture_output=True, text=True, timeout=600)
        assert queued.returncode == 0, queued.stdout[-1500:]
        assert "waiting (--wait)" in queued.stdout
        assert first.wait(timeout=600) == 0
    finally:
        if first.poll() is None:
            first.kill()
    runs = sorted(p for p in tmp_path.iterdir() if p.is_dir())
    assert len(runs) == 2 and not any(r.name.startswith(".staging") for r in runs)
    for r in runs:
        m = json.loads((r / "metrics.json").read_text())
        assert m["status"] == "success" and json.loads((r / "provenance.json").read_text())["run_id"] == r.name


@needs_horovod
@pytest.mark.slow
def test_invoke_paper_runs_both_socket_counts_and_writes_the_claims_table(tmp_path):
    r = subprocess.run([sys.executable, "-m", "invoke", "paper", "--profile", "smoke", "--native",
                        "--emulate-sockets", "--results-dir", str(tmp_path)], cwd=ROOT, capture_output=True,
                       text=True, timeout=1200)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out, = tmp_path.glob("paper-*-smoke")
    doc = json.loads((out / "claims.json").read_text())
    assert set(doc["runs"]) == {"1 socket", "2 sockets"} and doc["emulated_sockets"] is True
    rows = {row["claim"]: row for row in doc["claims"]}
    assert set(rows) == {"accuracy", "epochs", "bf16_equals_fp32", "minutes_1s", "minutes_2s", "speedup",
                         "efficiency"}
    assert rows["speedup"]["value"] > 0 and "real_sockets: emulated sockets" in rows["speedup"]["verdict"]
    assert "paper_data: dataset synthetic" in rows["accuracy"]["verdict"]
    text = (out / "claims.md").read_text()
    assert text.startswith("# The paper's claims on this host (2 EMULATED sockets") and "| claim | paper |" in text
    for run in doc["runs"].values():  # each run's report carries the same table, with the pair's speedup
        assert "speedup 1 -> 2 sockets" in (Path(run) / "report.md").read_text()
    one = json.loads((Path(doc["runs"]["1 socket"]) / "plan.json").read_text())
    assert one["sockets"] == 1 and one["workers"][0]["cores"] == 1  # one emulated socket's cores, like with like
