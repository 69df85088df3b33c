"""SavedModels the weights tests make themselves, each the way its kind is made upstream, random weights:

- slim_tf2 / slim_tf2_nchw: TF-Slim's resnet_v1_50 (the `tf-slim` package) as a TF2 feature-vector SavedModel shaped
  like TF-Hub's `imagenet/resnet_v1_50/feature_vector/5` (`__call__` on [batch, h, w, 3] -> [batch, 2048]); the NCHW
  one is the same frozen graph with every convolution rewritten to NCHW between two transposes (what a GPU layout
  pass makes of it);
- slim_tf1_hub: the same network as a TF1-Hub module (tensorflow_hub's own `create_module_spec` + `Module.export`,
  `tfhub_module.pb`, graph variants {"train"} and {}, signatures "default" and "image_feature_vector", as
  `imagenet/resnet_v1_50/feature_vector/1` has them);
- keras_*: Keras applications (include_top=False, pooling="avg") saved by tf.saved_model.save; keras_ResNet50_nchw
  built with the channels_first image data format;
- signature_only: a SavedModel with a serving signature and no `__call__`, not TF1-Hub format (hub.KerasLayer cannot
  run it as a feature vector);
- feature_maps: Keras' ResNet50 without pooling ([batch, h, w, 2048], not a feature vector).

`python tests/savedmodels.py OUT KIND...` makes each in OUT/KIND (a child process: the tests' own process keeps no
TF-Slim shim, TF1 graph or image data format) and prints {KIND: path} as JSON."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve()
ROOT = HERE.parents[1]
SIZE = 64


def make(out: Path, *kinds: str, timeout: float | None = None) -> dict:
    from conftest import scaled  # this machine's bound (the test process's; the child never imports it)

    r = subprocess.run([sys.executable, str(HERE), str(out), *kinds], capture_output=True, text=True,
                       timeout=timeout or scaled(1200), cwd=ROOT)
    assert r.returncode == 0, r.stderr[-3000:]
    return json.loads(r.stdout.strip().splitlines()[-1])


def _feature_module(fn, spec):
    import tensorflow as tf

    class FeatureVector(tf.Module):
        def __init__(self):
            super().__init__()
            self._fn, self._variables = fn, list(getattr(fn, "variables", []))

        @tf.function(input_signature=[spec])
        def __call__(self, images):
            return self._fn(images)

    return FeatureVector()


def slim_tf2(out: Path) -> None:
    import tensorflow as tf

    from xeontl.experiment.references import slim_features

    spec = tf.TensorSpec([None, None, None, 3], tf.float32)
    tf.saved_model.save(_feature_module(tf.compat.v1.wrap_function(slim_features, [spec]), spec), str(out))


def nchw(graph_def):
    """GRAPH_DEF with every NHWC Conv2D computed in NCHW: transpose in, the convolution with its strides and
    dilations in NCHW positions, transpose out under the convolution's own name (its consumers are unchanged)."""
    import tensorflow as tf
    from tensorflow.core.framework import graph_pb2, node_def_pb2

    out = graph_pb2.GraphDef()
    out.versions.CopyFrom(graph_def.versions)
    out.library.CopyFrom(graph_def.library)
    for name, perm in (("nchw_perm/in", [0, 3, 1, 2]), ("nchw_perm/out", [0, 2, 3, 1])):
        out.node.append(_const(name, perm))
    for node in graph_def.node:
        if node.op != "Conv2D" or node.attr["data_format"].s not in (b"", b"NHWC"):
            out.node.append(node)
            continue
        conv = node_def_pb2.NodeDef()
        conv.CopyFrom(node)
        conv.name = node.name + "/nchw"
        conv.input[0] = node.name + "/to_nchw"
        conv.attr["data_format"].s = b"NCHW"
        for key in ("strides", "dilations"):
            v = list(node.attr[key].list.i) or [1, 1, 1, 1]
            del conv.attr[key].list.i[:]
            conv.attr[key].list.i.extend([v[0], v[3], v[1], v[2]])
        for name, src, perm in ((node.name + "/to_nchw", node.input[0], "nchw_perm/in"),
                                (node.name, conv.name, "nchw_perm/out")):
            t = node_def_pb2.NodeDef(name=name, op="Transpose", input=[src, perm])
            t.attr["T"].CopyFrom(node.attr["T"])
            t.attr["Tperm"].type = tf.int32.as_datatype_enum
            out.node.append(t)
            if name.endswith("/to_nchw"):
                out.node.append(conv)
    return out


def _const(name, values):
    import tensorflow as tf
    from tensorflow.core.framework import node_def_pb2

    node = node_def_pb2.NodeDef(name=name, op="Const")
    node.attr["dtype"].type = tf.int32.as_datatype_enum
    node.attr["value"].tensor.CopyFrom(tf.make_tensor_proto(values, tf.int32))
    return node


def slim_tf2_nchw(out: Path) -> None:
    import tensorflow as tf
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    from xeontl.experiment.references import slim_features

    spec = tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)
    frozen = convert_variables_to_constants_v2(tf.compat.v1.wrap_function(slim_features, [spec]))
    gd = nchw(frozen.graph.as_graph_def())
    inp, outp = frozen.inputs[0].name, frozen.outputs[0].name

    def imported(images):
        return tf.compat.v1.import_graph_def(gd, input_map={inp: images}, return_elements=[outp], name="")[0]

    tf.saved_model.save(_feature_module(tf.compat.v1.wrap_function(imported, [spec]), spec), str(out))


def slim_tf1_hub(out: Path) -> None:
    import tensorflow as tf
    import tensorflow_hub as hub

    from xeontl.experiment.references import slim_features

    def module_fn(is_training=False):
        images = tf.compat.v1.placeholder(tf.float32, [None, None, None, 3], name="images")
        feats = slim_features(images, is_training)
        for name in ("default", "image_feature_vector"):
            hub.add_signature(name, inputs={"images": images}, outputs={"default": feats})

    spec = hub.create_module_spec(module_fn, tags_and_args=[({"train"}, {"is_training": True}),
                                                           (set(), {"is_training": False})],
                                  drop_collections=["resnet_v1_50/_end_points"])  # as TF-Hub's exporter had to
    with tf.Graph().as_default():
        module = hub.Module(spec)
        with tf.compat.v1.Session() as sess:
            sess.run(tf.compat.v1.global_variables_initializer())
            module.export(str(out), sess)


def keras(app: str, out: Path, pooling="avg", channels_first=False) -> None:
    import tensorflow as tf

    if channels_first:
        tf.keras.backend.set_image_data_format("channels_first")
    shape = (3, SIZE, SIZE) if channels_first else (SIZE, SIZE, 3)
    net = getattr(tf.keras.applications, app)(weights=None, include_top=False, input_shape=shape, pooling=pooling)
    if channels_first:  # a feature-vector model still takes [batch, h, w, 3] images
        inp = tf.keras.Input((SIZE, SIZE, 3))
        net = tf.keras.Model(inp, net(tf.keras.layers.Permute((3, 1, 2))(inp)))
        tf.keras.backend.set_image_data_format("channels_last")
    tf.saved_model.save(net, str(out))


def signature_only(out: Path) -> None:
    import tensorflow as tf

    class Classifier(tf.Module):
        def __init__(self):
            super().__init__()
            self.w = tf.Variable(tf.ones([3, 3, 3, 8]))

        @tf.function(input_signature=[tf.TensorSpec([None, SIZE, SIZE, 3], tf.float32)])
        def serve(self, images):
            return {"logits": tf.reduce_mean(tf.nn.conv2d(images, self.w, 2, "SAME"), [1, 2])}

    m = Classifier()
    tf.saved_model.save(m, str(out), signatures={"serving_default": m.serve})


KINDS = {
    "slim_tf2": slim_tf2, "slim_tf2_nchw": slim_tf2_nchw, "slim_tf1_hub": slim_tf1_hub,
    "keras_ResNet50": lambda out: keras("ResNet50", out),
    "keras_ResNet50_nchw": lambda out: keras("ResNet50", out, channels_first=True),
    "keras_ResNet50V2": lambda out: keras("ResNet50V2", out),
    "keras_MobileNetV2": lambda out: keras("MobileNetV2", out),
    "signature_only": signature_only,
    "feature_maps": lambda out: keras("ResNet50", out, pooling=None),
}


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "src"))
    target, *kinds = sys.argv[1:]
    made = {}
    for kind in kinds:
        path = Path(target) / kind
        KINDS[kind](path)
        made[kind] = str(path)
    print(json.dumps(made))
