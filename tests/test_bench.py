"""The bench code at tiny sizes: it produces a complete bench.json (no timing is asserted)."""

import json

import pytest

from conftest import needs_horovod
from xeontl import bench, provenance, runtime, topology
from xeontl import plan as planlib

KEYS = ["peak_gflops_bf16", "peak_gflops_fp32", "backbone_img_s_fp32", "backbone_img_s_bf16", "bf16_speedup",
        "mfu_bf16", "train_img_s_1w", "train_img_s_2w", "scaling_efficiency", "container_over_native",
        "feature_cache_speedup", "feature_cache_accuracy_delta", "host", "plans"]


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


@pytest.mark.slow
@needs_horovod
def test_bench_writes_every_figure(tmp_path):
    out = bench.run(quick=True, results_dir=tmp_path, image="unused", native_only=True, sizes="tiny")
    res = json.loads((out / "bench.json").read_text())
    assert set(KEYS) <= set(res)
    for k in ["peak_gflops_fp32", "backbone_img_s_fp32", "train_img_s_1w", "train_img_s_2w", "scaling_efficiency",
              "scaling_efficiency_mpi_busy_poll", "scaling_efficiency_gloo", "peak_fraction_fp32", "run_overhead_s",
              "mfu_fp32_counted_flops", "mfu_fp32_theoretical",
              "peak_rss_mib_demo", "peak_rss_mib_paper_shape"]:
        assert isinstance(res[k], float) and res[k] > 0, k
    # BF16 figures where the CPU has oneDNN BF16 kernels; elsewhere (AVX2-only hosts) null with that reason
    bf16 = runtime.bf16_kernels(provenance.cpuinfo()["flags"])
    for k in ["peak_gflops_bf16", "backbone_img_s_bf16", "bf16_speedup", "mfu_bf16", "mfu_bf16_counted_flops",
              "bf16_epoch_speedup", "peak_fraction_bf16", "mfu_bf16_theoretical"]:
        if bf16:
            assert isinstance(res[k], float) and res[k] > 0, k
        else:
            assert res[k] is None and "BF16" in res[k + "_reason"], (k, res.get(k + "_reason"))
    assert res["container_over_native"] is None and res["container_over_native_reason"]  # null, reason beside it
    fc = res["raw"]["feature_cache"]
    assert fc["cache_build_s"] > 0 and fc["normal_epochs"] >= 1 and isinstance(res["feature_cache_accuracy_delta"],
                                                                                float)
    assert isinstance(res["feature_cache_speedup"], float) or res["feature_cache_speedup_reason"]
    # the MPI fix really was undone in the busy-poll variant, and is on in the default one
    assert "OMPI_MCA_mpi_yield_when_idle=0" in res["plans"]["train_2w_mpi_busy_poll"]
    assert "OMPI_MCA_mpi_yield_when_idle=1" in res["plans"]["train_2w"]
    assert "numactl" in res["plans"]["train_2w"] and "horovodrun -np 2" in res["plans"]["train_2w"]
    assert "--gloo" in res["plans"]["train_2w_gloo"] and "precision=fp32" in res["plans"]["train_1w_fp32"]
    assert res["backbone_gflop_per_image_counted"] > 0 and "emulated" in res["host"]["note"]
    # against the hardware: the cores' theoretical limit, the fraction of it reached, what oneDNN ran the peak with
    hw = res["theoretical_peak"]
    assert hw["fp32_flop_per_cycle"] >= 8 and hw["bf16_flop_per_cycle"] >= hw["fp32_flop_per_cycle"] and hw["basis"]
    assert res["math_path"]["fp32"]["cpu_isa"] and res["math_path"]["fp32"]["implementations"]
    assert "" not in res["math_path"]["fp32"]["implementations"]
    assert "image_size=64" in res["plans"]["paper_shape_memory"]
    assert (out / "bench.png").stat().st_size > 1000
    md = (out / "bench.md").read_text()  # the table the README shows, every figure next to the paper's and target
    assert "| scaling efficiency, 2 workers, MPI (launcher defaults) |" in md and "0.92 (1.83x)" in md
    assert "n/a: skipped (--native-only)" in md
