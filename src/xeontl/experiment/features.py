"""`--feature-cache`: an xeontl speed path, never the paper's protocol (the paper re-runs the frozen backbone on every
image every epoch).

The backbone is frozen, so its output for a given input never changes: compute it once for the validation shard
and for K augmented views of the training shard, store it, and train only the head on the stored features. Epoch e
trains on view e mod K (augmentation is sampled K times instead of once per epoch: the one thing this changes).
The final accuracy is still measured by the full model on the validation images, not on the cache.

The cache is keyed by everything its content depends on: the shard's image bytes, the weights, image size,
precision, augmentation settings, K and the seed. A changed input is a new key, never a stale hit.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np

from xeontl.experiment import data

log = logging.getLogger(__name__)

FORMAT_VERSION = "1"  # bump when what is stored (or how it is computed) changes
EXTRACT_BATCH = 64  # inference only: a larger batch than training's 32 keeps oneDNN's kernels busier


@dataclasses.dataclass
class Cache:
    train: np.ndarray  # (K, n_train, d) float32: K augmented views of this worker's training shard
    train_labels: np.ndarray  # (n_train,)
    val: np.ndarray  # (n_val, d) float32: un-augmented validation shard
    val_labels: np.ndarray
    info: dict  # key, path, hit/miss, seconds to build


def cache_dir(cfg) -> Path:
    return Path(cfg["feature_cache_dir"] or os.environ.get("XEONTL_CACHE_DIR") or Path.home() / ".cache" / "xeontl")


def cache_key(cfg, weights_info: dict, train: data.Split, val: data.Split) -> str:
    """sha256 over data + weights + augmentation + everything else the stored features depend on."""
    weights = weights_info["sha256"] or f"random:{weights_info['topology']}:seed={cfg['seed']}"
    parts = {"format": FORMAT_VERSION, "train": train.sha256(), "val": val.sha256(), "weights": weights,
             **{k: cfg[k] for k in ("image_size", "precision", "amp", "augment", "rotation_factor", "seed",
                                    "feature_cache_views")}}
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def forward_fn(backbone, cfg):
    """The backbone as one traced function for any batch size: traced (and its oneDNN primitives made) once, not
    once per view and again for the last, shorter batch."""
    import tensorflow as tf

    size = cfg["image_size"]
    return tf.function(lambda x: backbone(x, training=False),
                       input_signature=[tf.TensorSpec((None, size, size, 3), tf.float32)])


def extract(backbone, split: data.Split, cfg, augment: bool, view: int = 0, progress=None, forward=None) -> np.ndarray:
    """Backbone features of a split in its stored order (augmented or not), batch by batch. Each view seeds its
    augmentation differently (the same seed would draw the same flips and rotations K times)."""
    forward = forward or forward_fn(backbone, cfg)
    view_cfg = {**cfg, "seed": cfg["seed"] + 7919 * view}
    out = []
    for x, _ in data.pipeline(split, view_cfg, training=False, batch_size=EXTRACT_BATCH, augment=augment):
        out.append(forward(x).numpy().astype(np.float32))
        if progress is not None:
            progress.update(len(out[-1]))
    return np.concatenate(out)


def load_or_build(cfg, backbone, weights_info: dict, train: data.Split, val: data.Split, show_progress: bool) -> Cache:
    """The cached features for this worker's shards: read if present, else computed (with a progress bar) and stored
    atomically, so an interrupted build leaves no half-written cache behind."""
    from tqdm import tqdm

    key = cache_key(cfg, weights_info, train, val)
    path = cache_dir(cfg) / f"features-{key[:32]}.npz"
    k = cfg["feature_cache_views"]
    if path.is_file():
        with np.load(path) as z:
            cache = Cache(z["train"], z["train_labels"], z["val"], z["val_labels"],
                          {"key": key, "path": str(path), "hit": True, "build_seconds": 0.0, "views": k})
        log.info("feature cache hit: %s", path)
        return cache
    t0 = time.perf_counter()
    total = k * len(train) + len(val)
    forward = forward_fn(backbone, cfg)
    with tqdm(total=total, unit="img", desc=f"feature cache ({k} views + val)", disable=not show_progress,
              mininterval=2.0) as bar:
        views = np.stack([extract(backbone, train, cfg, augment=cfg["augment"], view=v, progress=bar, forward=forward)
                          for v in range(k)])
        val_feats = extract(backbone, val, cfg, augment=False, progress=bar, forward=forward)
    seconds = time.perf_counter() - t0
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, train=views, train_labels=train.labels, val=val_feats, val_labels=val.labels)
    os.replace(tmp, path)
    log.info("feature cache built in %.1f s (%d images through the backbone): %s", seconds, total, path)
    return Cache(views, train.labels, val_feats, val.labels,
                 {"key": key, "path": str(path), "hit": False, "build_seconds": seconds, "views": k,
                  "images_through_backbone": total})


def train_dataset(cache: Cache, cfg, initial_epoch: int = 0):
    """Epoch e: view e mod K of every training image, shuffled, in batches (an infinite dataset; fit counts steps)."""
    import tensorflow as tf

    feats, labels = tf.constant(cache.train), tf.constant(cache.train_labels)
    k, n, batch = len(cache.train), len(cache.train_labels), cfg["batch_size"]

    def epoch(e):
        ds = tf.data.Dataset.from_tensor_slices((tf.gather(feats, e % k), labels))
        # a per-epoch seed: a new order every epoch, and the same order for epoch e after a --resume
        return ds.shuffle(n, seed=cfg["seed"] * 100_003 + e).batch(batch, drop_remainder=True)

    return tf.data.Dataset.range(initial_epoch, 1 << 31).flat_map(epoch).prefetch(tf.data.AUTOTUNE)


def val_dataset(cache: Cache, cfg):
    import tensorflow as tf

    return tf.data.Dataset.from_tensor_slices((cache.val, cache.val_labels)).batch(cfg["batch_size"])
