"""report.md verdicts, speedup and compare on run dirs the tests write; two launches at once never collide."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, have_horovod
from xeontl import claims, report


def fake_run(path, sockets, seconds, acc=0.95, epochs=44, notices=(), emulated=False, profile="paper", metrics=None,
             dataset="colorectal_histology", weights="savedmodel", precision="bf16", cpu="Xeon 8480+", **prov):
    path.mkdir(parents=True)
    (path / "metrics.json").write_text(json.dumps({
        "dataset": {"name": dataset}, "weights": {"kind": weights, "topology": "ResNet50 v1.5"},
        "status": "success", "final_val_accuracy": acc, "epochs_run": epochs, "best_epoch": epochs - 10,
        "train_seconds": seconds, "notices": list(notices), "images_per_second": 100.0,
        "per_epoch": [{"epoch": 1, "loss": 1.0, "accuracy": 0.5, "val_loss": 1.1, "val_accuracy": 0.5, "seconds": 3.0}],
        "ranks": [{"rank": r, "images_per_second": 50.0, "affinity": [r], "train_images": 2000}
                  for r in range(sockets)], **(metrics or {})}))
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


def measured_tolerances(ref_dir, accuracy_points=3.0, time_relative=0.3, kind=("demo", 2, True), runs=5,
                        stamp="20261130-000000", cpus=("AMD EPYC",)):
    d = ref_dir / f"repeats-{kind[0]}-{kind[1]}s-{stamp}"
    d.mkdir(parents=True)
    (d / "summary.json").write_text(json.dumps({"kind": list(kind), "runs": [{}] * runs, "tolerances_from_this_spread":
                                                {"accuracy_points": accuracy_points, "time_relative": time_relative},
                                                "cpus": list(cpus)}))


def test_a_run_is_judged_against_the_committed_reference_of_its_kind(tmp_path):
    ref_dir = tmp_path / "reference"
    fake_run(ref_dir / "r1", 2, 150.0, acc=0.935, emulated=True, profile="demo", cpu="AMD EPYC")
    measured_tolerances(ref_dir)
    close = claims.load_run(fake_run(tmp_path / "a", 2, 170.0, acc=0.92, emulated=True, profile="demo",
                                     cpu="AMD EPYC"))
    verdict = claims.against_reference(close, claims.find_reference(close, ref_dir), ref_dir)
    assert verdict["reproduced"] and verdict["reference"] == "r1" and verdict["time_judged"]
    assert "measured on 5 runs: repeats-demo-2s-20261130-000000/summary.json" in verdict["why"][0]
    slow = claims.load_run(fake_run(tmp_path / "b", 2, 250.0, acc=0.93, emulated=True, profile="demo",
                                    cpu="AMD EPYC"))
    verdict = claims.against_reference(slow, claims.find_reference(slow, ref_dir), ref_dir)
    assert not verdict["reproduced"] and "+67%" in verdict["why"][1]
    other_cpu = claims.load_run(fake_run(tmp_path / "c", 2, 400.0, acc=0.95, emulated=True, profile="demo",
                                         cpu="Intel Xeon"))
    verdict = claims.against_reference(other_cpu, claims.find_reference(other_cpu, ref_dir), ref_dir)
    assert verdict["reproduced"] and "not judged" in verdict["why"][1]
    wrong = claims.load_run(fake_run(tmp_path / "d", 2, 150.0, acc=0.85, emulated=True, profile="demo",
                                     cpu="AMD EPYC"))
    assert not claims.against_reference(wrong, claims.find_reference(wrong, ref_dir), ref_dir)["reproduced"]
    assert claims.find_reference(claims.load_run(fake_run(tmp_path / "e", 1, 1.0, profile="demo")), ref_dir) is None
    # the tolerances are the measurement's: a tighter one turns the same run into a "no"
    tight = tmp_path / "tight"
    fake_run(tight / "r1", 2, 150.0, acc=0.935, emulated=True, profile="demo", cpu="AMD EPYC")
    measured_tolerances(tight, accuracy_points=1.0)
    assert not claims.against_reference(close, claims.find_reference(close, tight), tight)["reproduced"]


def test_time_is_judged_against_the_reference_of_this_cpu_and_backbone_graph(tmp_path):
    """References of several CPU kinds coexist: a run is judged against its own CPU's. A reference that ran its
    backbone's batch norms as separate layers (before folding) is not a time reference for a folded run."""
    ref_dir = tmp_path / "reference"
    folded = {"weights": {"kind": "random", "batch_norm": "folded into the convolutions"}}
    fake_run(ref_dir / "r1-epyc", 2, 150.0, acc=0.935, emulated=True, profile="demo", cpu="AMD EPYC")
    fake_run(ref_dir / "r2-xeon", 2, 300.0, acc=0.935, emulated=True, profile="demo", cpu="Intel Xeon",
             metrics=folded)
    measured_tolerances(ref_dir)
    measured_tolerances(ref_dir, accuracy_points=2.0, stamp="20261130-100000", cpus=["Intel Xeon"])
    xeon = claims.load_run(fake_run(tmp_path / "a", 2, 310.0, acc=0.93, emulated=True, profile="demo",
                                    cpu="Intel Xeon", metrics=folded))
    verdict = claims.against_reference(xeon, claims.find_reference(xeon, ref_dir), ref_dir)
    assert verdict["reference"] == "r2-xeon" and verdict["time_judged"] and verdict["reproduced"]
    assert verdict["tolerances"]["source"] == "repeats-demo-2s-20261130-100000/summary.json"  # the Xeon's spread
    epyc_folded = claims.load_run(fake_run(tmp_path / "b", 2, 135.0, acc=0.93, emulated=True, profile="demo",
                                           cpu="AMD EPYC", metrics=folded))
    verdict = claims.against_reference(epyc_folded, claims.find_reference(epyc_folded, ref_dir), ref_dir)
    assert verdict["reference"] == "r1-epyc" and not verdict["time_judged"] and verdict["reproduced"]
    assert verdict["tolerances"]["source"] == "repeats-demo-2s-20261130-000000/summary.json"  # the older, its own
    assert verdict["why"][1] == ("training time not judged: the reference's backbone ran its batch norms as separate "
                                 "layers, this run's as folded into the convolutions")


def test_without_a_tolerance_measurement_of_its_kind_a_run_is_not_judged(tmp_path):
    ref_dir = tmp_path / "reference"
    fake_run(ref_dir / "r1", 2, 150.0, acc=0.935, emulated=True, profile="demo", cpu="AMD EPYC")
    measured_tolerances(ref_dir, runs=4)  # fewer than 5 runs: not a measurement
    measured_tolerances(ref_dir, kind=("smoke", 2, True))  # another kind
    run = claims.load_run(fake_run(tmp_path / "a", 2, 150.0, acc=0.935, emulated=True, profile="demo",
                                   cpu="AMD EPYC"))
    verdict = claims.against_reference(run, claims.find_reference(run, ref_dir), ref_dir)
    assert verdict["reproduced"] is None and "--repeats 5" in verdict["why"][0]


def test_compare_names_what_differs(tmp_path):
    a = fake_run(tmp_path / "a", 2, 170.0, software={"tensorflow": "2.14.0"})
    b = fake_run(tmp_path / "b", 2, 200.0, software={"tensorflow": "2.13.0"})
    diffs = {k: (x, y) for k, x, y in report.compare(a, b)}
    assert diffs["provenance.software.tensorflow"] == ("2.14.0", "2.13.0")
    assert diffs["metrics.train_seconds"] == (170.0, 200.0)
    assert not any(k.startswith("provenance.run_id") for k in diffs)  # ids and timestamps are noise


@pytest.fixture(scope="module")
def paper_run(tmp_path_factory):
    """`invoke paper --repeats 2` natively on the smoke profile, 2 emulated sockets: both runs twice, interleaved,
    and the claims table over them."""
    if not have_horovod():
        pytest.skip("native Horovod not installed (invoke setup --native)")
    results = tmp_path_factory.mktemp("paper")
    r = subprocess.run([sys.executable, "-m", "invoke", "paper", "--profile", "smoke", "--native",
                        "--emulate-sockets", "--repeats", "2", "--results-dir", str(results)], cwd=ROOT,
                       capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out, = results.glob("paper-*-smoke")
    return out, json.loads((out / "claims.json").read_text())


@pytest.mark.slow
def test_invoke_paper_judges_every_claim_and_says_why_not_comparable(paper_run):
    out, doc = paper_run
    assert set(doc["runs"]) == {"1 socket", "2 sockets"} and doc["emulated_sockets"] is True
    rows = {row["claim"]: row for row in doc["claims"]}
    assert {"accuracy", "epochs", "bf16_equals_fp32", "minutes_1s", "minutes_2s", "speedup",
            "efficiency"} < set(rows) and {r for r in rows if r.startswith("kit_")}  # the paper's, then the kit's
    assert rows["speedup"]["value"] > 0 and "real_sockets: emulated sockets" in rows["speedup"]["verdict"]
    assert "paper_data: dataset synthetic" in rows["accuracy"]["verdict"]
    assert "fp32_run: no FP32 run (--fp32)" in rows["bf16_equals_fp32"]["verdict"]  # no --fp32 given
    text = (out / "claims.md").read_text()
    assert text.startswith("# The paper's claims on this host (2 EMULATED sockets") and "| claim | paper |" in text


@pytest.mark.slow
def test_invoke_paper_repeats_give_each_claim_its_spread(paper_run):
    out, doc = paper_run
    assert doc["repeats"] == 2 and all(len(v) == 2 for v in doc["runs"].values())
    seeds = [json.loads((Path(d) / "config.json").read_text())["seed"] for d in doc["runs"]["2 sockets"]]
    assert seeds == [42, 43]  # recorded, one per repeat
    rows = {row["claim"]: row for row in doc["claims"]}
    speed = rows["speedup"]["spread"]
    assert speed["n"] == 2 and len(speed["values"]) == 2 and speed["min"] <= speed["mean"] <= speed["max"]
    assert " ± " in rows["speedup"]["this_host"] and rows["minutes_2s"]["runs_met"] == "-"  # not comparable here
    assert "| runs meeting it |" in (out / "claims.md").read_text()


@pytest.mark.slow
def test_invoke_paper_reports_carry_the_pairs_table(paper_run):
    _, doc = paper_run
    for runs in doc["runs"].values():  # each run's report carries the same table, with its round's speedup
        for run in runs:
            assert "speedup 1 -> 2 sockets" in (Path(run) / "report.md").read_text()
            assert json.loads((Path(run) / "metrics.json").read_text())["status"] == "success"


@pytest.mark.slow
def test_invoke_paper_compares_like_with_like(paper_run):
    _, doc = paper_run
    one = json.loads((Path(doc["runs"]["1 socket"][0]) / "plan.json").read_text())
    two = json.loads((Path(doc["runs"]["2 sockets"][0]) / "plan.json").read_text())
    assert one["sockets"] == 1 and one["workers"][0]["cores"] == 1  # one emulated socket's cores
    assert two["sockets"] == 2 and [w["cores"] for w in two["workers"]] == [1, 1]


@pytest.mark.parametrize("claim,inside,outside", [
    ("accuracy", 0.936, 0.934),           # 0.945 +-0.01 (absolute)
    ("minutes_2s", 3.55, 3.65),           # 3 min +-20% (relative)
    ("minutes_1s", 5.49, 5.51),           # under 5.5 min (upper bound)
    ("speedup", 1.74, 1.72),              # 1.83x +-0.1x
    ("efficiency", 0.875, 0.865),         # 0.92 +-0.05
])
def test_each_claim_passes_just_inside_its_tolerance_and_fails_just_outside(tmp_path, claim, inside, outside):
    """The tolerances of claims.toml, at their edges: a looser or tighter rule changes a verdict here."""
    def rows(value):
        one_s, two_s, acc = 300.0, 165.0, 0.95  # the paper's hardware and data: every claim comparable
        if claim == "accuracy":
            acc = value
        elif claim == "minutes_2s":
            two_s = value * 60
        elif claim == "minutes_1s":
            one_s = value * 60
        elif claim == "speedup":
            two_s = one_s / value
        elif claim == "efficiency":
            two_s = one_s / (2 * value)
        d = tmp_path / f"{claim}-{value}"
        one, two = fake_run(d / "one", 1, one_s), fake_run(d / "two", 2, two_s, acc=acc)
        return {r["claim"]: r["verdict"] for r in claims.judge(claims.load_run(one), claims.load_run(two))}

    assert rows(inside)[claim] == "PASS"
    assert rows(outside)[claim] == "FAIL"
