"""`invoke bench`: this machine's own speed, measured side by side in one run, steady state, medians of repeats.

Each figure runs in a fresh process (precision switches such as oneDNN's AMP rewrite are process-wide) and the
training figures go through the real launcher plans, whose command lines are recorded in bench.json.
"""

from __future__ import annotations

import dataclasses
import json
import shlex
import statistics
import subprocess
import time
from datetime import datetime, timezone
from pathlib import Path

from xeontl import dockercli, launch, topology
from xeontl import image as imagelib
from xeontl import plan as planlib
from xeontl.engines.native import native_env
from xeontl.options import Options

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
        from xeontl import onednn

        return onednn.curve(size, repeats) if what == "onednn" else onednn.tmul(repeats)
    import tensorflow as tf

    from xeontl import runtime

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

        from xeontl.model import fold_batch_norms, resnet50

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

    from xeontl.model import fold_batch_norms, resnet50

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
    # the matmul peak says what oneDNN dispatched for it (ONEDNN_VERBOSE lines, parsed as provenance's probe does)
    # the training step's too, for its per-primitive times (checkhost.step_profile)
    verbose = {"ONEDNN_VERBOSE": "1"} if what in ("matmul", "step", "curve") else {}
    out = subprocess.run(cmd, capture_output=True, text=True,
                         env=native_env(env, {"TF_CPP_MIN_LOG_LEVEL": "2", **verbose}), timeout=900)
    if out.returncode != 0:
        return {"median": None, "reason": out.stderr.strip().splitlines()[-1] if out.stderr else "failed",
                "command": shlex.join(cmd)}
    from xeontl.provenance import parse_onednn_verbose

    onednn = parse_onednn_verbose(out.stdout) if verbose else None
    got = {**json.loads(out.stdout.strip().splitlines()[-1]), "command": shlex.join(cmd), "onednn": onednn}
    if what == "step":
        from xeontl.checkhost import step_profile

        got["profile"] = step_profile(out.stdout, got["steps"], got["step_s"])
    if what == "curve":
        from xeontl.checkhost import step_profile

        for p in got["points"]:  # the share of a call that oneDNN spent reordering (layouts, fp32 -> bf16)
            prof = step_profile(out.stdout, p["calls"], p["call_s"], marks=tuple(f"{m} {p['size']}"
                                                                                  for m in PROFILE_MARKS))
            p["reorder_share"] = (prof.get("share") or {}).get("reorders (layout, fp32<->bf16)", 0.0)
            p["outside_share"] = (prof.get("share") or {}).get(OUTSIDE_ONEDNN, 0.0)  # TF's casts to bf16, the sum
            p["kernels"] = sorted(k for k in prof.get("kernels_per_step") or {} if not k.startswith("reorder"))
    return got


# ------------------------------------------------------------------------------------------------ training runs
def _train_run(opts: Options) -> dict:
    """One launcher run, measured."""
    rc, run = launch.execute(launch.prepare(opts))
    return run_figures(rc, run, opts.profile, opts.overrides)


def run_figures(rc: int, run: Path, profile: str, overrides: dict) -> dict:
    """A finished run dir's figures; steady-state images/s = median over epochs after the first (tracing, warm-up)."""
    metrics = json.loads((run / "metrics.json").read_text())
    if rc != 0 or metrics.get("status") != "success":
        return {"img_s": None, "reason": f"run failed ({metrics.get('status')}): {run}", "run": str(run)}
    epochs = metrics["per_epoch"][1:] or metrics["per_epoch"]
    rate = statistics.median(e["images_per_second"] for e in epochs) * metrics["workers"]
    # the command lines, and the config the ranks read (config.json) where it differs from the profile's
    shown = " ".join(f"{k}={v}" for k, v in sorted(overrides.items()))
    plan = (run / "command.txt").read_text() + f"\n# config.json: profile {profile}, overrides {shown}\n"
    wall = json.loads((run / "provenance.json").read_text())["timestamps"]["seconds"]
    return {"img_s": rate, "run": str(run), "plan": plan, "epochs_used": len(epochs),
            "final_val_accuracy": metrics.get("final_val_accuracy"), "per_epoch": metrics["per_epoch"],
            "feature_cache": metrics.get("feature_cache"), "wall_s": wall, "train_s": metrics["train_seconds"],
            # what the user waits for beyond the epochs: start-up (container, imports, data, model, tracing) + after
            "overhead_s": wall - metrics["train_seconds"], "overhead_phases": overhead_phases(run),
            "peak_rss_mib": metrics.get("peak_rss_mib_per_rank"),
            "precision": metrics.get("precision") or {}}


def overhead_phases(run: Path) -> dict:
    """Where a run's wall time beyond its training goes, phase by phase, from its own records: the launcher's start
    and end (provenance), rank 0's process start and end of imports (metrics' startup), the MLPerf events
    (init_start, run_start, the last epoch_stop, the final eval_accuracy). Seconds each; the first epoch's extra time
    over the median epoch (tracing, oneDNN's primitive creation) is inside the training time and is shown beside."""
    from datetime import datetime

    from xeontl.events import FILE, PREFIX

    prov = json.loads((run / "provenance.json").read_text())["timestamps"]
    metrics = json.loads((run / "metrics.json").read_text())
    start, end = (datetime.fromisoformat(prov[k]).timestamp() for k in ("start_utc", "end_utc"))
    events: dict = {}
    for line in (run / FILE).read_text().splitlines():
        if line.startswith(PREFIX):
            e = json.loads(line[len(PREFIX):])
            if e["key"] == "epoch_stop":  # the last one: training's end (run_stop comes after the final evaluation)
                events["epoch_stop"] = e["time_ms"] / 1000
            elif e["key"] in ("init_start", "run_start") or (e["key"] == "eval_accuracy" and
                                                             e["metadata"].get("final")):
                events.setdefault(e["key"], e["time_ms"] / 1000)
    up = metrics.get("startup") or {}
    # (when it ended, the phase that ends there); a missing mark merges its phase into the next one
    marks = [(up.get("process_started_unix"), "launcher: checks, container and mpirun start"),
             (up.get("imports_done_unix"), "rank: Python and TensorFlow imports"),
             (events.get("init_start"), "rank: Horovod, logs, the run's records"),
             (up.get("data_loaded_unix"), "set-up: data (load, shard)"),
             (up.get("model_built_unix"), "set-up: model (backbone, the demo's feature standardizer, cache)"),
             (events.get("run_start"), "set-up: optimizer, compile, callbacks"),
             (events.get("epoch_stop"), "training"),
             (events.get("eval_accuracy"), "final evaluation"),
             (end, "rank exit, mpirun, report, provenance")]
    phases, last, pending = {}, start, []
    for t, name in marks:
        pending.append(name)
        if t is not None:
            phases[" + ".join(pending)] = t - last
            last, pending = t, []
    per_epoch = metrics.get("per_epoch") or []
    later = [e["seconds"] for e in per_epoch[1:]]
    first_extra = per_epoch[0]["seconds"] - statistics.median(later) if later else None
    return {"seconds": phases, "beyond_training": (end - start) - phases.get("training", 0.0),
            "first_epoch_extra": first_extra}


def median_phases(runs: list[dict]) -> dict | None:
    """Each phase's median over repeats (phases a run could not split stay merged under their joined name)."""
    runs = [r for r in runs if r]
    if not runs:
        return None
    names = [n for n in runs[0]["seconds"] if all(n in r["seconds"] for r in runs)]
    extra = [r["first_epoch_extra"] for r in runs if r.get("first_epoch_extra") is not None]
    return {"seconds": {n: statistics.median(r["seconds"][n] for r in runs) for n in names},
            "beyond_training": statistics.median(r["beyond_training"] for r in runs),
            "first_epoch_extra": statistics.median(extra) if extra else None}


def time_to_accuracy(per_epoch: list[dict], target: float) -> float | None:
    """Seconds from the start of training (cache build included) to the first epoch at or above target accuracy."""
    for e in per_epoch:
        if e.get("val_accuracy", 0) >= target:
            return e["elapsed_seconds"]
    return None


# Variants without a target of their own (diagnostics: what the launcher's MPI fix and the controller change) run once
# per bench, not every repeat: their effects (0.67 vs 0.95 efficiency) are far above one run's noise, and each run
# costs its start-up again (~20-30 s on these machines).
DIAGNOSTIC = ("2w_mpi_busy_poll", "2w_gloo")


def variants(one: planlib.Plan, two: planlib.Plan, profile: str, overrides: dict, image: str,
             native_only: bool, demo_precision: str = "bf16") -> dict[str, dict]:
    """The training configurations measured side by side (Options fields), each a real launcher run. The fp32 run
    is the bf16 epoch's comparison: where the profile runs fp32 anyway (auto on a CPU without BF16 arithmetic) it
    would be the 1-worker run again, and is left out."""
    w1 = dict(sockets=1, cores_per_socket=one.workers[0].cores, profile=profile)
    w2 = dict(sockets=2, emulate_sockets=two.emulated, profile=profile)
    out = {
        "1w": {**w1, "overrides": overrides},
        "1w_fp32": {**w1, "overrides": {**overrides, "precision": "fp32"}},  # end-to-end bf16 vs fp32 epoch
        "2w": {**w2, "overrides": overrides},
        # the launcher's MPI fix undone: ranks busy-poll again
        "2w_mpi_busy_poll": {**w2, "overrides": overrides, "extra_env": {"OMPI_MCA_mpi_yield_when_idle": "0"}},
        "2w_gloo": {**w2, "overrides": overrides, "controller": "gloo"},
    }
    if demo_precision == "fp32":
        del out["1w_fp32"]
    if not native_only:
        out["2w_container"] = {**w2, "overrides": overrides, "native": False, "image": image}
    return out


def measure_training(variant_opts: dict[str, dict], repeats: int, runs: Path) -> dict[str, dict]:
    """Every variant `repeats` times, interleaved (A B C A B C ...) so slow phases of a shared machine hit all
    variants alike; the figure of a variant is the median of its repeats. DIAGNOSTIC variants run once, in the
    first round."""
    results: dict[str, list] = {name: [] for name in variant_opts}
    for r in range(repeats):
        for name, kw in variant_opts.items():
            if r and name in DIAGNOSTIC:
                continue
            print(f"[bench] training {name} (repeat {r + 1}/{1 if name in DIAGNOSTIC else repeats})", flush=True)
            kw = {"native": True, **kw}
            results[name].append(_train_run(Options(**kw, results_dir=runs, report=False)))
    out = {}
    for name, rs in results.items():
        rates = [x["img_s"] for x in rs if x["img_s"] is not None]
        ok = [x for x in rs if x["img_s"] is not None]
        out[name] = {"img_s": statistics.median(rates) if rates else None, "repeats": [x["img_s"] for x in rs],
                     "overhead_s": statistics.median(x["overhead_s"] for x in ok) if ok else None,
                     "overhead_phases": median_phases([x["overhead_phases"] for x in ok]),
                     "peak_rss_mib": max(x["peak_rss_mib"] or 0 for x in ok) if ok else None,
                     "precision": ok[0]["precision"] if ok else None,
                     "plan": next((x["plan"] for x in rs if x.get("plan")), None),
                     "reason": None if rates else rs[-1].get("reason")}
    return out


# An epoch on the cache costs milliseconds, so the cached run keeps the paper's own 100-epoch bound (the demo's
# lower cap only bounds the image path's runtime); early stopping, with the same patience, ends both.
CACHE_EPOCHS = "100"


def measure_feature_cache(two: planlib.Plan, profile: str, overrides: dict, runs: Path, cache_dir: Path) -> dict:
    """Time-to-accuracy of the paper protocol vs --feature-cache on the 2-worker plan (the quick start's run).
    Target: the protocol's final accuracy minus 0.5 points; the cache is built from nothing (its own empty dir)."""
    common = dict(sockets=2, emulate_sockets=two.emulated, profile=profile, native=True, results_dir=runs, report=False)
    print("[bench] time to accuracy: paper protocol (images every epoch)", flush=True)
    normal = _train_run(Options(**common, overrides=overrides))
    print("[bench] time to accuracy: --feature-cache", flush=True)
    cached = _train_run(Options(**common, overrides={**overrides, "feature_cache": "true",
                                                            "epochs": CACHE_EPOCHS,
                                                            "feature_cache_dir": str(cache_dir)}))
    res = {"normal_run": normal.get("run"), "cache_run": cached.get("run"), "plan": cached.get("plan")}
    if normal["img_s"] is None or cached["img_s"] is None:
        return {**res, "speedup": None, "accuracy_delta": None,
                "reason": normal.get("reason") or cached.get("reason")}
    acc_n, acc_c = normal["final_val_accuracy"], cached["final_val_accuracy"]
    target = acc_n - 0.005
    tta_n, tta_c = time_to_accuracy(normal["per_epoch"], target), time_to_accuracy(cached["per_epoch"], target)
    res.update(target_accuracy=target, normal_final_accuracy=acc_n, cache_final_accuracy=acc_c,
               normal_tta_s=tta_n, cache_tta_s=tta_c, cache_build_s=cached["feature_cache"]["build_seconds"],
               normal_epochs=len(normal["per_epoch"]), cache_epochs=len(cached["per_epoch"]),
               accuracy_delta=acc_c - acc_n)
    if tta_c is None:
        return {**res, "speedup": None, "reason": f"the cache path never reached {target:.4f} (final {acc_c:.4f})"}
    return {**res, "speedup": tta_n / tta_c, "reason": None}


# The paper profile's tensor shapes (224 px, batch 32) for a few steps on synthetic tiles: its memory per rank.
PAPER_SHAPE = {"image_size": "224", "batch_size": "32", "epochs": "1", "steps_per_epoch": "3",
               "synthetic_train": "192", "synthetic_val": "32"}

SIZES = {
    # Training variants: 3 epochs of 960 tiles (the steady state is the median of epochs 2-3; 4 epochs of 1600 made
    # the full bench ~45 min on these 2-core machines, against a 20-min target).
    "full": {"matmul": 2048, "image": 96, "batch": 32, "repeats": 10, "train_repeats": 3, "profile": "demo",
             "train": {"epochs": "3", "patience": "100", "synthetic_train": "960", "synthetic_val": "160"},
             "step": {"image": 224, "batch": 32, "repeats": 3, "pairs": 3},
             # time to accuracy under the paper's own budget: up to 100 epochs, early stopping patience 10
             "tta": {"epochs": "100", "patience": "10"}},
    # --quick: the demo profile on less data (480 training tiles, 3 epochs), one repeat per variant
    "quick": {"matmul": 2048, "image": 96, "batch": 32, "repeats": 5, "train_repeats": 1, "profile": "demo",
              "train": {"epochs": "3", "patience": "100", "synthetic_train": "480", "synthetic_val": "64"},
              "step": {"image": 224, "batch": 32, "repeats": 3, "pairs": 1},
              "tta": {"synthetic_train": "480", "synthetic_val": "160", "epochs": "6", "patience": "3"}},
    # functional tests: every figure is produced, none means anything
    "tiny": {"matmul": 128, "image": 32, "batch": 2, "repeats": 2, "train_repeats": 1, "profile": "smoke",
             "train": {"epochs": "2"}, "tta": {"epochs": "3"},
             "paper_shape": {"image_size": "64", "batch_size": "4", "epochs": "1", "steps_per_epoch": "2"},
             "step": {"image": 32, "batch": 2, "repeats": 2, "pairs": 1}},
}


def run(quick: bool, results_dir: Path, image: str, native_only: bool = False, sizes: str | None = None) -> Path:
    """Measure (every figure's raw inputs), then assemble the figures from them and write bench.json/.md/.png."""
    name = sizes or ("quick" if quick else "full")
    sz = SIZES[name]
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = results_dir / f"bench-{stamp}"
    out.mkdir(parents=True)
    if not native_only:  # before anything runs: a missing or stale image is one line, not a half-written bench
        dockercli.require_image(image, imagelib.checkout_inputs_hash())
    raw = {**measure_all(sz, out, image, native_only), "size": name}
    res = assemble(raw)
    write(out, res)
    print(json.dumps({k: v for k, v in res.items() if not isinstance(v, dict | str) or k.endswith("_reason")},
                     indent=1, default=str))
    return out


def measure_all(sz: dict, out: Path, image: str, native_only: bool) -> dict:
    """Everything the bench runs, as measured (no figure derived here): probes, rebuild, training, memory, cache."""
    topo = topology.live()
    two = planlib.make_plan(topo, 2, emulate="auto")
    one = planlib.make_plan(topo, 1, cores_per_socket=two.workers[0].cores)  # 1 worker on one (emulated) socket
    w, env = one.workers[0], one.env
    size, repeats = sz["image"], sz["repeats"]
    cpu = _cpuinfo()
    raw: dict = {"host": {**topo.summary(), "cpu": cpu["model_name"],
                          "note": "2 emulated sockets of one core each" if two.emulated else "real sockets"},
                 "sizes": sz, "emulated_sockets": two.emulated, "native_only": native_only, "cores": w.cores,
                 "cpu": {k: cpu.get(k) for k in ("flags", "vendor", "family", "mhz", "model_name")}}
    took = raw["bench_seconds"] = {}  # where the bench's own time goes, part by part (the 20-min target)

    def timed(name, f, *args, **kw):
        t0 = time.perf_counter()
        got = f(*args, **kw)
        took[name] = time.perf_counter() - t0
        return got

    print(f"[bench] peak matmul on {w.cores} core(s) (CPUs {topology.cpulist(w.cpus)})", flush=True)
    raw["peaks"] = timed("matmul peaks", lambda: {p: _probe(w, env, "matmul", p, sz["matmul"], 0, repeats)
                                                  for p in ("fp32", "bf16")})
    print("[bench] backbone forward fp32 vs bf16", flush=True)
    raw["backbone"] = timed("backbone forward", lambda: {p: _probe(w, env, "backbone", p, size, sz["batch"], repeats)
                                                         for p in ("fp32", "bf16")})
    raw["step"] = timed("training step profile", measure_step, w, env, sz)
    if not native_only:  # the image is there: a source-only rebuild of it, timed
        from xeontl import image as imagelib

        print("[bench] source-only rebuild of the image", flush=True)
        raw["rebuild"] = timed("source-only rebuild", imagelib.time_source_rebuild)
    runs = out.parent / f"{out.name}-runs"
    runs.mkdir()
    from xeontl.runtime import choose_precision

    demo_precision = choose_precision("auto", cpu)[0]  # what the demo profile's `auto` runs at on this CPU
    raw["training"] = timed("training variants", measure_training, variants(
        one, two, sz["profile"], sz["train"], image, native_only, demo_precision), sz["train_repeats"], runs)
    print("[bench] memory at the paper's shape (224 px, batch 32, a few steps on synthetic tiles)", flush=True)
    raw["memory"] = timed("memory at the paper's shape", _train_run, Options(
        sockets=2, emulate_sockets=two.emulated, profile=sz["profile"], native=True, results_dir=runs, report=False,
        overrides=sz.get("paper_shape", PAPER_SHAPE)))
    raw["feature_cache"] = timed("feature cache time to accuracy", measure_feature_cache, two, sz["profile"],
                                 {k: str(v) for k, v in sz["tta"].items()}, runs, (out / "cache").resolve())
    return raw


def measure_step(w: planlib.Worker, env: dict, sz: dict) -> dict:
    """The paper's training step (224 px, batch 32) at the precision the demo runs use here, by oneDNN primitive,
    and what folding the backbone's batch norms saves: folded and unfolded probes interleaved, medians (one pair of
    runs on Ice Lake gave -7 %, two more +7 % and +10 %: single pairs are not a measurement here)."""
    from xeontl.provenance import cpuinfo
    from xeontl.runtime import choose_precision

    precision = choose_precision("auto", cpuinfo())[0]
    shape = sz.get("step", {"image": 224, "batch": 32, "repeats": 5, "pairs": 3})
    print(f"[bench] the paper's training step ({shape['image']} px, batch {shape['batch']}, {precision}): batch "
          f"norms folded vs separate, {shape['pairs']} interleaved pairs", flush=True)
    runs: dict = {"folded": [], "separate": []}
    for _ in range(shape["pairs"]):
        for name, fold in (("folded", True), ("separate", False)):
            runs[name].append(_probe(w, env, "step", precision, shape["image"], shape["batch"], shape["repeats"],
                                     fold=fold))
    return {"precision": precision, "shape": shape, "runs": runs}


def assemble(raw: dict) -> dict:
    """The figures, from the raw measurements alone (a pure function: the tests feed it a recorded bench.json)."""
    from xeontl import runtime

    sz, peaks, bb, tr = raw["sizes"], raw["peaks"], raw["backbone"], raw["training"]
    size = sz["image"]
    res: dict = {"host": raw["host"], "plans": {}, "sizes": sz, "emulated_sockets": raw["emulated_sockets"]}
    res.update(peak_gflops_fp32=peaks["fp32"]["median"], peak_gflops_bf16=peaks["bf16"]["median"],
               backbone_img_s_fp32=bb["fp32"]["median"], backbone_img_s_bf16=bb["bf16"]["median"])
    for k in ("peak_gflops_fp32", "peak_gflops_bf16", "backbone_img_s_fp32", "backbone_img_s_bf16"):
        src = (peaks if k.startswith("peak") else bb)[k.rsplit("_", 1)[1]]
        if src["median"] is None:
            res[k + "_reason"] = src["reason"]
    res["bf16_speedup"] = _ratio(res["backbone_img_s_bf16"], res["backbone_img_s_fp32"])
    res["bf16_peak_ratio"] = _ratio(res["peak_gflops_bf16"], res["peak_gflops_fp32"])  # the ceiling for bf16 gains
    img_bf16 = res["backbone_img_s_bf16"]
    # The issue's convention (4.1 "GFLOP" at 224 px, which is ResNet50's multiply-add count) and FLOPs counted as
    # the matmul peak counts them (2 per multiply-add, TF's profiler on this very graph): both are reported.
    res["mfu_bf16"] = _ratio(img_bf16 and img_bf16 * RESNET50_GFLOP_224 * (size / 224) ** 2, res["peak_gflops_bf16"])
    # the graph's FLOP count is the same at either precision: taken from whichever probe ran (bf16 may not, see above)
    res["backbone_gflop_per_image_counted"] = bb["fp32"].get("gflop_per_image") or bb["bf16"].get("gflop_per_image")
    res["mfu_bf16_counted_flops"] = _ratio(img_bf16 and res["backbone_gflop_per_image_counted"] and
                                           img_bf16 * res["backbone_gflop_per_image_counted"], res["peak_gflops_bf16"])
    res["plans"]["probes"] = f"{peaks['bf16'].get('command')}; backbone at {size} px, batch {sz['batch']}"
    # Against the hardware's own limit: the vector units' FLOPs per cycle x clock, for one worker's cores.
    cores = raw["cores"]
    limit = theoretical_peak(raw["cpu"])
    res["theoretical_peak"] = {**limit, "cores": cores}
    peak_bf16_hw = limit["bf16_gflops_per_core"] and limit["bf16_gflops_per_core"] * cores
    peak_fp32_hw = limit["fp32_gflops_per_core"] and limit["fp32_gflops_per_core"] * cores
    res["peak_fraction_fp32"] = _ratio(res["peak_gflops_fp32"], peak_fp32_hw)
    res["peak_fraction_bf16"] = _ratio(res["peak_gflops_bf16"], peak_bf16_hw)
    res["mfu_bf16_theoretical"] = _ratio(res["mfu_bf16_counted_flops"] and res["peak_gflops_bf16"]
                                         and res["mfu_bf16_counted_flops"] * res["peak_gflops_bf16"], peak_bf16_hw)
    # fp32 alike: the compute figure a CPU without BF16 kernels has at all
    gflop_fp32 = res["backbone_img_s_fp32"] and res["backbone_gflop_per_image_counted"] and \
        res["backbone_img_s_fp32"] * res["backbone_gflop_per_image_counted"]
    res["mfu_fp32_counted_flops"] = _ratio(gflop_fp32, res["peak_gflops_fp32"])
    res["mfu_fp32_theoretical"] = _ratio(gflop_fp32, peak_fp32_hw)
    res["math_path"] = {p: peaks[p].get("onednn") for p in peaks}

    step = raw.get("step") or {}
    steps = {k: [r["step_s"] for r in v if r.get("median") is not None] for k, v in (step.get("runs") or {}).items()}
    if steps.get("folded") and steps.get("separate"):
        res["step_ms_paper_shape"] = statistics.median(steps["folded"]) * 1000
        res["batch_norm_fold_saving"] = 1 - statistics.median(steps["folded"]) / statistics.median(steps["separate"])
        res["step_profile"] = {k: next(r["profile"] for r in step["runs"][k] if r.get("median") is not None)
                               for k in ("folded", "separate")}
        res["step_basis"] = (f"{step['shape']['image']} px, batch {step['shape']['batch']}, {step['precision']}; "
                             f"medians of {len(steps['folded'])} interleaved runs each")
    if "rebuild" in raw:
        res["source_rebuild_s"] = raw["rebuild"]["seconds"]
        res["source_rebuild_context_bytes"] = raw["rebuild"]["context_bytes"]
    else:
        res["source_rebuild_s"], res["source_rebuild_s_reason"] = None, "skipped (--native-only)"

    rate = {k: v["img_s"] for k, v in tr.items()}
    res.update(train_img_s_1w=rate["1w"], train_img_s_2w=rate["2w"], train_img_s_1w_fp32=rate.get("1w_fp32"),
               train_img_s_2w_mpi_busy_poll=rate["2w_mpi_busy_poll"], train_img_s_2w_gloo=rate["2w_gloo"],
               train_img_s_2w_container=rate.get("2w_container"))
    twice_1w = None if rate["1w"] is None else 2 * rate["1w"]
    res["scaling_efficiency"] = _ratio(rate["2w"], twice_1w)
    res["scaling_efficiency_mpi_busy_poll"] = _ratio(rate["2w_mpi_busy_poll"], twice_1w)
    res["scaling_efficiency_gloo"] = _ratio(rate["2w_gloo"], twice_1w)
    res["bf16_epoch_speedup"] = _ratio(rate["1w"], rate.get("1w_fp32"))  # epoch time fp32 / bf16, same images
    # check-host's model of a training step (a frozen backbone: the forward pass bounds it), tried on the demo: the
    # 1-worker run's measured training rate against the backbone probe's forward rate at the precision it ran
    ran_1w = ((tr["1w"].get("precision") or {}).get("precision")) or "bf16"
    res["predicted_train_img_s_1w"] = bb.get(ran_1w, {}).get("median")
    res["prediction_error_1w"] = _ratio(rate["1w"], res["predicted_train_img_s_1w"]) and \
        _ratio(rate["1w"], res["predicted_train_img_s_1w"]) - 1
    # what the model leaves out, per image: the epoch's time beyond the backbone's forward pass (augmentation and
    # resizing on the rank's own core, the head, Adam, validation; the same in both precisions on Zen 4 and AMX)
    res["beyond_forward_ms_per_image"] = (1000 / rate["1w"] - 1000 / res["predicted_train_img_s_1w"]
                                          if rate["1w"] and res["predicted_train_img_s_1w"] else None)
    ran = tr["1w"].get("precision") or {}
    if ran.get("precision") == "fp32":  # the profile's precision = auto, on a CPU without BF16 kernels
        res["bf16_epoch_speedup"], res["bf16_epoch_speedup_reason"] = None, ran.get("chosen") or "ran fp32"
    res["peak_rss_mib_demo"] = tr["2w"]["peak_rss_mib"]
    res["run_overhead_s"] = tr.get("2w_container", tr["2w"])["overhead_s"]
    res["run_overhead_basis"] = ("container" if "2w_container" in tr else "native") + ", 2 workers: wall - train time"
    res["run_overhead_phases"] = tr.get("2w_container", tr["2w"]).get("overhead_phases")
    mem = raw["memory"]
    res["peak_rss_mib_paper_shape"] = mem.get("peak_rss_mib")
    if mem.get("peak_rss_mib") is None:
        res["peak_rss_mib_paper_shape_reason"] = mem.get("reason")
    res["plans"]["paper_shape_memory"] = mem.get("plan")
    if raw["native_only"]:
        res["container_over_native"], res["container_over_native_reason"] = None, "skipped (--native-only)"
    else:
        res["container_over_native"] = _ratio(rate["2w_container"], rate["2w"])
    for name, v in tr.items():
        res["plans"][f"train_{name}"] = v["plan"]
        if v["img_s"] is None:
            res[f"train_img_s_{name}_reason"] = v["reason"]

    # the bench's own duration: the 20-min target is the full bench's (--quick and the tests' size are smaller)
    took = raw.get("bench_seconds")
    if raw.get("size") == "full" and took:
        res["bench_minutes"] = sum(took.values()) / 60
    else:
        res["bench_minutes"] = None
        res["bench_minutes_reason"] = (f"the target is the full bench's; this was the {raw['size']} one"
                                       if raw.get("size") else "this bench did not record its size")
    fc = dict(raw["feature_cache"])
    res["feature_cache_speedup"], res["feature_cache_accuracy_delta"] = fc["speedup"], fc["accuracy_delta"]
    if fc["speedup"] is None:
        res["feature_cache_speedup_reason"] = fc["reason"]
    if fc["accuracy_delta"] is None:
        res["feature_cache_accuracy_delta_reason"] = fc["reason"]
    res["plans"]["feature_cache"] = fc.pop("plan", None)
    res["raw"] = raw
    no_bf16 = not runtime.bf16_kernels(raw["cpu"]["flags"] or [])
    for f in FIGURES:  # every missing figure says why
        if res.get(f.key) is None and not res.get(f.key + "_reason"):
            res[f.key + "_reason"] = ("this CPU has no oneDNN BF16 kernels (AVX2 only)" if no_bf16 and "bf16" in f.key
                                      else "a figure it is computed from is missing (see raw)")
    return res


def write(out: Path, res: dict) -> None:
    (out / "bench.json").write_text(json.dumps(res, indent=1, default=str))
    (out / "bench.md").write_text(table(res))
    _plot(out, res)


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure of the bench, declared once: bench.json's key, the label and unit bench.md and bench.png show,
    how `assemble` computes it (from the raw measurements), the paper's value, the target as (comparison, value),
    and where bench.png draws it (rates: the images/s panel; ratios: the ratio panel, with the target)."""

    key: str
    label: str
    unit: str
    basis: str
    paper: str = "—"
    target: tuple[str, float] | None = None
    plot: str | None = None  # "rate" | "ratio" | None
    short: str = ""  # bench.png's bar label

    def met(self, value) -> bool | None:
        if self.target is None or value is None:
            return None
        op, bound = self.target
        return value >= bound if op == ">=" else value <= bound


FIGURES = [
    Figure("peak_gflops_fp32", "matmul peak fp32, one worker's cores", "GFLOP/s",
           "median of `xeontl measure matmul`, square fp32, on the worker's cores"),
    Figure("peak_gflops_bf16", "matmul peak bf16", "GFLOP/s", "as fp32, in bf16 (oneDNN's bf16 kernels)"),
    Figure("bf16_peak_ratio", "bf16 / fp32 matmul peak", "x", "the two peaks' ratio: the ceiling of bf16 gains"),
    Figure("backbone_img_s_fp32", "backbone forward fp32", "images/s", "ResNet50 forward, the bench's image size",
           plot="rate", short="backbone\nfp32"),
    Figure("backbone_img_s_bf16", "backbone forward bf16", "images/s", "as fp32, bf16 AMP", plot="rate",
           short="backbone\nbf16"),
    Figure("bf16_speedup", "bf16 speedup, backbone forward", "x", "bf16 / fp32 images/s"),
    Figure("step_ms_paper_shape", "the paper's training step, 224 px batch 32, the demo's precision here", "ms",
           "median over interleaved runs of `xeontl measure step` (frozen backbone forward, head, Adam)"),
    Figure("batch_norm_fold_saving", "time a step saves with the backbone's batch norms folded", "fraction",
           "1 - folded step / step with separate batch norm layers (medians of interleaved runs)"),
    Figure("bf16_epoch_speedup", "bf16 speedup, training epoch end to end (1 worker)", "x",
           "fp32 epoch time / bf16 epoch time, same images (Intel's kit logged 1.49x on one socket)",
           target=(">=", 2.0), plot="ratio",
           short="bf16 epoch\nspeedup"),
    Figure("peak_fraction_fp32", "matmul peak fp32 / the cores' theoretical fp32 limit", "fraction",
           "measured peak / (FLOPs per cycle x clock x cores)"),
    Figure("peak_fraction_bf16", "matmul peak bf16 / the cores' theoretical bf16 limit", "fraction",
           "measured peak / (AMX or AVX512-BF16 FLOPs per cycle x clock x cores)"),
    Figure("mfu_bf16", "MFU bf16 vs measured peak, 4.1 GFLOP/image at 224 px (the issue's convention)", "fraction",
           "images/s x 4.1 GFLOP x (size/224)^2 / measured bf16 peak"),
    Figure("mfu_bf16_counted_flops", "MFU bf16 vs measured peak, FLOPs counted by TF's profiler", "fraction",
           "images/s x the graph's counted FLOPs / measured bf16 peak", target=(">=", 0.7), plot="ratio",
           short="MFU bf16\n(counted)"),
    Figure("mfu_bf16_theoretical", "MFU bf16 vs the theoretical limit (counted FLOPs)", "fraction",
           "images/s x counted FLOPs / theoretical bf16 limit"),
    Figure("mfu_fp32_counted_flops", "MFU fp32 vs measured fp32 peak (counted FLOPs)", "fraction",
           "fp32 images/s x counted FLOPs / measured fp32 peak"),
    Figure("mfu_fp32_theoretical", "MFU fp32 vs the theoretical fp32 limit (counted FLOPs)", "fraction",
           "fp32 images/s x counted FLOPs / theoretical fp32 limit"),
    Figure("train_img_s_1w", "training, 1 worker on one socket", "images/s",
           "median over interleaved repeats of a real launcher run: images / epoch seconds", plot="rate",
           short="train 1w"),
    Figure("train_img_s_1w_fp32", "training, 1 worker, fp32", "images/s", "as above, precision fp32", plot="rate",
           short="train 1w\nfp32"),
    Figure("train_img_s_2w", "training, 2 workers on two sockets, MPI", "images/s",
           "as above, mpirun -np 2 (horovodrun's line) with the launcher's defaults", plot="rate", short="train 2w"),
    Figure("predicted_train_img_s_1w", "training rate check-host predicts, 1 worker (the backbone's forward rate)",
           "images/s", "the backbone probe's images/s at the precision the 1-worker run used"),
    Figure("prediction_error_1w", "check-host's prediction error on the 1-worker demo run", "fraction",
           "measured / predicted training images/s - 1 (what --check-host's predicted times can be off by)"),
    Figure("beyond_forward_ms_per_image", "a training image's time beyond the backbone's forward pass, 1 worker",
           "ms", "1000 / the 1-worker training rate - 1000 / the forward rate it ran at (what the prediction omits)"),
    Figure("scaling_efficiency", "scaling efficiency, 2 workers, MPI (launcher defaults)", "fraction",
           "2-worker images/s / (2 x 1-worker images/s)", paper="0.92 (1.83x)", target=(">=", 0.95), plot="ratio",
           short="scaling\nefficiency"),
    Figure("scaling_efficiency_mpi_busy_poll", "scaling efficiency, MPI busy-polling (fix undone)", "fraction",
           "as above with OMPI_MCA_mpi_yield_when_idle=0"),
    Figure("scaling_efficiency_gloo", "scaling efficiency, Gloo controller", "fraction", "as above, --controller gloo"),
    Figure("container_over_native", "container / native, 2 workers", "x",
           "2-worker images/s in the image / natively", paper="— (bare metal)", target=(">=", 0.99), plot="ratio",
           short="container /\nnative"),
    Figure("run_overhead_s", "run overhead beyond the epochs, 2 workers", "s",
           "the run's wall time - its training time (container when measured)", target=("<=", 10.0)),
    Figure("source_rebuild_s", "image rebuild after a source-only change", "s",
           "`invoke build` after touching one source file", target=("<=", 20.0)),
    Figure("bench_minutes", "this bench's own duration (the full bench)", "min",
           "the sum of its parts' times (bench.json's raw bench_seconds)", target=("<=", 20.0)),
    Figure("peak_rss_mib_demo", "peak RSS per rank, demo", "MiB", "the largest rank's peak RSS in the 2-worker run"),
    Figure("peak_rss_mib_paper_shape", "peak RSS per rank, paper shape 224 px batch 32", "MiB",
           "peak RSS of a short run at the paper's shape", target=("<=", 4096.0)),
    Figure("feature_cache_speedup", "--feature-cache time-to-accuracy speedup", "x",
           "time to the protocol's final accuracy, protocol / feature cache", paper="— (not in the paper)",
           target=(">=", 10.0)),
    Figure("feature_cache_accuracy_delta", "--feature-cache final accuracy − protocol's", "points",
           "final val accuracy, feature cache - protocol", target=(">=", -0.005)),
]
RATES = [f for f in FIGURES if f.plot == "rate"] + [
    Figure("train_img_s_2w_mpi_busy_poll", "", "images/s", "", plot="rate", short="2w MPI\nbusy-poll"),
    Figure("train_img_s_2w_gloo", "", "images/s", "", plot="rate", short="2w Gloo"),
    Figure("train_img_s_2w_container", "", "images/s", "", plot="rate", short="2w\ncontainer")]


def table(res: dict) -> str:
    """bench.md: every figure next to the paper's and the target, with the reason wherever a figure is missing."""
    rows = ["| figure | this machine | paper | target | met |", "|---|---|---|---|---|"]
    for f in FIGURES:
        v = res.get(f.key)
        shown = "n/a: " + str(res.get(f.key + "_reason")) \
            if v is None else (f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}")
        ok = f.met(v)
        met = "" if ok is None else ("yes" if ok else "no")
        unit = f" ({f.unit})" if f.unit in ("GFLOP/s", "images/s", "s", "ms", "MiB") else ""
        target = "" if f.target is None else f"{f.target[0]} {f.target[1]}"
        rows.append(f"| {f.label}{unit} | {shown} | {f.paper} | {target} | {met} |")
    prof = res.get("step_profile") or {}
    if prof:
        groups = list(dict.fromkeys([*prof["folded"]["ms_per_step"], *prof["separate"]["ms_per_step"]]))
        rows += ["", f"Where the paper's training step goes, by oneDNN primitive ({res['step_basis']}; the profile of "
                     f"the first run of each):", "", "| part | ms per step, batch norms folded (training) | "
                     "ms per step, batch norms separate |", "|---|---|---|",
                 *[f"| {g} | {prof['folded']['ms_per_step'].get(g, 0.0):.1f} | "
                   f"{prof['separate']['ms_per_step'].get(g, 0.0):.1f} |" for g in groups],
                 f"| the step | {prof['folded']['step_ms']:.0f} | {prof['separate']['step_ms']:.0f} |"]
    took = (res.get("raw") or {}).get("bench_seconds") or {}
    if took:
        rows += ["", f"This bench took {sum(took.values()) / 60:.1f} min: "
                     + ", ".join(f"{name} {s / 60:.1f}" for name, s in took.items()) + " (min)."]
    phases = res.get("run_overhead_phases") or {}
    if phases.get("seconds"):
        rows += ["", f"Where the run overhead goes ({res.get('run_overhead_basis')}; medians of the repeats; the "
                     f"training phase is the fit itself, not overhead):", "", "| phase | s |", "|---|---|",
                 *[f"| {name} | {s:.1f} |" for name, s in phases["seconds"].items()],
                 f"| (inside training: the first epoch beyond the median epoch, tracing) | "
                 f"{phases['first_epoch_extra'] or 0:.1f} |"]
    how = ["", "How each figure is computed (bench.py's `assemble`, from bench.json's `raw`):", "",
           *(f"- `{f.key}` ({f.unit}): {f.basis}" for f in FIGURES)]
    host = res["host"]
    return (f"xeontl bench on {host.get('cpu')} ({host['usable_cpus']}; {host['note']}); training figures are "
            f"medians of {res['sizes']['train_repeats']} interleaved repeat(s)\n\n" + "\n".join(rows + how) + "\n")


def _ratio(a, b):
    return None if a is None or not b else a / b


def _cpuinfo() -> dict:
    from xeontl.provenance import cpuinfo

    return cpuinfo()


def _plot(out: Path, res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [(f.short, res.get(f.key)) for f in RATES]
    ratios = [(f.short, res.get(f.key), f.target and f.target[1]) for f in FIGURES if f.plot == "ratio"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    a.bar([r[0] for r in rates], [r[1] or 0 for r in rates], color="tab:blue")
    a.set_ylabel("images/s")
    b.bar([r[0] for r in ratios], [r[1] or 0 for r in ratios], color="tab:green")
    b.scatter([r[0] for r in ratios if r[2] is not None], [r[2] for r in ratios if r[2] is not None], marker="_",
              s=900, color="red", label="target")
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.tick_params(labelsize=7)
    note = res["host"]["note"]
    fig.suptitle(f"xeontl bench on {res['host'].get('cpu')} ({res['host']['usable_cpus']}; {note})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=80)
    plt.close(fig)
