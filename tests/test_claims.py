"""Claims with measured spread (--repeats) and Intel's reference kit as a second reference, judged from run dirs the
tests write (the runs themselves: test_report's paper run)."""

import json

import pytest
from test_report import fake_run

from conftest import invoke
from xeontl import claims, repeats

KIT_BF16_CM = [  # a confusion matrix whose precision/recall are within 0.02 of the kit's BF16 report
    [108, 1, 1, 0, 1, 0, 0, 1], [1, 114, 8, 1, 2, 1, 0, 0], [2, 10, 117, 3, 4, 1, 0, 0], [0, 2, 4, 117, 3, 0, 0, 0],
    [0, 1, 4, 1, 120, 0, 0, 0], [0, 0, 2, 0, 0, 125, 1, 0], [0, 0, 0, 0, 0, 1, 116, 1], [0, 0, 0, 0, 0, 0, 0, 126]]


def kit_run(path, sockets, seconds, best=0.943, epochs=40, precision="bf16", cm=None):
    per_epoch = [{"epoch": e, "val_accuracy": best - 0.01 * (e != epochs - 5)} for e in range(1, epochs + 1)]
    return fake_run(path, sockets, seconds, acc=best - 0.002, epochs=epochs, precision=precision,
                    metrics={"per_epoch": per_epoch, "confusion_matrix": cm or KIT_BF16_CM})


def rows_of(table):
    return {r["claim"]: r for r in table}


def test_the_kit_rows_judge_the_one_socket_runs_on_the_kits_own_figures(tmp_path):
    one = claims.load_run(kit_run(tmp_path / "a", 1, 290.0))
    two = claims.load_run(kit_run(tmp_path / "b", 2, 165.0))
    one_fp32 = claims.load_run(kit_run(tmp_path / "c", 1, 430.0, best=0.945, epochs=34, precision="fp32"))
    rows = rows_of(claims.judge(one, two, None, one_fp32))
    assert rows["kit_accuracy_bf16"]["this_host"] == "0.943" and rows["kit_accuracy_bf16"]["verdict"] == "PASS"
    assert rows["kit_epochs_bf16"]["verdict"] == "PASS" and rows["kit_minutes_bf16"]["verdict"] == "PASS"
    assert rows["kit_per_class_bf16"]["value"] <= 0.02 and rows["kit_per_class_bf16"]["verdict"] == "PASS"
    assert rows["kit_accuracy_fp32"]["verdict"] == "PASS" and rows["kit_epochs_fp32"]["this_host"] == "34"
    speedup = rows["kit_bf16_speedup"]
    assert speedup["value"] == pytest.approx(430 / 290) and speedup["verdict"] == "PASS"
    assert all(r["source"] == "Intel's kit" for k, r in rows.items() if k.startswith("kit_"))
    # a different class balance of errors is seen (the largest per-class difference, not the accuracy)
    skewed = [row[:] for row in KIT_BF16_CM]
    skewed[2][2], skewed[2][1] = 97, 30
    one = claims.load_run(kit_run(tmp_path / "d", 1, 290.0, cm=skewed))
    assert rows_of(claims.judge(one, two))["kit_per_class_bf16"]["verdict"] == "FAIL"


def test_the_kit_rows_need_the_papers_inputs_and_an_fp32_run(tmp_path):
    two = claims.load_run(kit_run(tmp_path / "b", 2, 165.0))
    rows = rows_of(claims.judge(None, two))
    assert rows["kit_accuracy_bf16"]["verdict"].startswith("not comparable: no 1-socket run")
    one = claims.load_run(fake_run(tmp_path / "a", 1, 290.0, dataset="synthetic", weights="random", profile="demo"))
    rows = rows_of(claims.judge(one, two))
    assert "paper_data: dataset synthetic" in rows["kit_accuracy_bf16"]["verdict"]
    assert "fp32_1s_run: no 1-socket FP32 run (--fp32)" in rows["kit_accuracy_fp32"]["verdict"]


def test_the_kits_source_is_named():
    kit = claims.table()["kit"]
    assert kit["source"] == "intel/vision-based-transfer-learning-and-inference"
    assert kit["commit"].startswith("edaaa983") and len(kit["commit"]) == 40
    assert len(kit["precision_bf16"]) == len(kit["recall_fp32"]) == 8


def test_over_repeats_a_claim_is_the_mean_with_its_spread_and_the_runs_that_met_it(tmp_path):
    accs = [0.940, 0.950, 0.930]  # mean 0.940: within 0.945 +- 0.01; the 0.930 run alone is not
    sets = {"1 socket": [claims.load_run(fake_run(tmp_path / f"a{i}", 1, 300.0 + i)) for i in range(3)],
            "2 sockets": [claims.load_run(fake_run(tmp_path / f"b{i}", 2, 165.0, acc=a)) for i, a in enumerate(accs)]}
    rows = rows_of(claims.judge_repeats(sets))
    acc = rows["accuracy"]
    assert acc["value"] == pytest.approx(0.94) and acc["spread"]["sd"] == pytest.approx(0.01)
    assert acc["this_host"] == "0.940 ± 0.010 (0.930–0.950)" and acc["runs_met"] == "2/3" and acc["verdict"] == "PASS"
    md = claims.markdown(list(rows.values()))
    assert "| runs meeting it |" in md and "| 0.940 ± 0.010 (0.930–0.950) | 2/3 | PASS |" in md
    # one run each: the table of a single run, unchanged
    single = claims.judge_repeats({k: v[:1] for k, v in sets.items()})
    assert [r["verdict"] for r in single] == [r["verdict"] for r in claims.judge(sets["1 socket"][0],
                                                                                  sets["2 sockets"][0])]


def test_seeds_are_recorded_and_distinct_per_repeat():
    from xeontl.options import Options

    runs = repeats.seeded(Options(profile="demo"), 3)
    assert [r.overrides["seed"] for r in runs] == ["42", "43", "44"]
    assert repeats.seeded(Options(profile="demo", overrides={"seed": "7"}), 2)[1].overrides["seed"] == "8"


def test_a_summary_gives_the_spread_and_the_tolerances_it_implies(tmp_path):
    dirs = [fake_run(tmp_path / f"r{i}", 2, 100.0 + 2 * i, acc=0.93 + 0.001 * i, emulated=True, profile="demo")
            for i in range(5)]
    s = repeats.summarize(dirs)
    assert s["kind"] == ["demo", 2, True] and len(s["runs"]) == 5
    assert s["spread"]["accuracy"]["mean"] == pytest.approx(0.932)
    tol = s["tolerances_from_this_spread"]
    # 3 sd of 0.0016 = 0.47 points -> 0.5; 3 sd of 3.16 s over 104 s = 9.1 % -> 0.1
    assert tol["accuracy_points"] == 0.5 and tol["time_relative"] == 0.1
    assert repeats.tolerances(repeats.spread([0.93] * 5), repeats.spread([100.0] * 5)) == {
        **tol, "accuracy_points": repeats.FLOOR["accuracy_points"], "time_relative": repeats.FLOOR["time_relative"]}
    out = repeats.write(tmp_path / "res", "repeats-demo-2s", s, repeats.markdown("5 runs", s))
    assert json.loads((out / "summary.json").read_text())["kind"] == ["demo", 2, True]
    assert "0.9320 ± 0.0016 (0.9300–0.9340)" in (out / "summary.md").read_text()


@pytest.mark.parametrize("task", ["reproduce", "paper"])
def test_zero_repeats_is_one_line(task, tmp_path):
    r = invoke(task, "--repeats", "0", "--profile", "demo", "--results-dir", str(tmp_path))
    assert r.returncode == 2 and "--repeats 0: must be 1 or more" in r.stderr and r.stderr.count("\n") == 1
    assert list(tmp_path.iterdir()) == []


def test_time_is_judged_only_on_the_same_cpu_generation_not_just_the_same_name(tmp_path):
    """A VM names Zen 3 and Zen 5 alike ("AMD EPYC"): family and model tell them apart."""
    from test_report import measured_tolerances

    def with_family(path, family):
        p = json.loads((path / "provenance.json").read_text())
        p["host"]["cpu"].update(family=family, model="2")
        (path / "provenance.json").write_text(json.dumps(p))
        return path

    ref_dir = tmp_path / "reference"
    with_family(fake_run(ref_dir / "r1", 2, 100.0, acc=0.935, emulated=True, profile="demo", cpu="AMD EPYC"), "26")
    measured_tolerances(ref_dir)
    same = claims.load_run(with_family(fake_run(tmp_path / "a", 2, 100.0, acc=0.935, emulated=True, profile="demo",
                                                cpu="AMD EPYC"), "26"))
    other = claims.load_run(with_family(fake_run(tmp_path / "b", 2, 100.0, acc=0.935, emulated=True, profile="demo",
                                                 cpu="AMD EPYC"), "25"))
    assert claims.against_reference(same, claims.find_reference(same, ref_dir), ref_dir)["time_judged"]
    v = claims.against_reference(other, claims.find_reference(other, ref_dir), ref_dir)
    assert not v["time_judged"] and "AMD EPYC (family 25 model 2)" in v["why"][1]


def test_tolerances_come_from_the_spread_measured_on_the_runs_own_cpu_generation(tmp_path):
    """Zen 4 and Zen 5 VMs both say "AMD EPYC": a run takes the tolerances of its own family and model where they
    were measured, else the newest of any CPU; a summary from before kinds were recorded (a bare name) matches none."""
    from test_report import measured_tolerances

    ref_dir = tmp_path / "reference"
    measured_tolerances(ref_dir, accuracy_points=1.0, stamp="20261201-000000", cpus=("AMD EPYC (family 25 model 17)",))
    measured_tolerances(ref_dir, accuracy_points=2.0, stamp="20261202-000000", cpus=("AMD EPYC (family 26 model 2)",))
    measured_tolerances(ref_dir, accuracy_points=3.0, stamp="20261130-000000", cpus=("AMD EPYC",))
    run = fake_run(tmp_path / "a", 2, 100.0, acc=0.935, emulated=True, profile="demo", cpu="AMD EPYC")
    for family, model, points in (("25", "17", 1.0), ("26", "2", 2.0), ("25", "1", 2.0)):  # Zen 3: the newest
        p = json.loads((run / "provenance.json").read_text())
        p["host"]["cpu"].update(family=family, model=model)
        (run / "provenance.json").write_text(json.dumps(p))
        assert claims.reference_tolerances(claims.load_run(run), ref_dir)["accuracy_points"] == points
    s = repeats.summarize([run])
    assert s["cpus"] == ["AMD EPYC (family 25 model 1)"] and s["runs"][0]["cpu"] == s["cpus"][0]
