"""Stand-ins for the paper's inputs, which cannot be fetched on the bundle's machines, made the way the real ones are:

- `savedmodel`: TF-Slim's resnet_v1_50 (the `tf-slim` package: the definition TF-Hub's ResNet modules were exported
  from), random weights, saved as a TF2 feature-vector SavedModel shaped like TF-Hub's
  `imagenet/resnet_v1_50/feature_vector/5`: `__call__` on [batch, height, width, 3] images in [0, 1] -> [batch, 2048].
- `keras_v1`: Keras' ResNet50 (v1: stride 2 on a bottleneck's first 1x1) weight file, random weights, as Keras' ImageNet
  file is laid out (layer names, notop).
- `tfds`: a Kather-layout archive (01_TUMOR ... 08_EMPTY, 150x150 RGB TIFFs) prepared by TFDS's real
  colorectal_histology builder through `xeontl.experiment.data.prepare_tfds` (the builder's registered download
  swapped for this archive: TFDS checks the file it finds against that record), so a run reads it as `--dataset tfds`.

Each runs in a child process (`python tests/paper_inputs.py KIND OUT ...`): the tests' own process keeps no
TF-Slim graph or TFDS registration. Also a script: the same command makes them by hand."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]


def make(kind: str, out: Path, *args: str, timeout: float | None = None) -> dict:
    """Make a stand-in in a child process, within TIMEOUT s (this machine's scaled 600); returns what it printed."""
    from conftest import scaled  # the test process's bound (the child never imports it)

    r = subprocess.run([sys.executable, str(HERE), kind, str(out), *args], capture_output=True, text=True,
                       timeout=timeout or scaled(600), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _slim_savedmodel(out: Path) -> dict:
    import importlib

    # TF 2.14 ships its v1 layers' modules under keras.src, where tensorflow.python.layers (which TF-Slim's batch_norm
    # uses) no longer finds them: point the old names at them.
    import keras.src.legacy_tf_layers as legacy
    import tensorflow as tf

    sys.modules["keras.legacy_tf_layers"] = legacy
    for sub in ("base", "convolutional", "core", "normalization", "pooling"):
        sys.modules[f"keras.legacy_tf_layers.{sub}"] = importlib.import_module(f"keras.src.legacy_tf_layers.{sub}")
    import tf_slim as slim
    from tf_slim.nets import resnet_v1

    def features(images):
        with slim.arg_scope(resnet_v1.resnet_arg_scope()):
            net, _ = resnet_v1.resnet_v1_50(images, num_classes=None, is_training=False, global_pool=True)
        return tf.squeeze(net, [1, 2])

    tf.random.set_seed(0)
    wrapped = tf.compat.v1.wrap_function(features, [tf.TensorSpec([None, None, None, 3], tf.float32)])

    class FeatureVector(tf.Module):
        def __init__(self, fn):
            super().__init__()
            self._fn, self._variables = fn, list(fn.variables)

        @tf.function(input_signature=[tf.TensorSpec([None, None, None, 3], tf.float32)])
        def __call__(self, images):
            # A random ResNet's pooled features are ~280 on [0,1] images (batch norms at their initial identity), an
            # ImageNet one's below 1: scaled to that range, a head trains on them as on real ones (unscaled, its
            # loss swung between 100 and 300 and early stopping came at a random epoch).
            return self._fn(images) / 300.0

    tf.saved_model.save(FeatureVector(wrapped), str(out))
    return {"path": str(out), "variables": len(wrapped.variables)}


def _keras_v1(out: Path) -> dict:
    sys.path.insert(0, str(ROOT / "src"))
    from xeontl.experiment import model

    net = model.resnet50(64, v15=False, seed=0)
    net.save_weights(str(out))
    return {"path": str(out)}


def kather_zip(path: Path, per_class: int, seed: int = 0) -> str:
    """A zip in the upstream archive's layout: per_class tiles of each class, as 150x150 RGB TIFFs, every one noise of
    the same distribution: nothing to learn, so the validation loss is best within the first epochs and early
    stopping ends the paper's recipe soon after its patience (the verdicts need a finished run, not a good one).
    Returns its sha256."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    folders = [f"{i + 1:02d}_{n}" for i, n in enumerate(("TUMOR", "STROMA", "COMPLEX", "LYMPHO", "DEBRIS", "MUCOSA",
                                                           "ADIPOSE", "EMPTY"))]
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w") as z:
        for ci, folder in enumerate(folders):
            for k in range(per_class):
                tile = rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)
                buf = path.parent / f".tile-{ci}-{k}.tif"
                Image.fromarray(tile).save(buf)
                z.write(buf, f"Kather_texture_2016_image_tiles_5000/{folder}/{ci}_{k}.tif")
                buf.unlink()
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _tfds(out: Path, per_class: str) -> dict:
    """OUT/tensorflow_datasets prepared from OUT/manual/<archive name> by TFDS's builder, via the bundle's own
    prepare_tfds (which checks the archive's sha256 and records where the build came from)."""
    sys.path.insert(0, str(ROOT / "src"))
    from tensorflow_datasets.core.download import checksums
    from tensorflow_datasets.image_classification import colorectal_histology as ch

    from xeontl.experiment import config, data

    archive = out / "manual" / data.ARCHIVE_NAME
    digest = kather_zip(archive, int(per_class))
    info = checksums.UrlInfo(size=archive.stat().st_size, checksum=digest, filename=data.ARCHIVE_NAME)
    ch.ColorectalHistology.url_infos = property(lambda self: {ch._TILES_DL_URL: info})
    cfg = config.resolve("paper", {"data_dir": str(out / "tensorflow_datasets"), "manual_dir": str(out / "manual"),
                                   "archive_sha256": digest})
    builder, data_dir = data.prepare_tfds(cfg)
    return {"data_dir": data_dir, "archive_sha256": digest, "origin": data.tfds_origin(builder)}


def claims_table(out: Path, identity: dict, weights_sha256: str | None = None) -> Path:
    """A copy of the bundle's claims.toml whose [paper_data] pins are the fixture data's (from a run's recorded
    identity): with XEONTL_CLAIMS_TABLE pointing at it, a run on the fixture is judged as the paper's data would be
    (every table of verdicts then says which table judged it)."""
    import tomllib

    text = (ROOT / "src" / "xeontl" / "claims.toml").read_text()
    pins = tomllib.loads(text)["paper_data"]
    new = {**pins, "archive_sha256": identity["archive_sha256"],
           "examples_per_class": identity["examples_per_class"], "content_sha256": ""}
    start = text.index("\n[paper_data]\n") + 1
    end = text.index("\n[", start + 1)
    body = "[paper_data]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in new.items())
    text = text[:start] + body + text[end:]
    if weights_sha256:  # the stand-in SavedModel's digest pinned as [paper_weights] sha256 (deny by default)
        text = text.replace("\nsha256 = []\n", f'\nsha256 = ["{weights_sha256}"]\n')
    out.write_text(text)
    return out


if __name__ == "__main__":
    kind, target, *rest = sys.argv[1:]
    made = {"savedmodel": _slim_savedmodel, "keras_v1": _keras_v1, "tfds": _tfds}[kind](Path(target), *rest)
    print(json.dumps(made))
