"""report.md and the "Reproduced" verdict on run dirs the code wrote (the shared native and paper runs) and records
derived from them (conftest.derive); compare between two runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import AS_BF16, ROOT, derive, have_horovod, load, scaled
from xeontl.launch import repeats
from xeontl.records import claims, reference, report


def verdict_rows(run):
    return {r["claim"]: r["verdict"] for r in claims.judge(*report.pair(Path(run), []))}


@pytest.mark.slow
def test_a_demo_like_run_says_not_comparable_and_lists_its_differences_first(native_run):
    text = (native_run / "report.md").read_text()
    assert text.index("## How this run differs") < text.index("## The paper's claims")
    assert "Synthetic data" in text and "Emulated sockets" in text
    claims_part = text[text.index("## The paper's claims"):text.index("What each claim rests on")]
    assert "PASS" not in claims_part and "FAIL" not in claims_part
    assert "data: dataset synthetic (generated tiles, not the paper's)" in claims_part
    assert "weights: weights random (not ImageNet's)" in claims_part


@pytest.mark.slow
def test_verdicts_come_from_structured_fields_not_sentences(native_run, paper_fixture, paper_inputs, tmp_path,
                                                            monkeypatch):
    """A run whose notices say nothing is still synthetic when its data record says so; and wording alone (a notice)
    never makes a run on the (stand-in) paper's data not comparable."""
    quiet = derive(native_run, tmp_path / "q", **{"metrics.notices": []})  # a 2-socket run: its claims
    assert verdict_rows(quiet)["minutes_2s"].startswith("not comparable: data: dataset synthetic")
    monkeypatch.setenv(claims.TABLE_ENV, paper_inputs["table"])
    one = Path(paper_fixture[1]["runs"]["1 socket"][0])
    noisy = derive(one, tmp_path / "n", **AS_BF16, **{"metrics.notices": ["synthetic data — not the paper's dataset"]})
    assert verdict_rows(noisy)["accuracy"] in ("PASS", "FAIL")


@pytest.mark.slow
def test_a_feature_cache_and_a_resumed_run_are_not_the_papers_protocol(paper_fixture, paper_inputs, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv(claims.TABLE_ENV, paper_inputs["table"])
    one = Path(paper_fixture[1]["runs"]["1 socket"][0])
    cached = derive(one, tmp_path / "c", **AS_BF16, **{"config.feature_cache": True})
    assert verdict_rows(cached)["accuracy"] == "not comparable: protocol: feature_cache True != paper False"
    resumed = derive(one, tmp_path / "r", **AS_BF16, **{"metrics.resumed_from": {"epoch": 3, "checkpoint": "x"}})
    assert verdict_rows(resumed)["accuracy"] == "not comparable: protocol: resumed (its time covers the " \
                                                "continuation only)"


@pytest.mark.slow
def test_ratio_claims_on_real_sockets_of_a_host_that_is_not_the_papers(paper_fixture, paper_inputs, tmp_path,
                                                                       monkeypatch):
    """Real sockets, the paper's data and weights, another CPU: times are not judged, the speedup is."""
    monkeypatch.setenv(claims.TABLE_ENV, paper_inputs["table"])
    _, doc = paper_fixture
    one, two = (Path(doc["runs"][k][0]) for k in ("1 socket", "2 sockets"))
    real = {**AS_BF16, "plan.emulated": False, "provenance.host.topology.sockets": 2,
            "provenance.host.topology.cores_per_socket": [1, 1], "provenance.host.cpu.flags_of_note.amx_bf16": False}
    a = derive(one, tmp_path / "a", **real, **{"metrics.train_seconds": 200.0, "metrics.epochs_run": 40})
    b = derive(two, tmp_path / "b", **real, **{"metrics.train_seconds": 110.0, "metrics.epochs_run": 40})
    rows = {r["claim"]: r for r in claims.judge(claims.load_run(a), claims.load_run(b))}
    assert rows["minutes_2s"]["verdict"] == "not comparable: hardware: 2 socket(s) x [1, 1] cores, no AMX"
    assert rows["speedup"]["verdict"] == "PASS" and rows["speedup"]["value"] == pytest.approx(200 / 110)
    assert rows["efficiency"]["verdict"] == "PASS"


# ------------------------------------------------------------------------------------------------ "Reproduced"
def committed(ref_dir: Path, runs: list[Path], machine: str) -> Path:
    """A `--repeats` summary of RUNS as `invoke reproduce --repeats N` writes it, from machine MACHINE (its
    /etc/machine-id hash), under a reference dir."""
    s = repeats.summarize(runs)
    s["machine"] = machine
    out = repeats.write(ref_dir, f"repeats-m{machine}", s, repeats.markdown("runs", s), runs)
    return out


def spread_of(src: Path, dest: Path, machine: str, seconds: list[float], accs: list[float]) -> list[Path]:
    return [derive(src, dest / f"{machine}-{i}", **{"metrics.train_seconds": t, "metrics.final_val_accuracy": a})
            for i, (t, a) in enumerate(zip(seconds, accs))]


@pytest.fixture
def reference_dir(native_run, tmp_path):
    """Committed references of native_run's kind (smoke, 2 emulated sockets, this CPU): the run itself, and one
    machine-day's 5 runs (100-104 s, 0.90-0.94)."""
    ref = tmp_path / "reference"
    derive(native_run, ref / native_run.name)
    committed(ref, spread_of(native_run, tmp_path / "r", "a1", [100.0, 101.0, 102.0, 103.0, 104.0],
                             [0.90, 0.91, 0.92, 0.93, 0.94]), "a1")
    return ref


def judged_against(run: Path, ref_dir: Path) -> dict:
    loaded = claims.load_run(run)
    return reference.against_reference(loaded, reference.find_reference(loaded, ref_dir), ref_dir)


@pytest.mark.slow
def test_a_healthy_run_within_the_spread_is_reproduced(native_run, reference_dir, tmp_path):
    v = judged_against(derive(native_run, tmp_path / "ok", **{"metrics.train_seconds": 106.0,
                                                              "metrics.final_val_accuracy": 0.93}), reference_dir)
    assert v["reproduced"] is True and v["health"] == []
    assert "run record: every rank on the CPUs its plan gave it" in v["why"][0]
    assert "within" in v["why"][1]
    # one machine-day: the time is shown, it does not decide (a +30 % run is still "yes" on time)
    slow = judged_against(derive(native_run, tmp_path / "slow", **{"metrics.train_seconds": 133.0,
                                                                   "metrics.final_val_accuracy": 0.93}),
                          reference_dir)
    assert slow["reproduced"] is True and not slow["time_judged"] and "not deciding" in slow["why"][2]


@pytest.mark.slow
def test_with_two_machine_days_time_decides_with_the_machine_to_machine_spread(native_run, reference_dir, tmp_path):
    committed(reference_dir, spread_of(native_run, tmp_path / "r2", "b2", [110.0, 111.0, 112.0, 113.0, 114.0],
                                       [0.91, 0.92, 0.93, 0.92, 0.91]), "b2")
    tol = reference.tolerances(reference.kind_spread(claims.load_run(native_run), reference_dir))
    assert tol["days"] == 2 and tol["time_decides"] and tol["time_between_machines_sd"] > 5
    assert tol["time_relative"] > 0.1  # wider than one machine's +-5 %: two machines' means 10 s apart
    near = judged_against(derive(native_run, tmp_path / "near", **{"metrics.train_seconds": 118.0,
                                                                    "metrics.final_val_accuracy": 0.92}), reference_dir)
    assert near["reproduced"] is True and near["time_judged"]
    far = judged_against(derive(native_run, tmp_path / "far", **{"metrics.train_seconds": 160.0,
                                                                  "metrics.final_val_accuracy": 0.92}), reference_dir)
    assert far["reproduced"] is False and "outside" in far["why"][-1]


@pytest.mark.slow
def test_a_broken_run_record_is_not_reproduced_whatever_its_time(native_run, reference_dir, tmp_path):
    plan = load(native_run, "plan.json")
    healthy = {"metrics.final_val_accuracy": 0.92, "metrics.train_seconds": 102.0}  # within the spread: health decides
    shared = derive(native_run, tmp_path / "shared", **healthy,
                    **{"metrics.ranks.1.affinity": plan["workers"][0]["cpus"]})
    v = judged_against(shared, reference_dir)
    cpu0, cpu1 = plan["workers"][0]["cpus"], plan["workers"][1]["cpus"]
    assert v["reproduced"] is False and v["health"] == [
        f"rank 1 ran on CPUs {cpu0}, its plan gave it {cpu1}", f"ranks 0 and 1 share CPU {cpu0[0]}"]
    threads = derive(native_run, tmp_path / "threads", **healthy, **{"metrics.threads.omp_num_threads": "8"})
    assert judged_against(threads, reference_dir)["health"] == [
        f"rank 0 ran omp_num_threads = 8, its plan {plan['workers'][0]['intra']}"]


@pytest.mark.slow
def test_another_recipe_or_cpu_kind_is_not_judged_on_what_it_lacks(native_run, reference_dir, tmp_path):
    other = derive(native_run, tmp_path / "epochs", **{"config.epochs": 3})
    v = judged_against(other, reference_dir)
    assert v["reproduced"] is None and f"epochs 3 vs {load(native_run, 'config.json')['epochs']}" in v["why"][0]
    kind = derive(native_run, tmp_path / "kind", **{"provenance.host.cpu.family": "99",
                                                    "metrics.final_val_accuracy": 0.92})
    v = judged_against(kind, reference_dir)
    assert v["reproduced"] is True and not v["time_judged"]  # accuracy from every machine of the recipe
    assert v["why"][-1].startswith("training time not judged: no spread measured for this CPU kind")


@pytest.mark.slow
def test_compare_names_what_differs(paper_fixture):
    _, doc = paper_fixture
    one, two = (Path(doc["runs"][k][0]) for k in ("1 socket", "2 sockets"))
    diffs = {k: (x, y) for k, x, y in report.compare(one, two)}
    assert diffs["metrics.workers"] == (1, 2) and diffs["provenance.execution.plan.sockets"] == (1, 2)
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
                       capture_output=True, text=True, timeout=scaled(1800))
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
    assert "data: dataset synthetic" in rows["accuracy"]["verdict"]
    assert "no 1-socket FP32 run (--fp32)" in rows["bf16_equals_fp32"]["verdict"]  # no --fp32 given
    text = (out / "claims.md").read_text()
    assert text.startswith("# The paper's claims on this host (2 EMULATED sockets")
    assert "| claim | source | paper |" in text


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
