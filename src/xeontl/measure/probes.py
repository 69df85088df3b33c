"""The compute probes: a fresh `python -m xeontl measure` process per figure (precision switches such as oneDNN's AMP
rewrite are process-wide) on a worker's cores with its threads, and what the figures are measured against (a core's
theoretical peak). `invoke bench` and `invoke bench --check-host` both run them; each reads what it needs here, and
neither imports the other for it."""

from __future__ import annotations

import json
import shlex
import statistics
import subprocess
import time

from xeontl.engines.native import native_env
from xeontl.placement import plan as planlib

RESNET50_GFLOP_224 = 4.1  # forward pass at 224x224 (the convention); scaled by pixel count


def theoretical_peak(cpu: dict) -> dict:
    """What one core's vector units can retire per cycle, in FLOPs (2 per multiply-add, as the matmul figure counts),
    by what the CPU reports, x the clock /proc/cpuinfo reads (a VM reports the nominal clock, not the boost clock:
    the real limit may be up to ~1.5x higher). Sources: Intel's and AMD's optimization manuals."""
    flags, vendor, family = set(cpu.get("flags") or ()), cpu.get("vendor"), int(cpu.get("family") or 0)
    if "avx512f" in flags and vendor == "AuthenticAMD" and family == 25:
        fp32, unit = 32, "Zen 4: AVX-512 on two 256-bit FMA pipes = 2 x 8 lanes x 2"
    elif "avx512f" in flags:
        fp32, unit = 64, "two 512-bit FMA units = 2 x 16 lanes x 2"
    elif {"avx2", "fma"} <= flags:
        fp32, unit = 32, "AVX2: two 256-bit FMA pipes = 2 x 8 lanes x 2"
    else:
        fp32, unit = 8, "SSE: 4 lanes x 2"
    if "amx_bf16" in flags:
        bf16, how = 1024, "AMX: Intel's 1024 BF16 operations per cycle per core, taken as FLOPs"
    elif "avx512_bf16" in flags:
        bf16, how = 2 * fp32, "AVX512-BF16 (VDPBF16PS): two BF16 products per fp32 lane"
    else:
        bf16, how = fp32, "no BF16 arithmetic in this CPU: BF16 math runs as fp32 at best (the fp32 limit)"
    mhz = float(cpu.get("mhz") or 0)
    return {"clock_mhz": mhz or None, "fp32_flop_per_cycle": fp32, "bf16_flop_per_cycle": bf16,
            "fp32_gflops_per_core": fp32 * mhz / 1e3 or None, "bf16_gflops_per_core": bf16 * mhz / 1e3 or None,
            "basis": f"fp32: {unit}; bf16: {how}; clock from /proc/cpuinfo"}

# ------------------------------------------------------------------------------------------------ compute probes
def measure(what: str, precision: str, size: int, batch: int, repeats: int, threads: int, fold: bool = True) -> dict:
    """`xeontl measure` (one fresh process per figure: oneDNN's BF16 rewrite is process-wide): steady-state rate of
    a square matmul (GFLOP/s) or the backbone's forward pass (images/s), median of `repeats` after warm-up. The
    backbone's batch norms are folded into its convolutions as training folds them (fold=False: as Keras has them)."""
    if what in ("onednn", "tmul"):  # below TensorFlow: no TF import in these processes
        from xeontl.measure import onednn

        return onednn.curve(size, repeats) if what == "onednn" else onednn.tmul(repeats)
    import tensorflow as tf

    from xeontl.experiment import runtime

    extra: dict = {}
    if what == "bandwidth":  # STREAM's copy on this process's CPUs and memory node (numactl): bytes read + written
        import numpy as np

        n = (size << 20) // 8  # --size in MiB per array
        a, b = np.ones(n), np.empty(n)
        np.copyto(b, a)  # first touch: the pages are placed (numactl -m) before timing
        rates = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            np.copyto(b, a)
            rates.append(2 * a.nbytes / 1e9 / (time.perf_counter() - t0))
        return {"median": statistics.median(rates), "unit": "GB/s", "repeats": rates,
                "basis": f"numpy copy of {size} MiB, one thread (read + write bytes)"}
    runtime.configure_threads(threads, threads)
    runtime.configure_precision(precision, "onednn")
    if what == "step":
        return _training_step(size, batch, repeats, fold)
    if what == "curve":
        return _matmul_curve(size, repeats)
    if what == "matmul":
        a, b = tf.random.uniform((size, size)), tf.random.uniform((size, size))
        f = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
        work, unit = 2 * size ** 3 / 1e9, "gflop"

        def step():
            f(a, b).numpy()
    else:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

        from xeontl.experiment.model import fold_batch_norms, resnet50

        net = fold_batch_norms(resnet50(size)) if fold else resnet50(size)
        # FLOPs of one image as TF's profiler counts them on this graph (2 per multiply-add, like the matmul peak)
        one = tf.function(lambda x: net(x, training=False)).get_concrete_function(tf.TensorSpec((1, size, size, 3)))
        opts = {**tf.compat.v1.profiler.ProfileOptionBuilder.float_operation(), "output": "none"}
        flops = tf.compat.v1.profiler.profile(graph=convert_variables_to_constants_v2(one).graph, options=opts)
        extra["gflop_per_image"] = flops.total_float_ops / 1e9
        x = tf.random.uniform((batch, size, size, 3))
        g = tf.function(lambda x: tf.reduce_mean(net(x, training=False)))
        work, unit = batch, "images"

        def step():
            g(x).numpy()
    for _ in range(3):  # warm-up: tracing, oneDNN primitive creation
        step()
    rates = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step()
        rates.append(work / (time.perf_counter() - t0))
    return {"median": statistics.median(rates), "unit": unit + "/s", "repeats": rates, **extra}


PROFILE_MARKS = ("xeontl-profile-start", "xeontl-profile-stop")


def _training_step(size: int, batch: int, repeats: int, fold: bool) -> dict:
    """The paper's training step on synthetic tensors: the frozen backbone's forward pass, the head's forward and
    backward, Adam's update (no data pipeline, no allreduce: one process). The timed steps sit between two marker
    lines, so oneDNN's verbose lines of exactly those steps can be read off stdout (checkhost.step_profile)."""
    import tensorflow as tf

    from xeontl.experiment.model import fold_batch_norms, resnet50

    net = fold_batch_norms(resnet50(size)) if fold else resnet50(size)
    net.trainable = False
    head, opt = tf.keras.layers.Dense(8), tf.keras.optimizers.Adam(1e-3)
    loss_fn = tf.keras.losses.SparseCategoricalCrossentropy(from_logits=True)
    x = tf.random.uniform((batch, size, size, 3))
    y = tf.random.uniform((batch,), maxval=8, dtype=tf.int32)

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            feats = tf.reduce_mean(net(x, training=False), axis=[1, 2])
            loss = loss_fn(y, tf.cast(head(feats), tf.float32))
        opt.apply_gradients(zip(tape.gradient(loss, head.trainable_variables), head.trainable_variables))
        return loss

    for _ in range(3):  # warm-up: tracing, oneDNN primitive creation
        step().numpy()
    print(PROFILE_MARKS[0], flush=True)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        step().numpy()
        times.append(time.perf_counter() - t0)
    print(PROFILE_MARKS[1], flush=True)
    return {"median": batch / statistics.median(times), "unit": "images/s", "step_s": statistics.median(times),
            "steps": repeats, "repeats": [batch / t for t in times]}


CURVE_MIN = 1024
OUTSIDE_ONEDNN = "outside oneDNN (TF's own ops: casts, the loss, Adam's update; launch and framework time)"


CURVE_CALL_BUDGET_S = 4.0


def _matmul_curve(largest: int, repeats: int) -> dict:
    """Square matmuls from CURVE_MIN up to LARGEST, doubling, in this process's precision: GFLOP/s per size, each
    size's timed calls between marker lines (its oneDNN verbose lines: how much of a call is reorders). A size whose
    call would take over CURVE_CALL_BUDGET_S at the last size's rate is left out and named: emulated BF16 (an AVX-512
    core without avx512_bf16) runs 8192^2 at 29 GFLOP/s, 38 s a call, and alone made check-host take 8 min."""
    import tensorflow as tf

    points, n, skipped = [], CURVE_MIN, []
    while n <= largest:
        if points and 2 * n ** 3 / 1e9 / points[-1]["gflops"] > CURVE_CALL_BUDGET_S:
            skipped.append(n)
            n *= 2
            continue
        a, b = tf.random.uniform((n, n)), tf.random.uniform((n, n))
        f = tf.function(lambda a, b: tf.reduce_sum(tf.matmul(a, b)))
        for _ in range(2):
            f(a, b).numpy()
        print(f"{PROFILE_MARKS[0]} {n}", flush=True)
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            f(a, b).numpy()
            times.append(time.perf_counter() - t0)
        print(f"{PROFILE_MARKS[1]} {n}", flush=True)
        points.append({"size": n, "gflops": 2 * n ** 3 / 1e9 / statistics.median(times),
                       "call_s": statistics.median(times), "calls": repeats})
        n *= 2
    why = f"a call would take over {CURVE_CALL_BUDGET_S:g} s"
    return {"median": max(p["gflops"] for p in points), "unit": "gflop/s", "points": points,
            "skipped": {"sizes": skipped, "why": why} if skipped else None}


def _probe(worker: planlib.Worker, env: dict, what: str, precision: str, size: int, batch: int, repeats: int,
           fold: bool = True) -> dict:
    cmd = planlib.measure_command(worker, what, precision, size, batch, repeats, fold)
    # the matmul peak says what oneDNN dispatched for it (ONEDNN_VERBOSE lines, read as a rank's are: records.onednn)
    # the training step's too, for its per-primitive times (checkhost.step_profile)
    verbose = {"ONEDNN_VERBOSE": "1"} if what in ("matmul", "step", "curve") else {}
    out = subprocess.run(cmd, capture_output=True, text=True,
                         env=native_env(env, {"TF_CPP_MIN_LOG_LEVEL": "2", **verbose}), timeout=900)
    if out.returncode != 0:
        return {"median": None, "reason": out.stderr.strip().splitlines()[-1] if out.stderr else "failed",
                "command": shlex.join(cmd)}
    from xeontl.records import onednn as onednn_lines

    onednn = onednn_lines.parse(out.stdout) if verbose else None
    got = {**json.loads(out.stdout.strip().splitlines()[-1]), "command": shlex.join(cmd), "onednn": onednn}
    if what == "step":
        got["profile"] = step_profile(out.stdout, got["steps"], got["step_s"])
    if what == "curve":
        for p in got["points"]:  # the share of a call that oneDNN spent reordering (layouts, fp32 -> bf16)
            prof = step_profile(out.stdout, p["calls"], p["call_s"], marks=tuple(f"{m} {p['size']}"
                                                                                  for m in PROFILE_MARKS))
            p["reorder_share"] = (prof.get("share") or {}).get("reorders (layout, fp32<->bf16)", 0.0)
            p["outside_share"] = (prof.get("share") or {}).get(OUTSIDE_ONEDNN, 0.0)  # TF's casts to bf16, the sum
            p["kernels"] = sorted(k for k in prof.get("kernels_per_step") or {} if not k.startswith("reorder"))
    return got


GROUPS = {"convolution": "convolutions", "deconvolution": "convolutions", "inner_product": "matmul / dense",
          "matmul": "matmul / dense", "gemm_api": "matmul / dense", "reorder": "reorders (layout, fp32<->bf16)",
          "pooling": "pooling, eltwise, binary, sum", "eltwise": "pooling, eltwise, binary, sum",
          "binary": "pooling, eltwise, binary, sum", "sum": "pooling, eltwise, binary, sum",
          "batch_normalization": "batch norm", "softmax": "other oneDNN", "layer_normalization": "other oneDNN"}


def step_profile(stdout: str, steps: int, step_s: float, marks: tuple[str, str] | None = None) -> dict:
    """Where a training step's time goes, from oneDNN's verbose lines of the timed steps (between the probe's two
    marker lines): milliseconds per step by group and their share of the step, the kernels that ran; what oneDNN
    did not time is the rest of the step."""
    start, stop = marks or PROFILE_MARKS
    lines = stdout.splitlines()
    try:
        body = lines[lines.index(start) + 1:lines.index(stop)]
    except ValueError:
        return {"error": "no profile markers in the probe's output"}
    per_group: dict[str, float] = {}
    kernels: dict[str, int] = {}
    for ln in body:
        parts = ln.split(",")
        if not ln.startswith(("onednn_verbose", "dnnl_verbose")) or len(parts) < 6 or parts[1] != "exec":
            continue
        try:
            ms = float(parts[-1])
        except ValueError:
            continue
        group = GROUPS.get(parts[3], "other oneDNN")
        per_group[group] = per_group.get(group, 0.0) + ms / steps
        kernels[f"{parts[3]}:{parts[4] or parts[3]}"] = kernels.get(f"{parts[3]}:{parts[4] or parts[3]}", 0) + 1
    step_ms = step_s * 1000
    per_group[OUTSIDE_ONEDNN] = max(step_ms - sum(per_group.values()), 0.0)
    return {"step_ms": step_ms, "ms_per_step": dict(sorted(per_group.items(), key=lambda kv: -kv[1])),
            "share": {k: v / step_ms for k, v in per_group.items()},
            "kernels_per_step": {k: n // steps for k, n in sorted(kernels.items(), key=lambda kv: -kv[1])},
            "basis": f"{steps} timed steps after 3 warm-up ones, ONEDNN_VERBOSE=1 (its printing is in the step "
                     f"time); no data pipeline (augmentation, decode) and no allreduce: one process"}


# the ways the bf16 matmul is measured, as the curve's columns name them
def _ratio(a, b):
    return None if a is None or not b else a / b


def _cpuinfo() -> dict:
    from xeontl.records.provenance import cpuinfo

    return cpuinfo()
