"""Per-epoch checkpoints for `--resume`: everything needed to continue a run as if it had not stopped.

A checkpoint is `checkpoints/epoch-NNNN/` in the run dir, written by rank 0 after every completed epoch into a
temporary dir and renamed into place (a crash mid-write leaves the previous checkpoint intact):
  state.*            the head's weights and the optimizer's state (Adam moments, iteration count), tf.train.Checkpoint
  best_head.npz      the head's best weights so far (early stopping restores them at the end)
  state.json         epoch, early-stopping counters, per-epoch history, the resolved config and worker count
The frozen backbone is never saved: it is rebuilt from the same weights (recorded by sha256) or seed.
The callbacks that write and use it are in train.py; this module imports no TensorFlow until restore(), so the
launcher can check a run for --resume cheaply.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from xeontl.common.errors import UserError

DIR = "checkpoints"
# Config fields that may differ on resume: they change where output goes, not what is computed.
RESUMABLE_DIFFERENCES = {"verbose"}


def latest(run_dir: Path) -> Path | None:
    done = sorted((Path(run_dir) / DIR).glob("epoch-[0-9][0-9][0-9][0-9]"))
    return done[-1] if done else None


def head_part(weights: list, head) -> list:
    """The head's slice of a model's weight list (the head's layers come last in every model we fit)."""
    n = len(head.weights)
    part = weights[-n:]
    assert [w.shape for w in part] == [tuple(v.shape) for v in head.weights], "head weights are not last"
    return part


def read(run_dir: Path, cfg: dict, workers: int) -> dict:
    """The latest checkpoint of a run, checked against this run's config and worker count."""
    ck = latest(run_dir)
    if ck is None:
        raise UserError(f"{run_dir} has no completed-epoch checkpoint ({DIR}/epoch-NNNN): nothing to resume; "
                        f"start a new run instead")
    from xeontl.common import records

    state = records.read_record(ck / "state.json", "checkpoint-state")  # as its schema allows, or one line
    differs = sorted(k for k in cfg if k not in RESUMABLE_DIFFERENCES and state["config"].get(k) != cfg[k])
    if differs:
        raise UserError(f"cannot resume {run_dir} with a different config ({', '.join(differs)}): resume with the "
                        f"run's own config (invoke reproduce --resume does)")
    if state["workers"] != workers:
        raise UserError(f"{run_dir} ran with {state['workers']} worker(s), this run has {workers}: resume with the "
                        f"same --sockets")
    import numpy as np  # here: the launcher imports this module for latest(), and numpy was a third of its start

    with np.load(ck / "best_head.npz") as z:
        best_head = [z[f"arr_{i}"] for i in range(len(z.files))]
    es = state["early_stopping"]
    return {"path": ck, "epoch": state["epoch"], "per_epoch": state["per_epoch"],
            "optimizer_iterations": state["optimizer_iterations"],
            "early_stopping": {**es, "best_head": best_head}}


def write(directory: Path, epoch: int, head, optimizer, best_head: list, state: dict, keep: int = 1) -> Path:
    """epoch-NNNN/ written whole under a temporary name, then renamed; older checkpoints beyond `keep` removed."""
    import numpy as np
    import tensorflow as tf

    directory.mkdir(parents=True, exist_ok=True)
    final, tmp = directory / f"epoch-{epoch:04d}", directory / f".writing-{epoch:04d}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    tf.train.Checkpoint(head=head, optimizer=optimizer).write(str(tmp / "state"))
    np.savez(tmp / "best_head.npz", *best_head)
    (tmp / "state.json").write_text(json.dumps({"epoch": epoch, **state}, indent=1, default=str))
    tmp.rename(final)
    for old in sorted(directory.glob("epoch-[0-9][0-9][0-9][0-9]"))[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def restore(ck: dict, head, optimizer, variables) -> None:
    """Head weights + optimizer state into freshly built objects (the optimizer is built first so nothing defers)."""
    import tensorflow as tf

    optimizer.build(variables)
    tf.train.Checkpoint(head=head, optimizer=optimizer).read(str(ck["path"] / "state")).expect_partial()
    got = int(optimizer.iterations.numpy())
    if got != ck["optimizer_iterations"]:
        raise RuntimeError(f"optimizer state not restored: iterations {got}, checkpoint {ck['optimizer_iterations']}")


def summary(resumed: dict | None) -> dict | None:
    """What metrics.json records of the checkpoint a run resumed from (None for a fresh run)."""
    if not resumed:
        return None
    return {"checkpoint": str(resumed["path"]), "epoch": resumed["epoch"],
            "optimizer_iterations": resumed["optimizer_iterations"]}
