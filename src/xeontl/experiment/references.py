"""The reference convolution signatures (architectures.json), built here and now from each network's own
definition: TF-Slim's resnet_v1_50 from the installed `tf-slim` package, Keras' applications from the installed Keras,
the demo's v1.5 from xeontl.experiment.model. `python -m xeontl.experiment.references --write` writes them with the
package versions they came from; without --write it compares and exits 1 on drift (tests/test_model.py runs it).
`--name DIR` names a SavedModel's architecture."""

from __future__ import annotations

import argparse
import importlib
import json
import sys

from xeontl.experiment.architectures import DATA, PAPER, architecture_of, references, sha256, signature_of_function

# (name, where its definition is, how it is built here): the input size is the smallest the definition accepts
# cheaply; a signature does not depend on it (kernels, filters and strides do not change with the image size).
REFERENCES = (
    ("TF-Slim resnet_v1_50", "tf_slim.nets.resnet_v1.resnet_v1_50 (global_pool, num_classes=None)", "slim", 64),
    ("NVIDIA ResNet50 v1.5", "xeontl.experiment.model.resnet50(v15=True): stride 2 on the 3x3 of a stage's first unit",
     "demo", 64),
    ("Keras ResNet50 (v1)", "tf.keras.applications.ResNet50(weights=None, include_top=False)", "ResNet50", 64),
    ("Keras ResNet101 (v1)", "tf.keras.applications.ResNet101(weights=None, include_top=False)", "ResNet101", 64),
    ("Keras ResNet50V2", "tf.keras.applications.ResNet50V2(weights=None, include_top=False)", "ResNet50V2", 64),
    ("Keras MobileNetV2", "tf.keras.applications.MobileNetV2(weights=None, include_top=False)", "MobileNetV2", 64),
    ("Keras InceptionV3", "tf.keras.applications.InceptionV3(weights=None, include_top=False)", "InceptionV3", 75),
)


def slim_features(images, is_training: bool = False):
    """TF-Slim's resnet_v1_50 feature vector (global pool, no logits), as TF-Hub's modules have it; IS_TRAINING: batch
    norms in training mode (a TF1-Hub module's {"train"} graph)."""
    import tensorflow as tf

    # TF 2.14 keeps its v1 layers under keras.src, where tensorflow.python.layers (TF-Slim's batch_norm) no longer
    # finds them: point the old names at them.
    legacy = importlib.import_module("keras.src.legacy_tf_layers")
    sys.modules.setdefault("keras.legacy_tf_layers", legacy)
    for sub in ("base", "convolutional", "core", "normalization", "pooling"):
        sys.modules.setdefault(f"keras.legacy_tf_layers.{sub}",
                               importlib.import_module(f"keras.src.legacy_tf_layers.{sub}"))
    import tf_slim as slim
    from tf_slim.nets import resnet_v1

    with slim.arg_scope(resnet_v1.resnet_arg_scope()):
        net, _ = resnet_v1.resnet_v1_50(images, num_classes=None, is_training=is_training, global_pool=True)
    return tf.squeeze(net, [1, 2])


def reference_signature(how: str, size: int) -> tuple[list[list], list[str]]:
    """The signature of a reference network on [1, size, size, 3] images (built here; alive while it is read)."""
    import tensorflow as tf

    spec = tf.TensorSpec([1, size, size, 3], tf.float32)
    if how == "slim":
        return signature_of_function(tf.compat.v1.wrap_function(slim_features, [spec]))
    if how == "demo":
        from xeontl.experiment import model

        net = model.resnet50(size, v15=True, seed=0)
    else:
        net = getattr(tf.keras.applications, how)(weights=None, include_top=False, input_shape=(size, size, 3))
    return signature_of_function(tf.function(lambda x: net(x, training=False)).get_concrete_function(spec))


def versions() -> dict:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for dist in ("tensorflow", "intel-tensorflow", "keras", "tf-slim"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            pass
    return out


def generate() -> dict:
    """Every reference, built from its own definition here and now."""
    rows = []
    for name, source, how, size in REFERENCES:
        signature, unsupported = reference_signature(how, size)
        if unsupported:
            raise RuntimeError(f"{name}: ops the signature cannot read: {unsupported}")
        rows.append({"name": name, "definition": source, "convolutions": sum(e[0] != "add" for e in signature),
                     "signature_sha256": sha256(signature), "signature": signature})
    return {"generated_by": "python -m xeontl.experiment.references --write", "versions": versions(),
            "paper": PAPER, "paper_why": "docs/paper-runs.md, 'Which ResNet50 the paper ran'",
            "entry": ["kind", "kernel_h", "kernel_w", "in", "out", "stride_h", "stride_w", "dilation_h", "dilation_w"],
            "join": ["add", "relu_after"],
            "architectures": rows}


def dumps(doc: dict) -> str:
    """architectures.json's text: one convolution a line, so a diff shows which one changed."""
    head = {k: v for k, v in doc.items() if k != "architectures"}
    text = json.dumps(head, indent=1)[:-2] + ',\n "architectures": [\n'
    rows = []
    for a in doc["architectures"]:
        meta = json.dumps({k: v for k, v in a.items() if k != "signature"})[:-1]
        convs = ",\n   ".join(json.dumps(e) for e in a["signature"])
        rows.append(f'  {meta}, "signature": [\n   {convs}]}}')
    return text + ",\n".join(rows) + "\n ]\n}\n"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m xeontl.experiment.references",
                                 description="The reference convolution signatures, from the networks' definitions.")
    ap.add_argument("--write", action="store_true", help=f"write them to {DATA.name} (default: compare, exit 1 on "
                                                         f"drift)")
    ap.add_argument("--name", metavar="SAVEDMODEL", help="name the architecture of a SavedModel directory instead")
    args = ap.parse_args(argv)
    if args.name:
        print(json.dumps(architecture_of(args.name), indent=1))
        return 0
    doc = generate()
    if args.write:
        DATA.write_text(dumps(doc))
        print(f"wrote {DATA} ({len(doc['architectures'])} architectures, {doc['versions']})")
        return 0
    old = references()
    drift = [a["name"] for a, b in zip(doc["architectures"], old["architectures"]) if a != b]
    if drift or len(doc["architectures"]) != len(old["architectures"]):
        print(f"drift from {DATA.name}: {drift or 'a different list'} (built with {doc['versions']}, committed "
              f"from {old['versions']})")
        return 1
    print(f"{DATA.name} matches its definitions ({doc['versions']})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
