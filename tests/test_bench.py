"""The bench: its figures assembled from a recorded real bench.json (tests/fixtures/bench.json: `invoke bench` at the
tests' tiny sizes on an AMX Xeon, container variant included), its table, plot, reasons and targets; and the parts
that touch the machine run for real once (a matmul probe, the reading of a real launcher run). No timing is
asserted."""

import copy
import json
import re
from pathlib import Path

import pytest

from conftest import needs_horovod
from xeontl.experiment import runtime
from xeontl.measure import bench
from xeontl.placement import plan as planlib
from xeontl.placement import topology
from xeontl.records import provenance

FIXTURE = Path(__file__).parent / "fixtures" / "bench.json"
FIGURES = ["peak_gflops_fp32", "peak_gflops_bf16", "backbone_img_s_fp32", "backbone_img_s_bf16", "bf16_speedup",
           "mfu_bf16", "mfu_bf16_counted_flops", "train_img_s_1w", "train_img_s_2w", "train_img_s_1w_fp32",
           "scaling_efficiency", "scaling_efficiency_mpi_busy_poll", "scaling_efficiency_gloo",
           "container_over_native", "bf16_epoch_speedup", "peak_fraction_fp32", "peak_fraction_bf16",
           "mfu_bf16_theoretical", "mfu_fp32_counted_flops", "mfu_fp32_theoretical", "run_overhead_s",
           "source_rebuild_s", "peak_rss_mib_demo", "peak_rss_mib_paper_shape", "feature_cache_accuracy_delta"]


@pytest.fixture
def raw():
    return copy.deepcopy(json.loads(FIXTURE.read_text())["raw"])


def test_time_to_accuracy_counts_from_the_start_including_the_cache_build():
    epochs = [{"val_accuracy": 0.5, "elapsed_seconds": 12.0}, {"val_accuracy": 0.9, "elapsed_seconds": 13.0},
              {"val_accuracy": 0.95, "elapsed_seconds": 14.0}]
    assert bench.time_to_accuracy(epochs, 0.9) == 13.0
    assert bench.time_to_accuracy(epochs, 0.96) is None


def test_variants_differ_only_in_what_they_compare():
    topo = topology.load_file("tests/topologies/spr-8480-2s-ht.lscpu")
    two, one = planlib.make_plan(topo, 2), planlib.make_plan(topo, 1)
    v = bench.variants(one, two, "demo", {"epochs": "3"}, "img", native_only=False)
    assert set(v) == {"1w", "1w_fp32", "2w", "2w_mpi_busy_poll", "2w_gloo", "2w_container"}
    assert v["1w_fp32"]["overrides"] == {"epochs": "3", "precision": "fp32"} and v["1w"]["overrides"] == {"epochs": "3"}
    assert v["2w_mpi_busy_poll"]["extra_env"] == {"OMPI_MCA_mpi_yield_when_idle": "0"}
    assert v["2w_gloo"]["controller"] == "gloo" and v["2w_container"]["native"] is False
    assert "2w_container" not in bench.variants(one, two, "demo", {}, "img", native_only=True)
    # where the demo runs fp32 anyway (no BF16 arithmetic), the fp32 comparison run would repeat the 1-worker run
    assert "1w_fp32" not in bench.variants(one, two, "demo", {}, "img", native_only=True, demo_precision="fp32")


def test_the_variants_interleave_and_the_diagnostics_run_once(monkeypatch, tmp_path):
    order = []

    def fake_run(opts):
        order.append(opts.controller if opts.controller == "gloo" else
                     "busy" if opts.extra_env else f"{opts.sockets}w")
        return {"img_s": 10.0 * len(order), "overhead_s": 1.0, "overhead_phases": None, "peak_rss_mib": 1.0,
                "precision": {}, "plan": "p"}

    monkeypatch.setattr(bench, "_train_run", fake_run)
    topo = topology.load_file("tests/topologies/spr-8480-2s-ht.lscpu")
    v = bench.variants(planlib.make_plan(topo, 1), planlib.make_plan(topo, 2), "demo", {}, "img", native_only=True,
                       demo_precision="fp32")
    got = bench.measure_training(v, 3, tmp_path)
    assert order == ["1w", "2w", "busy", "gloo", "1w", "2w", "1w", "2w"]
    assert got["1w"]["repeats"] == [10.0, 50.0, 70.0] and got["1w"]["img_s"] == 50.0
    assert got["2w_gloo"]["repeats"] == [40.0]


def test_the_recorded_bench_assembles_to_its_recorded_figures(raw):
    """assemble() is a pure function of the raw measurements: the recorded figures come out again, every one."""
    recorded = json.loads(FIXTURE.read_text())
    res = bench.assemble(raw)
    for key in FIGURES:
        assert isinstance(res[key], float) and res[key] > 0 or key == "feature_cache_accuracy_delta", key
        assert res[key] == pytest.approx(recorded[key]), key


def test_the_ratios_are_the_ones_they_name(raw):
    res = bench.assemble(raw)
    t = {k: v["img_s"] for k, v in raw["training"].items()}
    assert res["scaling_efficiency"] == pytest.approx(t["2w"] / (2 * t["1w"]))  # weak scaling: 2 workers vs 2 x 1
    assert res["scaling_efficiency_gloo"] == pytest.approx(t["2w_gloo"] / (2 * t["1w"]))
    assert res["bf16_epoch_speedup"] == pytest.approx(t["1w"] / t["1w_fp32"])
    assert res["container_over_native"] == pytest.approx(t["2w_container"] / t["2w"])
    assert res["bf16_speedup"] == pytest.approx(raw["backbone"]["bf16"]["median"] / raw["backbone"]["fp32"]["median"])
    limit = bench.theoretical_peak(raw["cpu"])
    assert res["peak_fraction_bf16"] == pytest.approx(raw["peaks"]["bf16"]["median"] /
                                                      (limit["bf16_gflops_per_core"] * raw["cores"]))
    assert res["run_overhead_s"] == raw["training"]["2w_container"]["overhead_s"]  # the user's path: the container
    # the forward pass's share of a training image, and the rest (what check-host's prediction leaves out)
    forward = raw["backbone"][raw["training"]["1w"]["precision"]["precision"]]["median"]
    assert res["beyond_forward_ms_per_image"] == pytest.approx(1000 / t["1w"] - 1000 / forward)
    assert (res["prediction_error_1w"] < 0) == (res["beyond_forward_ms_per_image"] > 0)


def test_theoretical_peak_by_isa():
    amx = bench.theoretical_peak({"flags": ["avx512f", "amx_bf16", "avx512_bf16"], "vendor": "GenuineIntel",
                                  "family": "6", "mhz": "2000"})
    assert (amx["fp32_flop_per_cycle"], amx["bf16_flop_per_cycle"], amx["bf16_gflops_per_core"]) == (64, 1024, 2048)
    zen4 = bench.theoretical_peak({"flags": ["avx512f", "avx512_bf16"], "vendor": "AuthenticAMD", "family": "25",
                                   "mhz": "1000"})
    assert (zen4["fp32_flop_per_cycle"], zen4["bf16_flop_per_cycle"]) == (32, 64)
    zen3 = bench.theoretical_peak({"flags": ["avx2", "fma"], "vendor": "AuthenticAMD", "family": "25", "mhz": "1000"})
    assert zen3["bf16_flop_per_cycle"] == zen3["fp32_flop_per_cycle"] == 32


def test_a_cpu_without_bf16_kernels_gets_null_bf16_figures_with_that_reason(raw):
    from xeontl.measure import checkhost

    raw["cpu"]["flags"] = ["avx2", "fma"]  # Zen 3: the bf16 probes are not run (measure_probes), the profile ran fp32
    for part in ("peaks", "backbone"):
        raw[part]["bf16"] = checkhost.bf16_not_run(raw["cpu"]["flags"])
    raw["training"]["1w"]["precision"] = {"precision": "fp32", "chosen": "auto: no BF16 kernels on this CPU"}
    res = bench.assemble(raw)
    for k in ["peak_gflops_bf16", "backbone_img_s_bf16", "bf16_speedup", "mfu_bf16", "mfu_bf16_counted_flops",
              "bf16_epoch_speedup", "peak_fraction_bf16", "mfu_bf16_theoretical"]:
        assert res[k] is None and "BF16" in res[k + "_reason"], (k, res.get(k + "_reason"))
    assert res["mfu_fp32_counted_flops"] > 0  # the fp32 figures stand
    assert "n/a: not run (no BF16 on this CPU: lacks amx_bf16/avx512_bf16/avx512bw/avx_ne_convert)" in bench.table(res)


def test_a_failed_variant_is_named_and_its_ratios_say_why(raw):
    raw["training"]["2w_gloo"].update(img_s=None, reason="run failed (failed): results/x")
    raw["native_only"] = True
    del raw["rebuild"]
    res = bench.assemble(raw)
    assert res["train_img_s_2w_gloo"] is None and res["train_img_s_2w_gloo_reason"] == "run failed (failed): results/x"
    assert res["scaling_efficiency_gloo"] is None and "missing" in res["scaling_efficiency_gloo_reason"]
    assert res["container_over_native"] is None and res["container_over_native_reason"] == "skipped (--native-only)"
    assert res["source_rebuild_s"] is None and res["source_rebuild_s_reason"] == "skipped (--native-only)"


def test_the_feature_cache_speedup_is_time_to_accuracy_or_its_reason(raw):
    res = bench.assemble(raw)
    fc = raw["feature_cache"]
    if fc["speedup"] is None:
        assert res["feature_cache_speedup"] is None and res["feature_cache_speedup_reason"] == fc["reason"]
    else:
        assert res["feature_cache_speedup"] == pytest.approx(fc["normal_tta_s"] / fc["cache_tta_s"])
    raw["feature_cache"].update(speedup=12.5, accuracy_delta=-0.001, reason=None)
    res = bench.assemble(raw)
    assert res["feature_cache_speedup"] == 12.5 and "feature_cache_speedup_reason" not in res
    assert "| --feature-cache time-to-accuracy speedup | 12.5 | — (not in the paper) | >= 10.0 | yes |" in \
        bench.table(res)


def test_the_table_puts_each_figure_beside_its_target_and_verdict(raw):
    raw["training"]["2w"]["img_s"] = 0.96 * 2 * raw["training"]["1w"]["img_s"]
    raw["training"]["2w_container"]["overhead_s"] = 12.0
    md = bench.table(bench.assemble(raw))
    assert "| scaling efficiency, 2 workers, MPI (launcher defaults) | 0.960 | 0.92 (1.83x) | >= 0.95 | yes |" in md
    assert "| run overhead beyond the epochs, 2 workers (s) | 12.0 | — | <= 10.0 | no |" in md
    assert md.startswith(f"xeontl bench on {raw['host']['cpu']}") and "emulated" in md.splitlines()[0]


def test_bench_files_are_written_from_the_figures(raw, tmp_path):
    res = bench.assemble(raw)
    bench.write(tmp_path, res)
    assert json.loads((tmp_path / "bench.json").read_text())["scaling_efficiency"] == res["scaling_efficiency"]
    assert (tmp_path / "bench.md").read_text() == bench.table(res)
    assert (tmp_path / "bench.png").stat().st_size > 1000


@pytest.mark.slow
@needs_horovod
def test_a_real_matmul_probe_records_what_onednn_ran():
    topo = topology.live()
    one = planlib.make_plan(topo, 1, cores_per_socket=1)
    precision = "bf16" if runtime.bf16_kernels(provenance.cpuinfo()["flags"]) else "fp32"
    got = bench._probe(one.workers[0], one.env, "matmul", precision, 128, 0, 2)
    assert got["median"] > 0 and got["unit"] == "gflop/s" and "numactl" in got["command"]
    assert got["onednn"]["cpu_isa"] and got["onednn"]["implementations"]
    assert "" not in got["onednn"]["implementations"]


@pytest.mark.slow
def test_the_bench_reads_a_real_launcher_run(native_run):
    got = bench.run_figures(0, native_run, "smoke", {"epochs": "6"})
    assert got["img_s"] > 0 and got["epochs_used"] == 1  # 2 epochs run, the first (tracing) left out
    assert got["overhead_s"] > 0 and got["wall_s"] > got["train_s"] > 0 and got["peak_rss_mib"] > 100
    assert "mpirun --allow-run-as-root --tag-output -np 2" in got["plan"] and "numactl" in got["plan"]
    assert got["plan"].endswith("# config.json: profile smoke, overrides epochs=6\n")
    # the overhead, phase by phase from the run's own records: every mark found (no merged phase), each phase
    # positive, and they add up to the wall time
    phases = got["overhead_phases"]
    assert list(phases["seconds"]) == ["launcher: checks, container and mpirun start",
                                       "rank: Python and TensorFlow imports", "rank: Horovod, logs, the run's records",
                                       "set-up: data (load, shard)",
                                       "set-up: model (backbone, the demo's feature standardizer, cache)",
                                       "set-up: optimizer, compile, callbacks", "training", "final evaluation",
                                       "rank exit, mpirun, report, provenance"]
    assert all(s > 0 for s in phases["seconds"].values()), phases
    assert sum(phases["seconds"].values()) == pytest.approx(got["wall_s"], abs=0.05)
    assert phases["beyond_training"] == pytest.approx(got["wall_s"] - phases["seconds"]["training"], abs=0.05)


def test_each_figure_and_target_is_declared_once():
    """bench.json, bench.md, bench.png and the reasons read the one registry (before, the plot drew 0.5 for one
    figure while the table put 0.7 on another)."""
    from xeontl.measure import bench_report

    src = Path(bench.__file__).read_text() + Path(bench_report.__file__).read_text()  # the registry is bench_report's
    keys = [f.key for f in bench.FIGURES]
    assert len(keys) == len(set(keys))
    for f in bench.FIGURES:
        if f.target:  # written once in the source: in its figure's declaration
            written = rf'\(\s*"{re.escape(f.target[0])}",\s*{re.escape(repr(f.target[1]))}\)'
            assert len(re.findall(written, src)) == sum(g.target == f.target for g in bench.FIGURES), f.key
    md = bench.table(bench.assemble(json.loads(FIXTURE.read_text())["raw"]))
    assert all(f"`{f.key}`" in md and f.label in md for f in bench.FIGURES)


def test_the_step_figures_are_medians_of_the_interleaved_runs_and_the_profile_is_tabled(raw):
    def probe(step_s, bn_ms):
        ms = {"convolutions": step_s * 900, **({"batch norm": bn_ms} if bn_ms else {})}
        return {"median": 32 / step_s, "step_s": step_s, "profile": {"step_ms": step_s * 1000, "ms_per_step": ms}}

    raw["step"] = {"precision": "bf16", "shape": {"image": 224, "batch": 32, "repeats": 3, "pairs": 3},
                   "runs": {"folded": [probe(0.30, 0), probe(0.34, 0), probe(0.32, 0)],
                            "separate": [probe(0.40, 40.0), probe(0.36, 36.0), {"median": None, "reason": "killed"}]}}
    res = bench.assemble(raw)
    assert res["step_ms_paper_shape"] == pytest.approx(320.0)
    assert res["batch_norm_fold_saving"] == pytest.approx(1 - 0.32 / 0.38)
    md = bench.table(res)
    assert "| batch norm | 0.0 | 40.0 |" in md and "| the step | 300 | 400 |" in md
    assert "224 px, batch 32, bf16; medians of 3 interleaved runs each" in md


def test_the_full_bench_states_its_own_duration_against_its_20_minute_target(raw):
    raw.update(size="full", bench_seconds={"training variants": 660.0, "feature cache time to accuracy": 828.0})
    res = bench.assemble(raw)
    assert res["bench_minutes"] == pytest.approx(24.8) and "| this bench's own duration (the full bench) | " \
        "24.8 | — | <= 20.0 | no |" in bench.table(res)
    raw["size"] = "quick"
    res = bench.assemble(raw)
    assert res["bench_minutes"] is None and res["bench_minutes_reason"] == "the target is the full bench's; this " \
        "was the quick one"
