"""The bench code at tiny sizes: it produces a complete bench.json (no timing is asserted)."""

import json

import pytest

from conftest import needs_horovod
from xeontl import bench

pytestmark = pytest.mark.slow

KEYS = ["peak_gflops_bf16", "peak_gflops_fp32", "backbone_img_s_fp32", "backbone_img_s_bf16", "bf16_speedup",
        "mfu_bf16", "train_img_s_1w", "train_img_s_2w", "scaling_efficiency", "container_over_native",
        "feature_cache_speedup", "feature_cache_accuracy_delta", "host", "plans"]


@needs_horovod
def test_bench_writes_every_figure(tmp_path):
    out = bench.run(quick=True, results_dir=tmp_path, image="unused", native_only=True, sizes="tiny")
    res = json.loads((out / "bench.json").read_text())
    assert set(KEYS) <= set(res)
    for k in ["peak_gflops_bf16", "peak_gflops_fp32", "backbone_img_s_fp32", "backbone_img_s_bf16", "bf16_speedup",
              "mfu_bf16", "train_img_s_1w", "train_img_s_2w", "scaling_efficiency"]:
        assert isinstance(res[k], float) and res[k] > 0, k
    for k in ["container_over_native", "feature_cache_speedup"]:  # not measured: null with the reason beside it
        assert res[k] is None and res[k.replace("_speedup", "") + "_reason"]
    assert "numactl" in res["plans"]["train_2w"] and "horovodrun -np 2" in res["plans"]["train_2w"]
    assert (out / "bench.png").stat().st_size > 1000
