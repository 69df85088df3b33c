"""report.md verdicts, speedup and compare on run dirs the tests write; two launches at once never collide."""

import json
import re
import subprocess
import sys
import time

import pytest

from conftest import ROOT, needs_horovod, one_line_error
from xeontl import report


def fake_run(path, sockets, seconds, acc=0.95, epochs=44, notices=(), emulated=False, profile="paper", metrics=None,
             **prov):
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({**(metrics or {}),
        "status": "success", "final_val_accuracy": acc, "epochs_run": epochs, "best_epoch": epochs - 10,
        "train_seconds": seconds, "notices": list(notices), "images_per_second": 100.0,
        "per_epoch": [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.5, "seconds": 3.0}],
        "ranks": [{"rank": r, "images_per_second": 50.0, "affinity": [r], "train_images": 2000}
                  for r in range(sockets)]}))
    (path / "plan.json").write_text(json.dumps({"sockets": sockets, "emulated": emulated,
                                                "workers": [{"cores": 56}] * sockets}))
    (path / "config.json").write_text(json.dumps({"profile": profile, "seed": 42}))
    (path / "provenance.json").write_text(json.dumps({"run_id": path.name, "host": {
        "cpu": {"model_name": "Xeon 8480+", "flags_of_note": {"amx_bf16": True}},
        "topology": {"sockets": 2, "cores_per_socket": [56, 56]}}, "execution": {"mode": "native"}, **prov}))
    return path


def test_real_data_on_paper_hardware_gets_verdicts(tmp_path):
    one = fake_run(tmp_path / "a", 1, 300.0)
    two = fake_run(tmp_path / "b", 2, 165.0, acc=0.90)
    assert report.speedup([one, two]) == pytest.approx(300 / 165)
    text = report.write(two, speedup=report.speedup([one, two])).read_text()
    assert "| 94.5 % validation accuracy (BF16 = FP32) | 90.0% | +-1 point | FAIL |" in text
    assert "| converges in ~43-45 epochs (run-to-run spread 6-7) | 44 | +-7 epochs | PASS |" in text
    assert "| 2 sockets: about 3 min | 2.75 min | +-20 % | PASS |" in text
    assert "1.82x | +-0.1 | PASS |" in text
    assert (two / "curves.png").exists() and (two / "throughput.png").exists()


def test_demo_runs_say_not_comparable_and_list_differences_first(tmp_path):
    run = fake_run(tmp_path / "d", 2, 170.0, notices=["synthetic data — not the paper's dataset"], emulated=True)
    text = report.write(run).read_text()
    differences = text.index("## How this run differs")
    assert differences < text.index("## Paper vs this run")
    assert "Synthetic data" in text and "Emulated sockets" in text
    assert "PASS" not in text and "FAIL" not in text and "not comparable" in text


def test_feature_cache_and_resumed_runs_are_not_the_papers_protocol(tmp_path):
    run = fake_run(tmp_path / "f", 2, 20.0, metrics={
        "feature_cache": {"views": 2, "hit": False, "build_seconds": 12.5},
        "resumed_from": {"epoch": 3, "checkpoint": "results/x/checkpoints/epoch-0003"}})
    text = report.write(run).read_text()
    assert "Feature cache (--feature-cache)" in text and "2 augmented view(s)" in text and "built in 12.5 s" in text
    assert "Resumed after epoch 3" in text
    assert "PASS" not in text and "FAIL" not in text and "not comparable" in text


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
