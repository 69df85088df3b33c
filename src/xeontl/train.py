"""The paper's recipe, step by step. Runs alone (the 1-socket run) or as one rank under horovodrun (the 2-socket run).

    1. threads and precision, before TensorFlow builds its thread pools
    2. Horovod: one worker per socket (only when launched by horovodrun)
    3. data: colorectal_histology 80/20, each worker a disjoint 1/N of the training set (weak scaling)
    4. model: frozen ImageNet ResNet50 v1.5 + GAP + Dense(8) softmax; only the head trains
    5. optimizer: LR 0.01 x workers, gradients averaged every 5 steps, warm-up over 3 epochs
    6. early stopping on validation loss, patience 10, best weights restored
    7. results: metrics.json, the head's weights, per-rank logs, a checkpoint after every epoch (for --resume)

`feature_cache` (opt-in, not the paper's protocol) swaps step 3's image pipeline for stored backbone features;
everything else, Horovod included, is the same recipe.
"""

from __future__ import annotations

import json
import logging
import os
import platform
import signal
import time
from pathlib import Path

import numpy as np
import tensorflow as tf

from xeontl import RANDOM_WEIGHTS_NOTICE, SYNTHETIC_NOTICE, checkpoint, data, features, model
from xeontl.errors import UserError
from xeontl.events import EventLog

log = logging.getLogger("xeontl.train")


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
        return any(k in os.environ for k in ("HOROVOD_RANK", "OMPI_COMM_WORLD_RANK", "PMI_RANK"))

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


def configure_threads(cfg) -> dict:
    """inter/intra-op threads from the config, else from the launcher's env; must run before any TF op."""
    inter = cfg["inter_threads"] or int(os.environ.get("XEONTL_INTER_THREADS", 0))
    intra = cfg["intra_threads"] or int(os.environ.get("XEONTL_INTRA_THREADS", 0))
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    tf.config.threading.set_intra_op_parallelism_threads(intra)
    return {"inter_op": inter or "tf-default", "intra_op": intra or "tf-default",
            "omp_num_threads": os.environ.get("OMP_NUM_THREADS")}


def configure_precision(cfg) -> dict:
    """BF16: TF's oneDNN auto mixed precision (a graph rewrite, the paper's AMP) or the Keras mixed_bfloat16 policy."""
    if cfg["precision"] == "fp32":
        return {"precision": "fp32", "mechanism": None}
    if cfg["amp"] == "onednn":
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
        return {"precision": "bf16", "mechanism": "grappler auto_mixed_precision_onednn_bfloat16"}
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    return {"precision": "bf16", "mechanism": "keras mixed_bfloat16 policy"}


def scaled_learning_rate(cfg, workers: int) -> tuple[float, str]:
    if cfg["lr_scaling"] == "linear":
        return cfg["learning_rate"] * workers, f"linear: {cfg['learning_rate']} x {workers} workers"
    return cfg["learning_rate"], "none: base LR for any number of workers"


def make_optimizer(cfg, lr: float):
    if cfg["optimizer"] == "adam":
        return tf.keras.optimizers.Adam(learning_rate=lr)
    return tf.keras.optimizers.SGD(learning_rate=lr, momentum=0.9)


class EpochRecorder(tf.keras.callbacks.Callback):
    """Per-epoch wall time, training-phase time (validation excluded) and the events log."""

    def __init__(self, images_per_epoch: int, events: EventLog, history: list | None = None,
                 seconds_before: float = 0.0):
        super().__init__()
        self.images_per_epoch, self.events = images_per_epoch, events
        self.per_epoch = list(history or [])  # a resumed run continues the interrupted run's history
        self.seconds_before = seconds_before  # time-to-accuracy clock: cache build (+ the interrupted run's time)

    def on_train_begin(self, logs=None):
        self._fit_t0 = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self._t0, self._train_end = time.perf_counter(), None
        self.events.write("epoch_start", epoch_num=epoch + 1)

    def on_test_begin(self, logs=None):
        if self._train_end is None:  # fit's validation pass: the training phase has just ended
            self._train_end = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        end = time.perf_counter()
        train_s = (self._train_end or end) - self._t0
        # wall time since fit began, so whatever happens between epochs (callbacks, iterators) is counted too
        elapsed = self.seconds_before + end - self._fit_t0
        row = {"epoch": epoch + 1, "seconds": end - self._t0, "train_seconds": train_s, "elapsed_seconds": elapsed,
               "images_per_second": self.images_per_epoch / train_s, **{k: float(v) for k, v in (logs or {}).items()}}
        self.per_epoch.append(row)
        log.info("epoch %d: %s", epoch + 1, json.dumps({k: round(v, 4) for k, v in row.items()}))
        self.events.write("epoch_stop", epoch_num=epoch + 1, eval_accuracy=row.get("val_accuracy"),
                          eval_loss=row.get("val_loss"), seconds=row["seconds"])


class ResumableEarlyStopping(tf.keras.callbacks.EarlyStopping):
    """Keras' EarlyStopping, starting from a checkpoint's counters instead of from scratch when resumed."""

    def __init__(self, head, restored: dict | None = None, **kw):
        super().__init__(**kw)
        self.head, self.restored = head, restored

    def on_train_begin(self, logs=None):
        super().on_train_begin(logs)
        if not self.restored:
            return
        r = self.restored
        self.wait, self.best, self.best_epoch = r["wait"], r["best"], r["best_epoch"]
        # best_weights holds the fitted model's whole weight list: current backbone + the best head.
        current = self.head.get_weights()
        self.head.set_weights(r["best_head"])
        self.best_weights = self.model.get_weights()
        self.head.set_weights(current)


class EpochCheckpoint(tf.keras.callbacks.Callback):
    """Rank 0, after each epoch (after early stopping and the recorder have updated): checkpoints/epoch-NNNN/."""

    def __init__(self, run_dir: Path, head, optimizer, early: ResumableEarlyStopping, recorder, cfg: dict,
                 workers: int):
        super().__init__()
        self.dir = Path(run_dir) / checkpoint.DIR
        self.head, self.optimizer, self.early, self.recorder = head, optimizer, early, recorder
        self.cfg, self.workers = cfg, workers

    def on_epoch_end(self, epoch, logs=None):
        best = self.early.best_weights
        best_head = checkpoint.head_part(best, self.head) if best is not None else self.head.get_weights()
        checkpoint.write(self.dir, epoch + 1, self.head, self.optimizer, best_head, {
            "workers": self.workers, "config": self.cfg, "optimizer_iterations": int(self.optimizer.iterations.numpy()),
            "early_stopping": {"wait": self.early.wait, "best": float(self.early.best),
                               "best_epoch": self.early.best_epoch},
            "per_epoch": self.recorder.per_epoch})


class FaultInjection(tf.keras.callbacks.Callback):
    """Tests only ($XEONTL_FAULT_AFTER_EPOCH=N): rank 1 (or the only rank) SIGKILLs itself after epoch N's checkpoint,
    a reproducible stand-in for a crashed or OOM-killed worker."""

    def __init__(self, after_epoch: int, rank: int, size: int):
        super().__init__()
        self.after_epoch, self.victim = after_epoch, rank == min(1, size - 1)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.after_epoch and self.victim:
            log.warning("fault injection: SIGKILL after epoch %d", epoch + 1)
            os.kill(os.getpid(), signal.SIGKILL)


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


def check_output(output: Path) -> None:
    if (output / "metrics.json").exists():
        raise UserError(f"{output} already holds a finished run (metrics.json): choose a new --output, nothing was overwritten")
    if output.exists() and not os.access(output, os.W_OK):
        raise UserError(f"{output} is not writable: choose another --output")


def train(cfg: dict, output: Path, use_horovod: bool | None = None, resume_from: Path | None = None) -> dict:
    """Run the recipe; rank 0 writes metrics.json (also on failure) and returns the metrics."""
    output = Path(output)
    check_output(output)
    weights_info = model.describe_weights(cfg)  # a missing/corrupt weight file fails here, before TF starts

    # 1. Threads and precision before TensorFlow creates its thread pools.
    threads = configure_threads(cfg)
    precision = configure_precision(cfg)

    # 2. One worker per socket under horovodrun; a plain process otherwise.
    workers = Workers(Workers.launched_by_horovodrun() if use_horovod is None else use_horovod)
    rank0 = workers.rank == 0
    output.mkdir(parents=True, exist_ok=True)
    setup_logging(output, workers.rank)
    events = EventLog(output / "events.jsonl" if rank0 else None)
    events.write("run_start", workers=workers.size, profile=cfg["profile"])
    log.info("threads %s, precision %s, workers %d, affinity %s", threads, precision, workers.size,
             sorted(os.sched_getaffinity(0)))
    metrics = {"status": "failed", "workers": workers.size, "threads": threads, "precision": precision,
               "weights": weights_info, "notices": []}
    try:
        metrics.update(_train(cfg, output, workers, weights_info, events, resume_from))
        metrics["status"] = "success"
        return metrics
    except BaseException as e:
        metrics["status"] = "aborted" if isinstance(e, KeyboardInterrupt) else "failed"
        metrics["error"] = f"{type(e).__name__}: {e}"
        log.exception("training %s", metrics["status"])
        raise
    finally:
        events.write("run_stop", status=metrics["status"])
        if rank0:
            (output / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))


def _train(cfg, output: Path, workers: Workers, weights_info: dict, events: EventLog,
           resume_from: Path | None = None) -> dict:
    hvd, rank0 = workers.hvd, workers.rank == 0
    tf.keras.utils.set_random_seed(cfg["seed"])
    notices = []
    resumed = checkpoint.read(resume_from, cfg, workers.size) if resume_from else None

    # 3. Data: the whole dataset is read identically on every worker, then each takes its disjoint shard.
    ds = data.load(cfg)
    if cfg["dataset"] == "synthetic":
        notices.append(SYNTHETIC_NOTICE)
    train_shard = ds.train.shard(workers.size, workers.rank)  # weak scaling: the paper's halves
    # Validation is sharded when it splits evenly (equal shards make the averaged metric exactly the global one),
    # else every worker evaluates all of it; both give every worker the same number, so all stop together.
    val_sharded = len(ds.val) % workers.size == 0
    val_shard = ds.val.shard(workers.size, workers.rank) if val_sharded else ds.val
    steps = len(train_shard) // cfg["batch_size"]
    if cfg["steps_per_epoch"]:
        steps = min(steps, cfg["steps_per_epoch"])
    if steps == 0:
        raise UserError(f"batch_size {cfg['batch_size']} is larger than this worker's shard ({len(train_shard)} "
                        f"images): lower --batch-size or use more data")

    # 4. Model: frozen backbone, trainable head.
    sample = None
    if model.use_feature_norm(cfg):
        # Same fixed sample on every worker (the first 256 un-augmented training tiles) -> identical statistics.
        first = ds.train.images[:256].astype("float32") / 255.0
        sample = tf.image.resize(first, (cfg["image_size"],) * 2) if cfg["image_size"] != data.TILE else first
        notices.append("feature standardization before the head (random backbone demo only)")
    if weights_info["kind"] == "random":
        notices.append(RANDOM_WEIGHTS_NOTICE)
    net, backbone, head = model.build(cfg, weights_info, sample)

    initial_epoch = resumed["epoch"] if resumed else 0
    cache, cache_seconds = None, 0.0
    if cfg["feature_cache"]:
        # Speed path: the frozen backbone runs once per image and view, then only the head trains.
        cache = features.load_or_build(cfg, backbone, weights_info, train_shard, val_shard, show_progress=rank0)
        cache_seconds = cache.info["build_seconds"]
        notices.append(f"feature cache: head trained on stored backbone features ({cfg['feature_cache_views']} "
                       f"augmented views), not the paper's per-epoch pipeline")
        fitted = head  # the head alone trains on features; `net` shares its layers for the final evaluation
        train_ds, val_ds = features.train_dataset(cache, cfg, initial_epoch), features.val_dataset(cache, cfg)
    else:
        fitted = net
        train_ds = data.pipeline(train_shard, cfg, training=True)
        val_ds = data.pipeline(val_shard, cfg, training=False)

    # 5. Optimizer.
    lr, lr_rule = scaled_learning_rate(cfg, workers.size)
    opt = make_optimizer(cfg, lr)
    if hvd:
        # Horovod: average gradients across workers, aggregated locally over 5 steps before each allreduce.
        opt = hvd.DistributedOptimizer(opt, backward_passes_per_step=cfg["backward_passes_per_step"],
                                       average_aggregated_gradients=True)
    fitted.compile(optimizer=opt, loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    if resumed:
        checkpoint.restore(resumed, head, opt, head.trainable_variables)
        log.info("resumed from %s: epoch %d done, optimizer iteration %d", resumed["path"], resumed["epoch"],
                 resumed["optimizer_iterations"])

    # 6. Callbacks: Horovod's first (their order matters), then early stopping on the averaged metric.
    history = resumed["per_epoch"] if resumed else []
    recorder = EpochRecorder(steps * cfg["batch_size"], events, history,
                             seconds_before=(history[-1]["elapsed_seconds"] if history else 0.0) + cache_seconds)
    early = ResumableEarlyStopping(head, resumed["early_stopping"] if resumed else None, monitor="val_loss",
                                              patience=cfg["patience"], min_delta=cfg["min_delta"],
                                              restore_best_weights=True, verbose=1 if rank0 else 0)
    callbacks = []
    if hvd:
        callbacks += [
            # Horovod: start every worker from rank 0's weights and optimizer state.
            hvd.callbacks.BroadcastGlobalVariablesCallback(0),
            # Horovod: average validation metrics so every worker's early stopping sees the same val_loss.
            hvd.callbacks.MetricAverageCallback(),
        ]
        if cfg["warmup_epochs"]:
            # Horovod: ramp LR from lr/N to lr over the first epochs (large scaled LRs diverge early on).
            callbacks.append(hvd.callbacks.LearningRateWarmupCallback(
                initial_lr=lr, warmup_epochs=cfg["warmup_epochs"], steps_per_epoch=steps, verbose=0))
    callbacks += [early, recorder]
    if rank0:
        callbacks.append(EpochCheckpoint(output, head, opt, early, recorder, cfg, workers.size))
    if os.environ.get("XEONTL_FAULT_AFTER_EPOCH"):
        callbacks.append(FaultInjection(int(os.environ["XEONTL_FAULT_AFTER_EPOCH"]), workers.rank, workers.size))

    t0 = time.perf_counter()
    fitted.fit(train_ds, validation_data=val_ds, epochs=cfg["epochs"], initial_epoch=initial_epoch,
               steps_per_epoch=steps, callbacks=callbacks, verbose=cfg["verbose"] if rank0 else 0)
    train_seconds = time.perf_counter() - t0
    stopped_early = early.stopped_epoch > 0
    if not stopped_early and early.best_weights is not None:
        fitted.set_weights(early.best_weights)  # Keras restores only on an early stop; the paper wants the best epoch
    if stopped_early:
        events.write("early_stop", epoch_num=early.stopped_epoch + 1, best_epoch=early.best_epoch + 1)

    # Per-rank throughput, gathered so rank 0 can report both sockets.
    mine = {"rank": workers.rank, "host": platform.node(), "controller": workers.controller(), "affinity": sorted(os.sched_getaffinity(0)), "train_images": len(train_shard),
            "images_per_second": float(np.median([e["images_per_second"] for e in recorder.per_epoch]))}
    ranks = workers.allgather(mine)

    result = {"train_seconds": train_seconds, "epochs_run": len(recorder.per_epoch), "stopped_early": stopped_early,
              "best_epoch": early.best_epoch + 1, "per_epoch": recorder.per_epoch, "ranks": ranks,
              "images_per_second": sum(r["images_per_second"] for r in ranks),
              "learning_rate": lr, "lr_rule": lr_rule, "validation": "sharded" if val_sharded else "full on every rank",
              "dataset": ds.info, "notices": notices,
              "feature_cache": cache.info if cache else None,
              "resumed_from": {"checkpoint": str(resumed["path"]), "epoch": resumed["epoch"],
                               "optimizer_iterations": resumed["optimizer_iterations"]} if resumed else None}
    if rank0:
        # 7. Final evaluation of the restored best weights on the whole validation set, always through the full
        #    model on images (the feature cache's own val accuracy is not what we report).
        probs = net.predict(data.pipeline(ds.val, cfg, training=False), verbose=0)
        predicted = probs.argmax(1)
        cm = confusion(ds.val.labels, predicted)
        result.update(final_val_accuracy=float((predicted == ds.val.labels).mean()), confusion_matrix=cm.tolist(),
                      per_class_accuracy={n: float(cm[i, i] / max(cm[i].sum(), 1))
                                          for i, n in enumerate(data.CLASS_NAMES)})
        head.save_weights(str(output / "head.weights.h5"))
        log.info("final val accuracy %.4f after %d epochs (best %d)", result["final_val_accuracy"],
                 result["epochs_run"], result["best_epoch"])
    return result
