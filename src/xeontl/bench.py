"""`invoke bench`: this machine's own speed, measured side by side in one run, steady state, medians of repeats.

Each figure runs in a fresh process (precision switches such as oneDNN's AMP rewrite are process-wide) and the
training figures go through the real launcher plans, whose command lines are recorded in bench.json.
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

from xeontl import launch, plan as planlib, topology

RESNET50_GFLOP_224 = 4.1  # forward pass at 224x224 (the convention); scaled by pixel count

# ------------------------------------------------------------------------------------------------ in-process probes
_WORKER = r"""
import json, os, statistics, sys, time
import tensorflow as tf
what, precision, size, batch, repeats = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
threads = int(os.environ.get("XEONTL_INTRA_THREADS", "0"))
tf.config.threading.set_intra_op_parallelism_threads(threads)
tf.config.threading.set_inter_op_parallelism_threads(threads)
if precision == "bf16":
    tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
if what == "matmul":
    n = size
    a, b = tf.random.uniform((n, n)), tf.random.uniform((n, n))
    f = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
    work, unit = 2 * n ** 3 / 1e9, "gflop"
    step = lambda: f(a, b).numpy()
else:
    from xeontl.model import resnet50
    net = resnet50(size)
    x = tf.random.uniform((batch, size, size, 3))
    f = tf.function(lambda x: tf.reduce_mean(net(x, training=False)))
    work, unit = batch, "images"
    step = lambda: f(x).numpy()
for _ in range(3):  # warm-up: tracing, oneDNN primitive creation
    step()
rates = []
for _ in range(repeats):
    t0 = time.perf_counter(); step(); rates.append(work / (time.perf_counter() - t0))
print(json.dumps({"median": statistics.median(rates), "unit": unit + "/s", "repeats": rates}))
"""


def _probe(what: str, precision: str, size: int, batch: int, repeats: int, env: dict, numactl: list[str]) -> dict:
    cmd = [*numactl, sys.executable, "-c", _WORKER, what, precision, str(size), str(batch), str(repeats)]
    out = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, **env, "TF_CPP_MIN_LOG_LEVEL": "2"},
                         timeout=900)
    if out.returncode != 0:
        return {"median": None, "reason": out.stderr.strip().splitlines()[-1] if out.stderr else "failed",
                "command": " ".join(cmd[:len(numactl) + 1])}
    return {**json.loads(out.stdout.strip().splitlines()[-1]), "command": " ".join(numactl + ["python", what])}


# ------------------------------------------------------------------------------------------------ training runs
def _train_rate(opts: launch.Options) -> dict:
    """One launcher run; steady-state images/s = median over epochs after the first (tracing, warm-up)."""
    rc, run = launch.execute(launch.prepare(opts))
    metrics = json.loads((run / "metrics.json").read_text())
    if rc != 0 or metrics.get("status") != "success":
        return {"img_s": None, "reason": f"run failed ({metrics.get('status')})", "run": str(run)}
    epochs = metrics["per_epoch"][1:] or metrics["per_epoch"]
    rate = statistics.median(e["images_per_second"] for e in epochs) * metrics["workers"]
    return {"img_s": rate, "run": str(run), "plan": (run / "command.txt").read_text(), "epochs_used": len(epochs)}


SIZES = {
    "full": {"matmul": 2048, "image": 96, "batch": 32, "repeats": 15, "profile": "demo",
             "train": {"epochs": "5", "patience": "100", "synthetic_train": "1600"}},
    "quick": {"matmul": 2048, "image": 96, "batch": 32, "repeats": 5, "profile": "demo",
              "train": {"epochs": "3", "patience": "100", "synthetic_train": "640"}},
    # functional tests: every figure is produced, none means anything
    "tiny": {"matmul": 128, "image": 32, "batch": 2, "repeats": 2, "profile": "smoke", "train": {"epochs": "2"}},
}


def run(quick: bool, results_dir: Path, image: str, native_only: bool = False, sizes: str | None = None) -> Path:
    sz = SIZES[sizes or ("quick" if quick else "full")]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = results_dir / f"bench-{stamp}"
    out.mkdir(parents=True)
    topo = topology.live()
    two = planlib.make_plan(topo, 2, emulate=len(topo.sockets()) < 2)
    one = planlib.make_plan(topo, 1, cores_per_socket=two.workers[0].cores)  # 1 worker on one (emulated) socket
    w = one.workers[0]
    env = {"XEONTL_INTRA_THREADS": str(w.cores), "OMP_NUM_THREADS": str(w.cores), **planlib.PAPER_KMP_ENV}
    size, repeats = sz["image"], sz["repeats"]
    res: dict = {"host": {**topo.summary(), "cpu": _cpu_model()}, "plans": {}, "sizes": sz,
                 "emulated_sockets": two.emulated}
    print(f"[bench] peak matmul on {w.cores} core(s) ({' '.join(w.numactl)})", flush=True)
    peaks = {p: _probe("matmul", p, sz["matmul"], 0, repeats, env, w.numactl) for p in ("fp32", "bf16")}
    print("[bench] backbone forward fp32 vs bf16", flush=True)
    bb = {p: _probe("backbone", p, size, sz["batch"], repeats, env, w.numactl) for p in ("fp32", "bf16")}
    gflop_img = RESNET50_GFLOP_224 * (size / 224) ** 2
    res.update(peak_gflops_fp32=peaks["fp32"]["median"], peak_gflops_bf16=peaks["bf16"]["median"],
               backbone_img_s_fp32=bb["fp32"]["median"], backbone_img_s_bf16=bb["bf16"]["median"])
    res["bf16_speedup"] = _ratio(res["backbone_img_s_bf16"], res["backbone_img_s_fp32"])
    res["mfu_bf16"] = _ratio(None if res["backbone_img_s_bf16"] is None else res["backbone_img_s_bf16"] * gflop_img,
                             res["peak_gflops_bf16"])
    res["plans"]["probes"] = " ".join(w.numactl) + f" (intra {w.cores}); backbone at {size} px, batch {sz['batch']}"
    overrides, profile = sz["train"], sz["profile"]
    runs = results_dir / f"bench-{stamp}-runs"
    runs.mkdir()
    print("[bench] training: 1 worker on one socket, then 2 workers on two (native)", flush=True)
    t1 = _train_rate(launch.Options(sockets=1, cores_per_socket=w.cores, profile=profile, overrides=overrides,
                                    native=True, results_dir=runs, report=False))
    t2 = _train_rate(launch.Options(sockets=2, emulate_sockets=two.emulated, profile=profile, overrides=overrides,
                                    native=True, results_dir=runs, report=False))
    res.update(train_img_s_1w=t1["img_s"], train_img_s_2w=t2["img_s"])
    res["scaling_efficiency"] = _ratio(t2["img_s"], None if t1["img_s"] is None else 2 * t1["img_s"])
    res["plans"].update(train_1w=t1.get("plan"), train_2w=t2.get("plan"))
    if native_only:
        res["container_over_native"], res["container_over_native_reason"] = None, "skipped (--native-only)"
    else:
        print("[bench] training: 2 workers in the container", flush=True)
        t2c = _train_rate(launch.Options(sockets=2, emulate_sockets=two.emulated, profile=profile, overrides=overrides,
                                         image=image, results_dir=runs, report=False))
        res["train_img_s_2w_container"] = t2c["img_s"]
        res["container_over_native"] = _ratio(t2c["img_s"], t2["img_s"])
        res["plans"]["train_2w_container"] = t2c.get("plan")
    res["feature_cache_speedup"] = res["feature_cache_accuracy_delta"] = None
    res["feature_cache_reason"] = "--feature-cache is not implemented yet"
    for k in ("peak_gflops_fp32", "peak_gflops_bf16", "backbone_img_s_fp32", "backbone_img_s_bf16"):
        src = (peaks if k.startswith("peak") else bb)[k.rsplit("_", 1)[1]]
        if src["median"] is None:
            res[k + "_reason"] = src["reason"]
    res["raw"] = {"peaks": peaks, "backbone": bb, "train_1w": t1, "train_2w": t2}
    (out / "bench.json").write_text(json.dumps(res, indent=1, default=str))
    _plot(out, res)
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict)}, indent=1, default=str))
    return out


def _ratio(a, b):
    return None if a is None or not b else a / b


def _cpu_model() -> str | None:
    from xeontl.provenance import cpuinfo

    return cpuinfo()["model_name"]


def _plot(out: Path, res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    pairs = [("backbone fp32", res["backbone_img_s_fp32"]), ("backbone bf16", res["backbone_img_s_bf16"]),
             ("train 1 worker", res["train_img_s_1w"]), ("train 2 workers", res["train_img_s_2w"]),
             ("train 2w container", res.get("train_img_s_2w_container"))]
    fig, ax = plt.subplots(figsize=(8, 4))
    ax.bar([p[0] for p in pairs], [p[1] or 0 for p in pairs])
    ax.set_ylabel("images/s")
    ax.set_title(f"xeontl bench on {res['host'].get('cpu')} ({res['host']['usable_cpus']})", fontsize=9)
    plt.setp(ax.get_xticklabels(), rotation=20)
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=80)
    plt.close(fig)
