"""Frozen ResNet50 backbone + the paper's classification head (GAP + Dense(8) softmax).

Weight sources (`weights`):
  random            ResNet50 v1.5 topology, random init: the offline default, labelled "random backbone — not ImageNet".
  savedmodel:DIR    a TF-Hub image feature-vector SavedModel (Intel's pipeline): input [0,1], 224 px.
  keras:FILE.h5     Keras' ImageNet ResNet50 file. That file is ResNet50 **v1** (stride on the 1x1 conv); it is loaded
                    into the v1 topology and labelled v1, never passed off as v1.5.
"""

from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path, PurePosixPath

from xeontl import RANDOM_WEIGHTS_NOTICE
from xeontl.common.errors import UserError
from xeontl.experiment import architectures
from xeontl.experiment.data import CLASS_NAMES, sha256_file

BN_EPSILON = 1.001e-5  # Keras' ResNet50
# The architectures (architectures.json's names) of the networks this module builds: resnet50(v15=True), the demo's,
# and resnet50(v15=False), into which Keras' ResNet50 file loads (tests/test_model.py holds both to their signatures).
DEMO, KERAS_V1 = "NVIDIA ResNet50 v1.5", "Keras ResNet50 (v1)"


def _conv_bn(x, filters, kernel, stride, name, fold, padding="valid"):
    """A convolution and its batch norm, or (fold) the convolution alone, whose weights and bias will carry the
    batch norm (fold_batch_norms). Layer names as Keras' ResNet50: NAME_conv, NAME_bn."""
    from tensorflow.keras import layers

    x = layers.Conv2D(filters, kernel, strides=stride, padding=padding, name=name + "_conv")(x)
    return x if fold else layers.BatchNormalization(axis=3, epsilon=BN_EPSILON, name=name + "_bn")(x)


def _bottleneck(x, filters, stride, shortcut_conv, name, v15, fold):
    from tensorflow.keras import layers

    shortcut = _conv_bn(x, 4 * filters, 1, stride, name + "_0", fold) if shortcut_conv else x
    # v1.5 moves the block's stride from the first 1x1 conv to the 3x3 conv (better accuracy, same weight shapes).
    x = _conv_bn(x, filters, 1, 1 if v15 else stride, name + "_1", fold)
    x = layers.Activation("relu", name=name + "_1_relu")(x)
    x = _conv_bn(x, filters, 3, stride if v15 else 1, name + "_2", fold, padding="same")
    x = layers.Activation("relu", name=name + "_2_relu")(x)
    x = _conv_bn(x, 4 * filters, 1, 1, name + "_3", fold)
    x = layers.Add(name=name + "_add")([shortcut, x])
    return layers.Activation("relu", name=name + "_out")(x)


def resnet50(image_size: int, v15: bool = True, seed: int | None = 0, fold: bool = False):
    """ResNet50 without top (feature maps of 2048 channels), Keras layer names, v1.5 strides by default; `fold`:
    without batch norm layers (the topology fold_batch_norms fills); seed None leaves the global seed as it is."""
    import tensorflow as tf
    from tensorflow.keras import layers

    if seed is not None:
        tf.keras.utils.set_random_seed(seed)
    inp = layers.Input((image_size, image_size, 3), name="image")
    x = layers.ZeroPadding2D(3, name="conv1_pad")(inp)
    x = _conv_bn(x, 64, 7, 2, "conv1", fold)
    x = layers.Activation("relu", name="conv1_relu")(x)
    x = layers.ZeroPadding2D(1, name="pool1_pad")(x)
    x = layers.MaxPooling2D(3, strides=2, name="pool1_pool")(x)
    for stage, (filters, blocks, stride) in enumerate([(64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)], start=2):
        for b in range(1, blocks + 1):
            x = _bottleneck(x, filters, stride if b == 1 else 1, b == 1, f"conv{stage}_block{b}", v15, fold)
    return tf.keras.Model(inp, x, name="resnet50_v1_5" if v15 else "resnet50_v1")


def fold_batch_norms(net):
    """The same frozen network with each batch norm folded into the convolution before it: in inference a batch
    norm is y = (conv(x) + b - mean) * s + beta with s = gamma / sqrt(var + eps), which is conv with weights W * s and
    bias (b - mean) * s + beta. Exact up to rounding. Why: TF runs Keras' Conv2D + BiasAdd + FusedBatchNorm as a
    fused conv and a separate batch-norm primitive, 10-12 % of the paper's training step (measured by check-host's
    step profile on Zen 5, bf16, 224 px, batch 32); folded, the batch norms cost nothing."""
    import numpy as np

    v15 = net.name == "resnet50_v1_5"
    folded = resnet50(net.input_shape[1], v15=v15, seed=None, fold=True)
    folded._name = net.name
    for layer in folded.layers:
        if not layer.name.endswith("_conv"):
            continue
        w, b = net.get_layer(layer.name).get_weights()
        bn = net.get_layer(layer.name[:-len("_conv")] + "_bn")
        gamma, beta, mean, var = bn.get_weights()
        s = gamma / np.sqrt(var + bn.epsilon)
        layer.set_weights([w * s, (b - mean) * s + beta])  # s broadcasts over the output channels, W's last axis
    return folded


def fresh_folded(image_size: int, seed: int):
    """fold_batch_norms(resnet50(image_size, seed=seed)) without building the network with batch norms: a fresh batch
    norm is gamma 1, beta 0, mean 0, var 1 and its initializers draw no random numbers, so the folded topology with
    the same seed draws the same convolution weights, and folding only scales them by 1 / sqrt(1 + eps)."""
    import numpy as np

    net = resnet50(image_size, v15=True, seed=seed, fold=True)
    s = np.float32(1 / np.sqrt(1 + BN_EPSILON))
    for layer in net.layers:
        if layer.name.endswith("_conv"):
            w, b = layer.get_weights()
            layer.set_weights([w * s, b * s])
    return net


def tree_sha256(files: dict[str, str]) -> str:
    """The one digest of a weight directory, from {relative path: sha256 of the file}: each path (POSIX, normalized)
    and its file's digest, the paths in the order of their components (`a/b` before `a.txt`: as pathlib sorts).
    weights_sha256 (a directory on disk) and an assets bundle's streams (supply/assets.py) both call this."""
    h = hashlib.sha256()
    for rel, digest in sorted(((PurePosixPath(r), d) for r, d in files.items()), key=lambda f: f[0].parts):
        h.update(str(rel).encode() + b"\0" + bytes.fromhex(digest))
    return h.hexdigest()


def _regular_sha256(path: Path) -> str:
    """sha256 of PATH, opened without following a link and held to a regular file on its descriptor."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    with open(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise UserError(f"weights: {path} is not a regular file: a SavedModel holds files and directories only")
        h = hashlib.sha256()
        while block := f.read(1 << 20):
            h.update(block)
    return h.hexdigest()


def weights_sha256(path: Path) -> str:
    """sha256 of a weight file, or of a SavedModel directory (tree_sha256 of its files). Inside a directory every
    entry must be a plain file or directory: a symbolic link is refused (one line), never followed or skipped (a
    linked variables/ was skipped, so its files were never hashed)."""
    if path.is_file():
        return sha256_file(path)

    def unreadable(e: OSError):
        raise UserError(f"weights {path}: {e.filename} cannot be read ({e.strerror}): nothing was hashed")

    files = {}
    try:
        for root, dirs, names in os.walk(path, onerror=unreadable):
            for name in dirs + names:
                entry = Path(root) / name
                rel = entry.relative_to(path)
                if entry.is_symlink():
                    raise UserError(f"weights {path}: {rel} is a symbolic link: links inside a SavedModel are refused "
                                    f"(copy the files in)")
                if name in names:
                    files[str(rel)] = _regular_sha256(entry)
    except OSError as e:
        raise UserError(f"weights {path}: {e.filename} cannot be read ({e.strerror})") from None
    return tree_sha256(files)


def saved_model_architecture(path: Path, loaded=None, size: int | None = None) -> dict:
    """What a weights record keeps of a SavedModel's architecture, named by its exact convolution signature
    (xeontl.experiment.architectures: "architecture" is a reference's name or "unknown", "architecture_sha256" the
    signature's, "architecture_is_paper"), read from the function hub.KerasLayer runs, frozen. LOADED: the object
    already loaded (a hub.KerasLayer's), which saves loading it again: TF-Slim's ResNet50 took 3.5 s to freeze, 6.5 s
    with its load (Zen 4, 2 cores)."""
    return architectures.architecture_of(path, loaded, size)["record"]


def describe_weights(cfg) -> dict:
    """What the weights are, checked before any TF work: kind, label, path and sha256 (or a clear error)."""
    spec = cfg["weights"]

    def batch_norm():  # only a Keras-built backbone folds them (a SavedModel runs as saved)
        return "folded into the convolutions" if cfg["fold_batch_norm"] else "separate layers"

    if spec == "random":
        return {"kind": "random", "architecture": DEMO, "architecture_is_paper": DEMO == architectures.PAPER,
                "pretrained": None, "topology": "ResNet50 v1.5",
                "label": RANDOM_WEIGHTS_NOTICE, "sha256": None, "batch_norm": batch_norm()}
    kind, sep, raw = spec.partition(":")
    if not sep or kind not in ("savedmodel", "keras"):
        raise UserError(f"weights '{spec}' not understood: use random, savedmodel:DIR or keras:FILE.h5")
    path = Path(raw).expanduser()
    if not path.exists():
        raise UserError(f"weights {path} not found: put the weights there (README, 'The paper's runs') "
                        f"or use --weights random")
    if kind == "savedmodel" and not (path / "saved_model.pb").is_file():
        raise UserError(f"{path} is not a SavedModel directory (no saved_model.pb): give a TF-Hub feature-vector model")
    if kind == "keras" and not path.is_file():
        raise UserError(f"{path} is not a file: keras: takes a .h5 weight file")
    digest = weights_sha256(path)
    if cfg["weights_sha256"] and digest != cfg["weights_sha256"]:
        raise UserError(f"weights {path} have sha256 {digest}, expected {cfg['weights_sha256']}: re-stage the file")
    if kind == "keras":
        return {"kind": "keras_h5", "architecture": KERAS_V1, "architecture_is_paper": KERAS_V1 == architectures.PAPER,
                "pretrained": "ImageNet (Keras' ResNet50 file)",
                "topology": "ResNet50 v1 (Keras ImageNet weights are v1, not v1.5)",
                "label": "ImageNet ResNet50 v1", "path": str(path), "sha256": digest, "batch_norm": batch_norm()}
    # A SavedModel's architecture is read from its graph when every rank loads it (backbone), before training; until
    # then it is "unknown", and a record that never got it stays so.
    return {"kind": "savedmodel", "architecture": "unknown", "pretrained": "as saved (TF-Hub feature vector)",
            "topology": "as saved (TF-Hub feature vector)", "label": "ImageNet (SavedModel)",
            "path": str(path), "sha256": digest, "batch_norm": "as saved"}


def use_feature_norm(cfg) -> bool:
    """Random-backbone features are ~0.03 in scale: a bare Dense head on them barely learns, standardized ones do."""
    return cfg["feature_norm"] == "on" or (cfg["feature_norm"] == "auto" and cfg["weights"] == "random")


def backbone(cfg, weights_info: dict):
    """Frozen feature extractor: [0,1] images of image_size -> pooled 2048-d features."""
    import tensorflow as tf
    from tensorflow.keras import layers

    size = cfg["image_size"]
    inp = layers.Input((size, size, 3), name="image")
    if weights_info["kind"] == "savedmodel":
        import tensorflow_hub as hub

        # hub.KerasLayer runs a TF2 SavedModel's __call__ and a TF1-Hub module's "default" signature (output
        # "default"); anything else, or an output that is not [batch, features], stops every rank here, before
        # training, in one line. Every rank reads the architecture of what it loaded (the weights record's).
        path = weights_info["path"]
        try:
            layer = hub.KerasLayer(path, trainable=False, name="hub_backbone")
            feats = layer(inp)
        except (OSError, ValueError, TypeError) as e:
            raise UserError(f"cannot load the SavedModel {path} as an image feature vector ({type(e).__name__}: "
                            f"{str(e).splitlines()[0][:160] if str(e) else ''}): give a TF-Hub feature-vector "
                            f"model (TF2 SavedModel or TF1-Hub format)") from None
        if feats.shape.rank != 2:
            raise UserError(f"the SavedModel {path} gives {feats.shape} on [batch, {size}, {size}, 3] images, not a "
                            f"feature vector [batch, features]: give a TF-Hub feature-vector model")
        weights_info.update(saved_model_architecture(Path(path), layer.resolved_object, size))
    else:
        v15 = weights_info["kind"] == "random"
        if v15 and cfg["fold_batch_norm"]:
            net = fresh_folded(size, cfg["seed"])  # one network built instead of two: ~2 s of each rank's set-up
        else:
            net = resnet50(size, v15=v15, seed=cfg["seed"])
        x = inp
        if weights_info["kind"] == "keras_h5":
            try:
                net.load_weights(weights_info["path"], by_name=True, skip_mismatch=False)
            except (OSError, ValueError) as e:
                raise UserError(f"cannot load {weights_info['path']} into ResNet50 ({type(e).__name__}): the file is "
                                f"corrupt or not Keras' ResNet50 ImageNet weights (notop)") from None
            # Keras ImageNet weights were trained on caffe-style input: BGR, 0-255, ImageNet mean subtracted.
            x = layers.Rescaling(255.0)(x)
            x = layers.Lambda(tf.keras.applications.resnet.preprocess_input, name="caffe_preprocess")(x)
        if cfg["fold_batch_norm"] and not v15:
            net = fold_batch_norms(net)
        net.trainable = False
        # training=False keeps BatchNorm in inference mode: the backbone is frozen, statistics included.
        feats = layers.GlobalAveragePooling2D(name="avg_pool")(net(x, training=False))
    model = tf.keras.Model(inp, feats, name="backbone")
    model.trainable = False
    return model


def head(feature_dim: int, feature_norm_layer=None):
    """The only trained part: [feature standardization] + Dense(8) softmax, float32 output under mixed precision."""
    import tensorflow as tf
    from tensorflow.keras import layers

    inp = layers.Input((feature_dim,), name="features")
    x = inp
    if feature_norm_layer is not None:
        x = feature_norm_layer(x)
    x = layers.Dense(len(CLASS_NAMES), name="classifier")(x)
    out = layers.Activation("softmax", dtype="float32", name="probs")(x)
    return tf.keras.Model(inp, out, name="head")


def feature_standardizer(backbone_model, sample_images, gather=None):
    """Demo-only: per-feature standardization fitted on a fixed, un-augmented sample of training tiles.

    Labelled in the model ('feature_standardization_random_backbone') and in provenance. `gather`: each rank has its
    share of the sample and gather(features) returns every rank's, in rank order, so every rank fits the same
    statistics on the whole sample having run the backbone on 1/N of it.
    """
    import numpy as np
    import tensorflow as tf

    feats = backbone_model.predict(sample_images, batch_size=64, verbose=0).astype("float32")
    if gather is not None:
        feats = np.concatenate(gather(feats))
    norm = tf.keras.layers.Normalization(name="feature_standardization_random_backbone")
    norm.adapt(feats)
    return norm


def build(cfg, weights_info: dict, norm_sample=None, gather=None):
    """backbone -> (optional standardization) -> head, as one Keras model; returns (model, backbone, head)."""
    import tensorflow as tf

    bb = backbone(cfg, weights_info)
    norm = feature_standardizer(bb, norm_sample, gather) if use_feature_norm(cfg) and norm_sample is not None else None
    hd = head(bb.output_shape[-1], norm)
    model = tf.keras.Model(bb.input, hd(bb.output), name="xeontl_resnet50_transfer")
    return model, bb, hd
