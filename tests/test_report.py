"""report.md and the "Reproduced" verdict on run dirs the code wrote (the shared native and paper runs) and records
derived from them (conftest.derive); compare between two runs."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import AS_BF16, ROOT, derive, have_horovod, scaled
from xeontl.records import claims, report


def verdict_rows(run):
    return {r["claim"]: r["verdict"] for r in claims.judge(*report.pair(Path(run), []))}


@pytest.mark.slow
def test_a_demo_like_run_says_not_comparable_and_lists_its_differences_first(native_run):
    text = (native_run / "report.md").read_text()
    assert text.index("## How this run differs") < text.index("## The paper's claims")
    assert "- data: source synthetic (generated tiles)" in text and "- layout.sockets: sockets 2, emulated True" in text
    claims_part = text[text.index("## The paper's claims"):text.index("What each claim rests on")]
    assert "PASS" not in claims_part and "FAIL" not in claims_part
    assert "data: source synthetic (generated tiles)" in claims_part
    assert "weights: pretrained False" in claims_part


@pytest.mark.slow
def test_verdicts_come_from_structured_fields_not_sentences(native_run, paper_fixture, paper_inputs, tmp_path,
                                                            monkeypatch):
    """A run whose notices say nothing is still synthetic when its data record says so; and wording alone (a notice)
    never makes a run on the (stand-in) paper's data not comparable."""
    quiet = derive(native_run, tmp_path / "q", **{"metrics.notices": []})  # a 2-socket run: its claims
    assert verdict_rows(quiet)["minutes_2s"].startswith("not comparable: data: source synthetic")
    monkeypatch.setenv(claims.TABLE_ENV, paper_inputs["table"])
    one = Path(paper_fixture[1]["runs"]["1 socket"][0])
    noisy = derive(one, tmp_path / "n", **AS_BF16, **{"metrics.notices": ["synthetic data — not the paper's dataset"]})
    assert not verdict_rows(noisy)["accuracy"].startswith("not comparable: data")


@pytest.mark.slow
def test_a_feature_cache_and_a_resumed_run_are_not_the_papers_protocol(paper_fixture, paper_inputs, tmp_path,
                                                                       monkeypatch):
    monkeypatch.setenv(claims.TABLE_ENV, paper_inputs["table"])
    one = Path(paper_fixture[1]["runs"]["1 socket"][0])
    cached = derive(one, tmp_path / "c", **AS_BF16, **{"config.feature_cache": True})
    # the stand-ins' run is the paper's data, weights and recipe on this machine: after the one departure each derived
    # run makes, the verdict names this machine's dimensions only (layout, topology, software, container)
    v = verdict_rows(cached)["accuracy"]
    assert v.startswith("not comparable: recipe.feature_cache: True (the paper's: False); layout.")
    assert not any(d in v for d in ("data:", "weights:", "resumed:")) and v.count("recipe.") == 1
    resumed = derive(one, tmp_path / "r", **AS_BF16, **{"metrics.resumed_from": {"epoch": 3, "checkpoint": "x"}})
    v = verdict_rows(resumed)["accuracy"]
    assert v.startswith("not comparable: resumed: True (the paper's: False); layout.")
    assert not any(d in v for d in ("data:", "weights:", "recipe."))


@pytest.mark.slow
def test_ratio_claims_on_real_sockets_of_a_host_that_is_not_the_papers(paper_fixture, paper_inputs, tmp_path,
                                                                       monkeypatch):
    """Real sockets, the paper's data and weights, another CPU: neither the times nor the speedup are judged (the
    speedup is the paper's times' ratio: its machine's)."""
    monkeypatch.setenv(claims.TABLE_ENV, paper_inputs["table"])
    _, doc = paper_fixture
    one, two = (Path(doc["runs"][k][0]) for k in ("1 socket", "2 sockets"))
    real = {**AS_BF16, "plan.emulated": False, "provenance.host.topology.sockets": 2,
            "provenance.host.topology.cores_per_socket": [1, 1], "provenance.host.cpu.flags_of_note.amx_bf16": False}
    a = derive(one, tmp_path / "a", **real, **{"metrics.train_seconds": 200.0, "metrics.epochs_run": 40})
    b = derive(two, tmp_path / "b", **real, **{"metrics.train_seconds": 110.0, "metrics.epochs_run": 40})
    rows = {r["claim"]: r for r in claims.judge(claims.load_run(a), claims.load_run(b))}
    for claim in ("minutes_2s", "speedup", "efficiency"):
        assert "hardware.topology: sockets 2, cores_per_socket [1, 1]" in rows[claim]["verdict"], claim
    assert rows["speedup"]["value"] == pytest.approx(200 / 110)


# "Reproduced": tests/test_setup.py (the reference of the same setup, health of every rank, time against the run's own
# calibration), on the fixture run the code wrote and records derived from it.


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
    assert rows["speedup"]["value"] > 0 and "layout.sockets: sockets 2, emulated True" in rows["speedup"]["verdict"]
    assert "data: source synthetic" in rows["accuracy"]["verdict"]
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
    assert " ± " in rows["speedup"]["this_host"] and rows["minutes_2s"]["runs_met"] == "0/2"  # not comparable here
    assert rows["minutes_2s"]["verdict"].startswith("not comparable: 2 of 2 runs: run 1: ")
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
