"""The paper's recipe, step by step. Runs alone (the 1-socket run) or as one Horovod rank under mpirun (2 sockets).

    1. threads and precision, before TensorFlow builds its thread pools (threads: the plan's, per rank)
    2. Horovod: one worker per socket (only when launched by horovodrun)
    3. data: colorectal_histology 80/20, each worker a disjoint, class-stratified 1/N of the training set (weak scaling)
    4. model: frozen ImageNet ResNet50 v1.5 + GAP + Dense(8) softmax; only the head trains
    5. optimizer: LR 0.01 x workers, gradients averaged every 5 steps
    6. callbacks: Horovod's broadcast, metric averaging and 3-epoch LR warm-up; early stopping on val_loss, patience 10
    7. fit, with the best epoch's weights restored
    8. final evaluation of the whole validation set (each worker its 1/N); rank 0 writes metrics.json and the head

Side paths, each behind one seam: `feature_cache` (not the paper's protocol) swaps step 3's images for stored
backbone features (`inputs_for`); `--resume-from` restores step 5's optimizer and step 6's counters from a
checkpoint (`checkpoint.read/restore`, `ResumableEarlyStopping`); `--fault-after-epoch` (tests) kills a rank.
Step 6's callbacks are callbacks.py's.
Every rank writes its log; rank 0 alone writes results (metrics.json, the MLPerf event log, checkpoints).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import resource
import shutil
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from xeontl import RANDOM_WEIGHTS_NOTICE, SYNTHETIC_NOTICE
from xeontl.common.errors import UserError
from xeontl.experiment import callbacks as callbacks_
from xeontl.experiment import checkpoint, data, dispatch, features, model, runtime
from xeontl.experiment.events import FILE as EVENTS_FILE
from xeontl.experiment.events import EventLog
from xeontl.launch import rundir
from xeontl.placement.topology import cpulist
from xeontl.records import provenance

log = logging.getLogger("xeontl.experiment.train")


class Workers:
    """Who we are: rank/size from Horovod when launched by horovodrun, else a single plain process (the paper's
    1-socket run uses no Horovod at all)."""

    def __init__(self, use_horovod: bool):
        self.hvd = None
        self.rank, self.size, self.local_rank = 0, 1, 0
        if use_horovod:
            import horovod.tensorflow.keras as hvd

            hvd.init()  # Horovod: initialize the workers (MPI or Gloo, as horovodrun chose).
            self.hvd = hvd
            self.rank, self.size, self.local_rank = hvd.rank(), hvd.size(), hvd.local_rank()

    @staticmethod
    def launched_by_horovodrun() -> bool:
        # horovodrun/mpirun set the first two; srun --mpi=pmix sets PMIX_RANK (Slurm runs Horovod only with --mpi)
        return any(k in os.environ for k in ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK", "PMIX_RANK"))

    def controller(self) -> str | None:
        """The controller Horovod really runs on (horovodrun may fall back from MPI to Gloo)."""
        if not self.hvd:
            return None
        return "mpi" if self.hvd.mpi_enabled() else ("gloo" if self.hvd.gloo_enabled() else "unknown")

    def allgather(self, obj):
        if not self.hvd:
            return [obj]
        import horovod.tensorflow as hvd_tf

        return hvd_tf.allgather_object(obj)  # Horovod: every rank's record, for rank 0's report


def scaled_learning_rate(cfg, workers: int) -> tuple[float, str]:
    """The LR this run trains at, and its rule in words, naming the profile's reading of an ambiguous base LR (the
    paper's "printed" 0.001 or "stated" 0.01: configs/paper.toml)."""
    from xeontl.experiment import config

    reading = next((f" (the {cfg['profile']} profile's '{name}' reading)" for name, v in
                    config.readings(cfg["profile"]).get("learning_rate", {}).items() if v == cfg["learning_rate"]), "")
    if cfg["lr_scaling"] == "linear":
        return cfg["learning_rate"] * workers, f"linear: {cfg['learning_rate']} x {workers} workers{reading}"
    return cfg["learning_rate"], f"none: base LR {cfg['learning_rate']} for any number of workers{reading}"


def make_optimizer(cfg, lr: float):
    if cfg["optimizer"] == "adam":
        return tf.keras.optimizers.Adam(learning_rate=lr)
    return tf.keras.optimizers.SGD(learning_rate=lr, momentum=0.9)


def best_val_accuracy(per_epoch: list[dict]) -> dict:
    """The highest validation accuracy of any epoch, and which: the figure Intel's kit reports ("Maximum validation
    accuracy"), beside final_val_accuracy, the bundle's own (the restored best-val_loss weights, evaluated again)."""
    got = [(r["val_accuracy"], r["epoch"]) for r in per_epoch if r.get("val_accuracy") is not None]
    if not got:
        return {"best_val_accuracy": None, "best_val_accuracy_epoch": None}
    acc, epoch = max(got, key=lambda g: (g[0], -g[1]))
    return {"best_val_accuracy": acc, "best_val_accuracy_epoch": epoch}


def confusion(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    k = len(data.CLASS_NAMES)
    return np.bincount(labels * k + predicted, minlength=k * k).reshape(k, k)


def setup_logging(output: Path, rank: int) -> None:
    (output / "logs").mkdir(parents=True, exist_ok=True)
    handler = logging.FileHandler(output / "logs" / f"rank-{rank}.log")
    handler.setFormatter(logging.Formatter(f"%(asctime)s rank{rank} %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)


def memory_nodes() -> str | None:
    """The memory nodes this process may allocate from (Mems_allowed_list: numactl -m, or a cpuset's mems)."""
    try:
        return next(ln.split(":", 1)[1].strip() for ln in Path("/proc/self/status").read_text().splitlines()
                    if ln.startswith("Mems_allowed_list:"))
    except (OSError, StopIteration):
        return None


def process_started_unix() -> float | None:
    """This process's start (its exec chain's: sh, numactl, python keep one PID) in Unix time, from its age: the
    kernel's start time in clock ticks since boot (/proc/self/stat, field 22) against the boot-time clock now."""
    try:
        ticks = int(Path("/proc/self/stat").read_text().rsplit(")", 1)[1].split()[19])
        return time.time() - (time.clock_gettime(time.CLOCK_BOOTTIME) - ticks / os.sysconf("SC_CLK_TCK"))
    except (OSError, ValueError, IndexError):
        return None


def check_inputs(cfg: dict, output: Path) -> dict:
    """User mistakes found before anything is written: a finished run as --output, an unwritable one, missing or
    corrupt weights, a missing dataset path. Returns the weights' description."""
    if (output / "metrics.json").exists() and rundir.read_metrics(output) != rundir.PLACEHOLDER:
        raise UserError(f"{output} already holds a finished run (metrics.json): choose a new --output, nothing was "
                        f"overwritten")
    if output.exists() and not os.access(output, os.W_OK):
        raise UserError(f"{output} is not writable: choose another --output")
    # the files this rank writes: one that is there already is somebody's, and would be appended to
    rank = int(next((os.environ[k] for k in ("OMPI_COMM_WORLD_RANK", "PMIX_RANK", "PMI_RANK", "HOROVOD_RANK")
                     if os.environ.get(k, "").isdigit()), 0))
    for mine in [output / "logs" / f"rank-{rank}.log", *([output / EVENTS_FILE] if rank == 0 else [])]:
        if mine.exists():
            raise UserError(f"{output} already holds {mine.relative_to(output)}, which this run would write: choose a "
                            f"new --output, nothing was overwritten")
    data.check_source(cfg)
    return model.describe_weights(cfg)  # a missing/corrupt weight file fails here, before TF starts


class Results:
    """What a run leaves: every rank's log; on rank 0 the MLPerf event log, metrics.json (written on failure too) and
    probe.json (its environment and the math path oneDNN dispatched, for provenance). A user mistake found before
    training leaves nothing behind: what this run created is removed."""

    def __init__(self, output: Path, rank: int, size: int, capture: dispatch.Capture):
        self.output, self.rank0, self.created = output, rank == 0, not output.exists()
        # what this run adds to a dir that existed (the launcher's staging dir, or a user's --output): only these are
        # taken back when it stops on a user mistake, never a file or dir that was there before
        self.added = [p for p in (output / "logs", output / "logs" / f"rank-{rank}.log",
                                  *([output / EVENTS_FILE] if rank == 0 else [])) if not p.exists()]
        output.mkdir(parents=True, exist_ok=True)
        setup_logging(output, rank)
        # Horovod: rank 0 alone writes the run's results; the other ranks only their own log.
        self.events = EventLog(output / EVENTS_FILE if self.rank0 else None)
        self.metrics: dict = {"status": "failed", "workers": size, "notices": []}
        self.training_started = False
        # Horovod: rank 0's probe.json says where it ran and what oneDNN dispatched for its own math (the capture's
        # tally, dispatch.py): written at the first epoch's end (a run killed later still has it) and again at the end.
        self.capture, self.probed = capture, False

    def write_probe(self, final: bool = True) -> None:
        """probe.json with the math path so far; final=False: only if none was written yet."""
        if self.rank0 and (final or not self.probed):
            doc = provenance.probe(math_path=self.capture.result(), env=self.capture.environ())
            (self.output / "probe.json").write_text(json.dumps(doc, default=str))
            self.probed = True

    def __enter__(self):
        return self

    def __exit__(self, kind, error, tb):
        if not (isinstance(error, UserError) and not self.training_started):  # else the run dir is taken back
            self.write_probe()  # a run that failed before its first epoch still says where it ran
        if error is not None:
            self.metrics["status"] = "aborted" if isinstance(error, KeyboardInterrupt) else "failed"
            self.metrics["error"] = f"{kind.__name__}: {error}"
            log.exception("training %s", self.metrics["status"], exc_info=(kind, error, tb))
            if isinstance(error, UserError) and not self.training_started:
                self._remove()
                return False
        self.events.end(self.metrics["status"])
        if self.rank0:
            rundir.write_metrics(self.output, self.metrics)
        return False

    def _remove(self) -> None:
        root = logging.getLogger()
        root.handlers = [h for h in root.handlers if not isinstance(h, logging.FileHandler)]
        if self.created:
            shutil.rmtree(self.output, ignore_errors=True)
            return
        for path in reversed(self.added):  # files before the dir that held them; a dir only if it is now empty
            with contextlib.suppress(OSError):
                path.rmdir() if path.is_dir() else path.unlink()


def threads_affinity() -> list[int]:
    """The CPUs this process's threads may run on, all of them (the union of each one's mask): what its cpuset and
    numactl allow now. Not the calling thread's alone: an OpenMP region run by it under the paper's KMP_AFFINITY
    binds it to one CPU of the set (the adversary's fifteenth round: an eager op left [0] of [0, 1]), while a cpuset
    narrowed during the run narrows every thread's."""
    cpus: set[int] = set()
    with contextlib.suppress(OSError):
        for task in os.listdir("/proc/self/task"):
            with contextlib.suppress(OSError, ValueError):  # a thread that ended meanwhile
                cpus |= os.sched_getaffinity(int(task))  # the kernel's mask of it, offline CPUs out
    return sorted(cpus) or sorted(os.sched_getaffinity(0))


def train(cfg: dict, output: Path, use_horovod: bool | None = None, resume_from: Path | None = None,
          threads: tuple[int, int] = (0, 0), fault_after_epoch: int = 0) -> dict:
    """The paper's recipe on this worker; rank 0 writes metrics.json (also on failure) and returns the metrics."""
    # when this process started and when its imports (TensorFlow's) were done: the run's start-up, phase by phase
    startup = {"process_started_unix": process_started_unix(), "imports_done_unix": time.time()}
    capture = dispatch.Capture().start()  # before this process runs any op: every oneDNN primitive is counted
    try:
        return _train(cfg, Path(output), use_horovod, resume_from, threads, fault_after_epoch, startup, capture)
    finally:
        capture.stop()


def _train(cfg: dict, output: Path, use_horovod: bool | None, resume_from: Path | None, threads: tuple[int, int],
           fault_after_epoch: int, startup: dict, capture: dispatch.Capture) -> dict:
    weights_info = check_inputs(cfg, output)

    # 1. BF16 (refused first, on a CPU without BF16 kernels) and threads (the plan's, for this rank's socket), before
    #    TensorFlow creates its thread pools.
    precision = runtime.configure_precision(cfg["precision"], cfg["amp"])
    setup = {"threads": {**runtime.configure_threads(*threads), "omp_num_threads": os.environ.get("OMP_NUM_THREADS")},
             "precision": precision, "weights": weights_info, "startup": startup}

    # 2. One worker per socket under horovodrun; a plain process otherwise (the paper's 1-socket run).
    workers = Workers(Workers.launched_by_horovodrun() if use_horovod is None else use_horovod)
    with Results(output, workers.rank, workers.size, capture) as results:
        results.metrics.update(setup)
        results.events.write("init_start")
        log.info("setup %s, workers %d, affinity %s", setup, workers.size, sorted(os.sched_getaffinity(0)))
        # where this rank runs, as its kernel says: the CPUs and memory nodes it may use (a kubelet's cpuset, numactl)
        log.info("rank %d: CPUs %s, memory nodes %s", workers.rank, cpulist(os.sched_getaffinity(0)),
                 memory_nodes() or "unknown")
        results.metrics.update(recipe(cfg, results, workers, weights_info, resume_from, fault_after_epoch))
        results.metrics["status"] = "success"
    return results.metrics


def recipe(cfg, results: Results, workers: Workers, weights_info: dict, resume_from: Path | None,
           fault_after_epoch: int) -> dict:
    """Steps 3 to 8 on this worker."""
    hvd, rank0, events, notices = workers.hvd, workers.rank == 0, results.events, results.metrics["notices"]
    tf.keras.utils.set_random_seed(cfg["seed"])
    resumed = checkpoint.read(resume_from, cfg, workers.size) if resume_from else None

    # 3. Data: every worker reads the same dataset, then keeps its own disjoint share.
    ds = data.load(cfg)
    notices += [SYNTHETIC_NOTICE] * (cfg["dataset"] == "synthetic")
    # Horovod: weak scaling, the paper's halves: a disjoint, class-stratified 1/N of the training set per worker.
    train_shard = ds.train.shard(workers.size, workers.rank)
    # Horovod: validation is sharded when it splits evenly (equal shards make the averaged metric exactly the
    # global one), else every worker evaluates all of it; either way every worker sees the same number.
    val_sharded = len(ds.val) % workers.size == 0
    val_shard = ds.val.shard(workers.size, workers.rank) if val_sharded else ds.val
    steps = steps_per_epoch(cfg, len(train_shard))
    startup = results.metrics["startup"]
    startup["data_loaded_unix"] = time.time()  # set-up split into data, model, compile (the run overhead's phases)

    # 4. Model: the frozen backbone and the trainable head, and what it trains on (images, or cached features).
    # Horovod: each worker runs the backbone on its 1/N of the standardizer's sample; all of it is gathered
    net, backbone, head = model.build(cfg, weights_info, feature_sample(cfg, ds, notices, workers),
                                      gather=workers.allgather if workers.hvd else None)
    notices += [RANDOM_WEIGHTS_NOTICE] * (weights_info["kind"] == "random")
    initial_epoch = resumed["epoch"] if resumed else 0
    fitted, train_ds, val_ds, cache = inputs_for(cfg, net, backbone, head, weights_info, train_shard, val_shard,
                                                 initial_epoch, rank0, notices)
    startup["model_built_unix"] = time.time()

    # 5. Optimizer.
    # Horovod: the paper's LR rule, 0.01 x workers (the global batch grows with the workers).
    lr, lr_rule = scaled_learning_rate(cfg, workers.size)
    opt = make_optimizer(cfg, lr)
    if hvd:
        # Horovod: average gradients across workers, aggregated locally over 5 steps before each allreduce.
        opt = hvd.DistributedOptimizer(opt, backward_passes_per_step=cfg["backward_passes_per_step"],
                                       average_aggregated_gradients=True)
    fitted.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if resumed:
        checkpoint.restore(resumed, head, opt, head.trainable_variables)
    log_hyperparameters(events, cfg, workers.size, lr, steps, len(train_shard), len(val_shard))
    # This machine's own prediction of the training time, measured before it (records/reference.py judges time as
    # measured / predicted): the model's step on a fixed batch, weights untouched.
    calibrated = calibration(fitted, cfg, steps)

    # 6. Callbacks: Horovod's broadcast, metric averaging and LR warm-up, then early stopping on val_loss.
    early, recorder, callbacks = callbacks_.make_callbacks(cfg, workers, results, lr, steps, head, opt, resumed, cache,
                                                fault_after_epoch)

    # 7. Fit; the best epoch's weights are what the run reports.
    events.write("init_stop")
    events.write("run_start")
    results.training_started = True
    t0 = time.perf_counter()
    fitted.fit(train_ds, validation_data=val_ds, epochs=cfg["epochs"], initial_epoch=initial_epoch,
               steps_per_epoch=steps, callbacks=callbacks, verbose=cfg["verbose"] if rank0 else 0)
    train_seconds = time.perf_counter() - t0
    stopped_early = early.stopped_epoch > 0
    if not stopped_early and early.best_weights is not None:
        fitted.set_weights(early.best_weights)  # Keras restores only on an early stop; the paper wants the best epoch
    if stopped_early:
        events.write("early_stop", early.stopped_epoch + 1, best_epoch=early.best_epoch + 1)

    # Horovod: every rank's throughput and placement, gathered so rank 0 can report both sockets.
    ranks = workers.allgather({**rank_record(workers, len(train_shard), recorder.per_epoch),  # each rank's own,
                               "threads": results.metrics.get("threads"),  # for its health
                               "math_path": results.capture.summary()})
    result = {"train_seconds": train_seconds, "epochs_run": len(recorder.per_epoch), "stopped_early": stopped_early,
              "best_epoch": early.best_epoch + 1, "per_epoch": recorder.per_epoch, "ranks": ranks,
              **best_val_accuracy(recorder.per_epoch),
              "images_per_second": sum(r["images_per_second"] for r in ranks), "learning_rate": lr, "lr_rule": lr_rule,
              "peak_rss_mib_per_rank": max(r["peak_rss_mib"] for r in ranks),
              "validation": "sharded" if val_sharded else "full on every rank", "dataset": ds.info,
              "feature_cache": cache.info if cache else None, "resumed_from": checkpoint.summary(resumed),
              "calibration": calibrated}
    # 8. The restored best weights on the whole validation set, always through the full model on images (the feature
    #    cache's own val accuracy is not what we report); Horovod: rank 0 alone writes the result and the weights.
    final = final_evaluation(net, ds.val, cfg, workers)
    if rank0:
        result.update(final)
        # What the verdict reads of the data, from the data itself, after training (out of every rank's set-up): its
        # identity. (A SavedModel's architecture was read by every rank when it loaded it: model.backbone.)
        result["dataset"] = {**ds.info, "identity": data.identity(ds)}
        events.write("eval_accuracy", result["final_val_accuracy"], epoch_num=result["best_epoch"], final=True)
        head.save_weights(str(results.output / "head.weights.h5"))
        log.info("final val accuracy %.4f after %d epochs (best %d)", result["final_val_accuracy"],
                 result["epochs_run"], result["best_epoch"])
    return result


# ------------------------------------------------------------------------------------------------ the steps' parts
def steps_per_epoch(cfg, shard_size: int) -> int:
    steps = shard_size // cfg["batch_size"]
    if cfg["steps_per_epoch"]:
        steps = min(steps, cfg["steps_per_epoch"])
    if steps == 0:
        raise UserError(f"batch_size {cfg['batch_size']} is larger than this worker's shard ({shard_size} "
                        f"images): lower --batch-size or use more data")
    return steps


def feature_sample(cfg, ds, notices: list, workers: Workers):
    """Feature standardization (random-backbone demo only): one fixed sample for every worker (the first 256
    un-augmented training tiles), this worker's 1/N share of it (every Nth tile); the features are gathered, so every
    worker fits identical statistics (the whole sample on each rank's one core took 3.4 s of a Zen 4's set-up)."""
    if not model.use_feature_norm(cfg):
        return None
    notices.append("feature standardization before the head (random backbone demo only)")
    first = ds.train.images[:256][workers.rank::workers.size].astype("float32") / 255.0
    return tf.image.resize(first, (cfg["image_size"],) * 2) if cfg["image_size"] != data.TILE else first


def inputs_for(cfg, net, backbone, head, weights_info, train_shard, val_shard, initial_epoch: int, rank0: bool,
               notices: list):
    """(the model fit() trains, train data, val data, feature cache or None). The paper: the whole model on
    augmented images every epoch. `feature_cache`: the backbone runs once per image and view, the head alone trains."""
    if not cfg["feature_cache"]:
        return (net, data.pipeline(train_shard, cfg, training=True), data.pipeline(val_shard, cfg, training=False),
                None)
    cache = features.load_or_build(cfg, backbone, weights_info, train_shard, val_shard, show_progress=rank0)
    notices.append(f"feature cache: head trained on stored backbone features ({cfg['feature_cache_views']} "
                   f"augmented views), not the paper's per-epoch pipeline")
    return head, features.train_dataset(cache, cfg, initial_epoch), features.val_dataset(cache, cfg), cache


def log_hyperparameters(events: EventLog, cfg, workers: int, lr: float, steps: int, train_n: int, val_n: int) -> None:
    """MLPerf's standard hyper-parameter keys, once, before training."""
    for key, value in (("submission_benchmark", "xeontl-resnet50-transfer"), ("global_batch_size",
                       cfg["batch_size"] * workers), ("opt_name", cfg["optimizer"]), ("opt_base_learning_rate", lr),
                       ("opt_learning_rate_warmup_epochs", cfg["warmup_epochs"] if workers > 1 else 0),
                       ("gradient_accumulation_steps", cfg["backward_passes_per_step"] if workers > 1 else 1),
                       ("train_samples", train_n * workers), ("eval_samples", val_n), ("seed", cfg["seed"]),
                       ("epoch_count", cfg["epochs"]), ("steps_per_epoch", steps), ("precision", cfg["precision"])):
        events.write(key, value)


def calibration(fitted, cfg, steps: int, repeats: int = 3, blocks: int = 3) -> dict:
    """The seconds of one step of FITTED on a fixed batch (constant images, label 0; the forward pass in inference,
    so no random layer draws, and the gradients of the trainable weights, never applied), after one untimed step that
    traces it: this machine's own prediction of a training step, as metrics.json `calibration`. Its weights, its
    optimizer and every random generator are as they were. The median of BLOCKS timed blocks of REPEATS steps each:
    one block once took 0.139 s a step on a healthy run of a kind whose committed runs took 0.093-0.101 (its training
    time was theirs), and the verdict then said "a busy neighbour?"; a neighbour that stays is in every block."""
    shape = (cfg["batch_size"], *fitted.input_shape[1:])
    x = tf.constant(np.full(shape, 0.5, np.float32))
    y = tf.zeros([shape[0]], tf.int64)
    loss = tf.keras.losses.SparseCategoricalCrossentropy()

    @tf.function
    def step():
        with tf.GradientTape() as tape:
            value = loss(y, fitted(x, training=False))
        return tape.gradient(value, fitted.trainable_variables)

    step()
    timed = []
    for _ in range(blocks):
        t0 = time.perf_counter()
        for _ in range(repeats):
            step()
        timed.append((time.perf_counter() - t0) / repeats)
    return {"seconds_per_step": float(np.median(timed)), "steps_per_epoch": steps, "batch": shape[0],
            "steps": repeats, "blocks": blocks, "block_seconds_per_step": [round(t, 6) for t in timed],
            "what": "the model's forward (inference) and its trainable weights' gradients on a fixed batch, before "
                    "training: the median of its blocks"}


def rank_record(workers: Workers, train_images: int, per_epoch: list) -> dict:
    return {"rank": workers.rank, "host": platform.node(), "controller": workers.controller(),
            "node": os.environ.get("SLURMD_NODENAME"),  # Slurm's name for the node (several may share a hostname)
            "affinity": threads_affinity(), "memory_nodes": memory_nodes(),
            "cpu": provenance.rank_cpu(),  # its own node's CPU: its math is judged by that CPU's units
            # where a scheduler placed it: what its shell was allowed before numactl (plan.rank_wrapper; null
            # without), its own machine's NUMA nodes, so its CPUs are judged through its own node's lists, and its
            # memory policy (what numactl -m set)
            **provenance.rank_place(),
            "train_images": train_images,
            "images_per_second": float(np.median([e["images_per_second"] for e in per_epoch])),
            # the rank's own peak resident memory so far (Linux: ru_maxrss in KiB), for the memory target and a
            # Kubernetes pod's request
            "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}


def final_evaluation(net, val, cfg, workers: Workers) -> dict:
    # Horovod: every rank predicts its own 1/N of the validation set with the same restored weights, and every rank
    # gets all predictions: the whole set is evaluated once, N times faster than rank 0 alone (400 demo tiles on one
    # core took ~8 s after the last epoch).
    part = val.shard(workers.size, workers.rank) if workers.size > 1 else val
    predicted = net.predict(data.pipeline(part, cfg, training=False), verbose=0).argmax(1)
    pairs = workers.allgather((part.labels.tolist(), predicted.tolist()))
    labels = np.concatenate([np.asarray(lab, np.int64) for lab, _ in pairs])
    predicted = np.concatenate([np.asarray(pred, np.int64) for _, pred in pairs])
    cm = confusion(labels, predicted)
    return {"final_val_accuracy": float((predicted == labels).mean()), "confusion_matrix": cm.tolist(),
            "per_class_accuracy": {n: float(cm[i, i] / max(cm[i].sum(), 1)) for i, n in enumerate(data.CLASS_NAMES)}}
