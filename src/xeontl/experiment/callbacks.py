"""The trainer's Keras callbacks, in the order fit() runs them: Horovod's broadcast, metric averaging and LR warm-up,
the kit's LR schedule, early stopping (resumable), the per-epoch recorder and events, rank 0's checkpoints, the
ranks' heartbeat, and the tests' fault injection (train.py's step 6)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import time
from pathlib import Path

import tensorflow as tf

from xeontl.experiment import checkpoint
from xeontl.experiment.events import EventLog

log = logging.getLogger("xeontl.experiment.train")

# Intel's kit's schedule (common_utils.py, train_model), the kit profile's lr_schedule = "plateau".
KIT_PLATEAU = {"monitor": "val_loss", "factor": 0.2, "patience": 5, "cooldown": 1, "min_lr": 1e-10}



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
        self.events.write("eval_accuracy", row.get("val_accuracy"), epoch_num=epoch + 1)
        self.events.write("eval_loss", row.get("val_loss"), epoch_num=epoch + 1)
        self.events.write("epoch_stop", epoch_num=epoch + 1, seconds=row["seconds"])


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

    def __init__(self, results, head, optimizer, early: ResumableEarlyStopping, recorder, cfg: dict,
                 workers: int):
        super().__init__()
        self.results, self.dir = results, results.output / checkpoint.DIR
        self.head, self.optimizer, self.early, self.recorder = head, optimizer, early, recorder
        self.cfg, self.workers = cfg, workers

    def on_epoch_end(self, epoch, logs=None):
        self.results.write_probe(final=False)  # probe.json at the first epoch's end: a run killed later keeps it
        best = self.early.best_weights
        best_head = checkpoint.head_part(best, self.head) if best is not None else self.head.get_weights()
        checkpoint.write(self.dir, epoch + 1, self.head, self.optimizer, best_head, {
            "workers": self.workers, "config": self.cfg, "optimizer_iterations": int(self.optimizer.iterations.numpy()),
            "early_stopping": {"wait": self.early.wait, "best": float(self.early.best),
                               "best_epoch": self.early.best_epoch},
            "per_epoch": self.recorder.per_epoch})


class Heartbeat(tf.keras.callbacks.Callback):
    """Each rank's progress, where a launcher can see it: heartbeat/rank-N in the run dir, its mtime set at most every
    EVERY seconds as batches complete (an os.utime: nothing read or written in the step). A rank blocked in an
    allreduce behind a frozen or unreachable peer stops beating with it: the Kubernetes launcher's watchdog
    (engines/mpijob_launcher.Watchdog) ends such a run instead of waiting forever."""

    EVERY = 2.0

    def __init__(self, output: Path, rank: int):
        super().__init__()
        self.path, self.last = output / "heartbeat" / f"rank-{rank}", 0.0
        self.path.parent.mkdir(exist_ok=True)
        self.path.touch()

    def on_train_batch_end(self, batch, logs=None):
        now = time.monotonic()
        if now - self.last >= self.EVERY:
            self.last = now
            with contextlib.suppress(OSError):
                os.utime(self.path)

    on_test_batch_end = on_train_batch_end


class FaultInjection(tf.keras.callbacks.Callback):
    """Tests only (`--fault-after-epoch N`): rank 1 (or the only rank) SIGKILLs itself after epoch N's checkpoint,
    a reproducible stand-in for a crashed or OOM-killed worker."""

    def __init__(self, after_epoch: int, workers):
        super().__init__()
        self.after_epoch, self.workers = after_epoch, workers
        self.victim = workers.rank == min(1, workers.size - 1)

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 != self.after_epoch:
            return
        # Horovod: every rank meets here, rank 0 after its checkpoint callback (it runs before this one), so the
        # victim dies after epoch N's checkpoint is on disk, as a test of resuming needs (without it, rank 0 was
        # killed mid-write: CI on an AMX machine, 18 ms after rank 1's epoch end)
        self.workers.allgather(None)
        if self.victim:
            log.warning("fault injection: SIGKILL after epoch %d", epoch + 1)
            os.kill(os.getpid(), signal.SIGKILL)



def make_callbacks(cfg, workers, results, lr: float, steps: int, head, opt, resumed, cache,
                   fault_after_epoch: int):
    """(early stopping, epoch recorder, every callback in the order Keras must run them)."""
    hvd, rank0 = workers.hvd, workers.rank == 0
    history = resumed["per_epoch"] if resumed else []
    cache_seconds = cache.info["build_seconds"] if cache else 0.0
    # time-to-accuracy clock: the cache build and an interrupted run's time count too
    recorder = EpochRecorder(steps * cfg["batch_size"], results.events, history,
                             seconds_before=(history[-1]["elapsed_seconds"] if history else 0.0) + cache_seconds)
    early = ResumableEarlyStopping(head, resumed["early_stopping"] if resumed else None, monitor="val_loss",
                                   patience=cfg["patience"], min_delta=cfg["min_delta"], restore_best_weights=True,
                                   verbose=1 if rank0 else 0)
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
    if cfg["lr_schedule"] == "plateau":
        # The kit's LR decay on val_loss (after Horovod's metric averaging: every worker decays at the same epoch);
        # before the recorder, so each epoch's row has the LR it ran at.
        callbacks.append(tf.keras.callbacks.ReduceLROnPlateau(**KIT_PLATEAU, verbose=1 if rank0 else 0))
    callbacks += [early, recorder]
    if hvd and os.environ.get("XEONTL_HEARTBEAT"):  # for a launcher that watches for a stalled peer (the MPIJob's)
        callbacks.append(Heartbeat(results.output, workers.rank))
    if rank0:
        # Horovod: rank 0 alone writes the per-epoch checkpoints (every rank holds the same weights).
        callbacks.append(EpochCheckpoint(results, head, opt, early, recorder, cfg, workers.size))
    if fault_after_epoch:
        callbacks.append(FaultInjection(fault_after_epoch, workers))
    return early, recorder, callbacks
