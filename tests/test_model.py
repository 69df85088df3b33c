"""The backbone: ResNet50 v1.5 topology, the real weight loaders on weight files the tests write themselves, and which
network a SavedModel is (its exact convolution signature against references built from the networks' definitions)."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema
import numpy as np
import pytest
import tensorflow as tf

from conftest import scaled
from xeontl.common.errors import UserError
from xeontl.experiment import architectures, config, model


def strides(net, name):
    return net.get_layer(name).strides


@pytest.fixture(scope="module")
def built():
    """The builder's two networks at 64 px, built once (~1.5 s each): the tests that use them only read them."""
    return {v15: model.resnet50(64, v15=v15) for v15 in (True, False)}


def test_v15_puts_the_stride_on_the_3x3_conv(built):
    v15, v1 = built[True], built[False]
    assert strides(v15, "conv3_block1_1_conv") == (1, 1) and strides(v15, "conv3_block1_2_conv") == (2, 2)
    assert strides(v1, "conv3_block1_1_conv") == (2, 2) and strides(v1, "conv3_block1_2_conv") == (1, 1)
    assert v15.output_shape == (None, 2, 2, 2048)
    assert v15.count_params() == v1.count_params() == 23_587_712  # same weights as Keras' ResNet50 notop


def test_random_backbone_is_frozen_and_labelled():
    cfg = config.resolve("smoke")
    info = model.describe_weights(cfg)
    assert info["label"] == "random backbone — not ImageNet" and info["sha256"] is None
    net, bb, head = model.build(cfg, info, tf.zeros((4, 64, 64, 3)))
    assert not bb.trainable and bb.trainable_weights == []
    assert [w.name.split("/")[0] for w in net.trainable_weights] == ["classifier", "classifier"]
    assert head.get_layer("feature_standardization_random_backbone") is not None
    assert head.output.dtype == tf.float32


def test_ranks_that_each_run_a_share_of_the_standardizer_sample_fit_the_whole_samples_statistics():
    """Horovod: each rank runs the backbone on every Nth tile of the sample and the features are gathered; every rank
    then fits what one process fits on the whole sample."""
    cfg = config.resolve("smoke")
    bb = model.backbone(cfg, model.describe_weights(cfg))
    sample = tf.random.uniform((9, 64, 64, 3), seed=1)
    whole = model.feature_standardizer(bb, sample)
    shares = [sample[r::2] for r in range(2)]
    features = [bb.predict(s, verbose=0) for s in shares]
    for rank in range(2):
        got = model.feature_standardizer(bb, shares[rank], gather=lambda mine, me=rank: [
            mine if r == me else features[r] for r in range(2)])
        np.testing.assert_allclose(got.mean.numpy(), whole.mean.numpy(), rtol=1e-4, atol=1e-6)
        np.testing.assert_allclose(got.variance.numpy(), whole.variance.numpy(), rtol=1e-4, atol=1e-6)


def trained_looking_batch_norms(net, seed=0):
    """Batch norm statistics as a trained network has them (a fresh one's are 1, 0, 0, 1: folding them is trivial)."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            n = layer.gamma.shape[0]
            layer.set_weights([rng.uniform(0.5, 1.5, n), rng.normal(0, 0.1, n), rng.normal(0, 0.1, n),
                               rng.uniform(0.5, 2.0, n)])
    return net


def test_keras_h5_weights_load_into_the_v1_topology(tmp_path):
    ref = trained_looking_batch_norms(tf.keras.applications.ResNet50(weights=None, include_top=False,
                                                                     input_shape=(64, 64, 3)))
    h5 = tmp_path / "resnet50_notop.h5"
    ref.save_weights(str(h5))
    cfg = config.resolve("smoke", {"weights": f"keras:{h5}", "fold_batch_norm": False})
    info = model.describe_weights(cfg)
    assert info["kind"] == "keras_h5" and "v1" in info["topology"] and len(info["sha256"]) == 64
    assert info["batch_norm"] == "separate layers"
    inner = model.backbone(cfg, info).get_layer("resnet50_v1")
    assert (inner.get_layer("conv1_conv").get_weights()[0] == ref.get_layer("conv1_conv").get_weights()[0]).all()
    assert model.use_feature_norm(cfg) is False  # real weights keep the paper's bare head
    # folded (the default), the backbone computes what Keras' own ResNet50 computes with these weights
    cfg = config.resolve("smoke", {"weights": f"keras:{h5}"})
    bb = model.backbone(cfg, model.describe_weights(cfg))
    assert not any(isinstance(x, tf.keras.layers.BatchNormalization) for x in bb.get_layer("resnet50_v1").layers)
    x = tf.random.uniform((2, 64, 64, 3), seed=1)
    want = tf.reduce_mean(ref(tf.keras.applications.resnet.preprocess_input(x * 255.0), training=False), [1, 2])
    np.testing.assert_allclose(bb(x).numpy(), want.numpy(), rtol=1e-3, atol=1e-4 * float(tf.reduce_max(want)))


def test_a_fresh_network_is_folded_without_building_it_twice():
    """The random backbone (the demo's) is built folded directly: the same weights as building it with batch norms
    and folding them, so the shortcut changes nothing but the set-up time."""
    want = model.fold_batch_norms(model.resnet50(64, seed=7))
    got = model.fresh_folded(64, seed=7)
    assert [w.name for w in got.weights] == [w.name for w in want.weights]
    for a, b in zip(got.get_weights(), want.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=0)


def test_folding_the_batch_norms_keeps_the_networks_function():
    """y = (conv(x) + b - mean) * gamma / sqrt(var + eps) + beta is one convolution: the v1.5 network, folded,
    gives the same features (fp32), with no batch norm left."""
    net = trained_looking_batch_norms(model.resnet50(64), seed=3)
    folded = model.fold_batch_norms(net)
    assert folded.name == net.name and folded.count_params() < net.count_params()
    assert not any(isinstance(x, tf.keras.layers.BatchNormalization) for x in folded.layers)
    x = tf.random.uniform((2, 64, 64, 3), seed=2)
    want, got = net(x, training=False).numpy(), folded(x, training=False).numpy()
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-4 * np.abs(want).max())


def test_savedmodel_feature_vector_loads(tmp_path):
    inp = tf.keras.Input((64, 64, 3))
    feats = tf.keras.layers.GlobalAveragePooling2D()(tf.keras.layers.Conv2D(16, 3)(inp))
    tf.saved_model.save(tf.keras.Model(inp, feats), str(tmp_path / "hub"))
    cfg = config.resolve("smoke", {"weights": f"savedmodel:{tmp_path / 'hub'}"})
    info = model.describe_weights(cfg)
    assert info["kind"] == "savedmodel" and len(info["sha256"]) == 64
    bb = model.backbone(cfg, info)
    assert bb.output_shape == (None, 16) and not bb.trainable_weights
    with pytest.raises(UserError, match="expected 0+"):
        model.describe_weights({**cfg, "weights_sha256": "0" * 64})


@pytest.mark.parametrize("spec,needle", [("keras:/nonexistent.h5", "not found"),
                                         ("imagenet", "must be random, savedmodel:DIR"),
                                         ("savedmodel:/tmp", "not a SavedModel")])
def test_bad_weight_specs(spec, needle):
    with pytest.raises(UserError, match=needle):
        model.describe_weights(config.resolve("smoke", {"weights": spec}))


def test_corrupt_h5_is_one_clear_error(tmp_path):
    bad = tmp_path / "w.h5"
    bad.write_bytes(b"not hdf5")
    cfg = config.resolve("smoke", {"weights": f"keras:{bad}"})
    with pytest.raises(UserError, match="corrupt"):
        model.backbone(cfg, model.describe_weights(cfg))


# ------------------------------------------------------------------------------------------------ which network
REFS = architectures.references()
BY_NAME = {a["name"]: a for a in REFS["architectures"]}


@pytest.mark.parametrize("kind,shape,strides,dilations,fmt,want", [
    ("conv", [3, 3, 64, 64], [1, 2, 2, 1], [1, 1, 1, 1], "NHWC", ["conv", 3, 3, 64, 64, 2, 2, 1, 1]),
    ("conv", [3, 3, 64, 64], [1, 1, 2, 2], [1, 1, 1, 1], "NCHW", ["conv", 3, 3, 64, 64, 2, 2, 1, 1]),
    ("conv", [1, 7, 8, 16], [1, 1, 1, 2], [1, 1, 3, 1], "NCHW", ["conv", 1, 7, 8, 16, 1, 2, 3, 1]),
    ("conv", [1, 7, 8, 16], [1, 1, 2, 1], None, "NHWC", ["conv", 1, 7, 8, 16, 1, 2, 1, 1]),
    ("depthwise", [3, 3, 32, 1], [1, 2, 2, 1], None, "", ["depthwise", 3, 3, 32, 1, 2, 2, 1, 1]),
    ("conv", [3, 3, 64, 64], [1, 2, 2, 1], None, "NDHWC", ValueError),
    ("conv", [3, 3, None, 64], [1, 2, 2, 1], None, "NHWC", ValueError),
])
def test_a_convolution_reads_its_strides_where_its_data_format_keeps_the_spatial_axes(kind, shape, strides,
                                                                                      dilations, fmt, want):
    """The filter is [h, w, in, out] in either format; NCHW keeps h, w strides at 2, 3: an NCHW export's entry is its
    NHWC twin's. A format or filter the reader cannot place is an error (the graph is then "unknown")."""
    if want is ValueError:
        with pytest.raises(ValueError):
            architectures.entry(kind, shape, strides, dilations, fmt)
    else:
        assert architectures.entry(kind, shape, strides, dilations, fmt) == want


def test_the_order_is_by_depth_then_entry_not_by_node_order():
    a, b = ["conv", 1, 1, 64, 256, 1, 1, 1, 1], ["conv", 1, 1, 64, 64, 1, 1, 1, 1]
    c = ["conv", 3, 3, 64, 64, 1, 1, 1, 1]
    one, two = architectures.ordered([(2, a), (3, c), (2, b)]), architectures.ordered([(3, c), (2, b), (2, a)])
    assert one == two == [b, a, c]


class _Residual(tf.Module):  # a strided 3x3, a 1x1 shortcut, their sum into a ReLU: what a ResNet unit is made of
    def __init__(self):
        super().__init__()
        self.a = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same")
        self.b = tf.keras.layers.Conv2D(8, 1, strides=2)
        self(tf.zeros((1, 16, 16, 3)))  # the variables made here, once, never inside a trace

    def __call__(self, x):
        return tf.nn.relu(self.a(x) + self.b(x))


def _keras_unit():  # the functions keep what they read alive (a tf.function holds its variables weakly)
    x = tf.keras.Input((16, 16, 3))
    net = tf.keras.Model(x, _Residual()(x))
    return tf.function(lambda t: net(t, training=False)), net


def _in_a_cond():
    unit = _Residual()
    return tf.function(lambda t: tf.cond(tf.reduce_sum(t) > 0, lambda: unit.a(t), lambda: unit.b(t))), unit


def _nested_call():
    unit = _Residual()
    inner = tf.function(unit.__call__)
    return tf.function(lambda t: inner(t)), unit


@pytest.mark.parametrize("make,calls", [(_keras_unit, False), (_in_a_cond, True), (_nested_call, True)],
                         ids=["a traced Keras model: its own graph", "convolutions in a tf.cond's branches: frozen",
                              "a nested tf.function: frozen"])
def test_a_graph_is_frozen_before_reading_exactly_when_an_op_calls_a_function(make, calls):
    """signature_of_function reads a graph as it is where no op calls a function (freezing ~25M weights cost 3.5 s
    for nothing: the variables' reads carry their shapes), else freezes it first (a cond's branches, a nested call:
    convolutions the outer graph does not show). Either way its signature is the frozen graph's."""
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    function, _alive = make()
    fn = function.get_concrete_function(tf.TensorSpec([1, 16, 16, 3]))
    frozen = architectures.signature_of_graph(convert_variables_to_constants_v2(fn).graph)
    assert architectures.calls_functions(fn.graph) is calls
    assert frozen[0] and architectures.signature_of_function(fn) == frozen


def mutations(signature):
    """One-line departures from SIGNATURE: each strided convolution unstrided, each stride moved to the next
    convolution, one convolution dropped, one filter count changed."""
    for i, e in enumerate(signature):
        if e[0] == "add":
            yield "relu moved", signature[:i] + [["add", 1 - e[1]]] + signature[i + 1:]
        elif e[5] > 1:
            yield "unstrided", signature[:i] + [e[:5] + [1, 1] + e[7:]] + signature[i + 1:]
    yield "dropped", signature[:-1]
    yield "wider", [signature[0][:4] + [signature[0][4] * 2] + signature[0][5:]] + signature[1:]


@pytest.mark.parametrize("name", list(BY_NAME))
def test_each_reference_is_named_and_no_near_miss_is(name):
    """Exact: a reference's own signature is named, is the paper's only if it is the paper's, and any one change of
    it, or an op the reader cannot read, is "unknown" (never equal to a reference)."""
    sig = BY_NAME[name]["signature"]
    got = architectures.identify(sig, refs=REFS)
    assert got["architecture"] == name and got["architecture_sha256"] == BY_NAME[name]["signature_sha256"]
    assert got["architecture_is_paper"] is (name == REFS["paper"])
    assert got["convolutions"] == sum(e[0] != "add" for e in sig) == BY_NAME[name]["convolutions"]
    for how, changed in mutations(sig):
        assert architectures.identify(changed, refs=REFS)["architecture"] == "unknown", how
    unknown = architectures.identify(sig, ["Conv3D"], refs=REFS)
    assert unknown["architecture"] == "unknown" and not unknown["architecture_is_paper"]


def test_the_references_differ_where_the_sources_say():
    """TF-Slim's resnet_v1_50 strides the 3x3 of the *last* unit of blocks 1-3 (its shortcut there is a subsample, no
    convolution), NVIDIA's v1.5 the 3x3 of a stage's *first* unit, Keras' ResNet50 (v1) that unit's first 1x1; all
    three have the same 53 convolutions' filters. The paper's is TF-Slim's (docs/paper-runs.md)."""
    def strided(name):
        return [(i, e[1]) for i, e in enumerate(BY_NAME[name]["signature"]) if e[0] != "add" and e[5] == 2]

    slim, nvidia, keras = "TF-Slim resnet_v1_50", "NVIDIA ResNet50 v1.5", "Keras ResNet50 (v1)"
    assert REFS["paper"] == architectures.PAPER == slim
    assert [k for _, k in strided(slim)] == [7, 3, 3, 3]
    assert architectures.identify(BY_NAME[slim]["signature"], refs=REFS)["stride2_convolutions"] == {"7x7": 1, "3x3": 3}
    assert [k for _, k in strided(nvidia)] == [7, 1, 3, 1, 3, 1, 3] and [k for _, k in strided(keras)] == [7] + [1] * 6
    assert all(BY_NAME[n]["convolutions"] == 53 for n in (slim, nvidia, keras))
    # ResNet v2 (pre-activation) has TF-Slim v1's convolutions exactly; its 16 residual joins have no ReLU after them
    v2 = BY_NAME["Keras ResNet50V2"]["signature"]
    assert [e for e in v2 if e[0] != "add"] == [e for e in BY_NAME[slim]["signature"] if e[0] != "add"]
    assert [e for e in v2 if e[0] == "add"] == [["add", 0]] * 16
    assert [e for e in BY_NAME[slim]["signature"] if e[0] == "add"] == [["add", 1]] * 16
    assert len({BY_NAME[n]["signature_sha256"] for n in BY_NAME}) == len(BY_NAME) == 7
    assert set(REFS["versions"]) >= {"keras", "tf-slim"}


def test_the_schema_names_exactly_the_references():
    schema = json.loads((Path(model.__file__).parents[1] / "schemas" / "metrics.schema.json").read_text())
    names = schema["properties"]["weights"]["properties"]["architecture"]["enum"]
    assert set(names) - {"ResNet50 v1.5", "ResNet50 v1"} == set(BY_NAME) | {"unknown"}
    jsonschema.Draft202012Validator.check_schema(schema)
    weights = {**schema["properties"]["weights"], "$defs": schema["$defs"]}
    demo = model.describe_weights(config.resolve("smoke"))
    jsonschema.validate(demo, weights)  # the record the code writes
    for lie in ({"architecture_is_paper": True}, {"architecture": "TF-Slim resnet_v1_50"}):
        with pytest.raises(jsonschema.ValidationError):  # random weights are never the paper's
            jsonschema.validate({**demo, **lie}, weights)
    for name in BY_NAME:
        jsonschema.validate({"kind": "savedmodel", **architectures.identify(BY_NAME[name]["signature"], refs=REFS)},
                            weights)


def test_the_builders_networks_are_the_references_describe_weights_names(built):
    """The demo's random backbone is NVIDIA's v1.5; resnet50(v15=False), into which Keras' ImageNet file loads, is
    Keras' ResNet50 exactly (its signature built from tf.keras.applications in the references)."""
    for v15, name in ((True, model.DEMO), (False, model.KERAS_V1)):
        net = built[v15]
        fn = tf.function(lambda x, net=net: net(x, training=False)).get_concrete_function(tf.TensorSpec([1, 64, 64, 3]))
        sig, unsupported = architectures.signature_of_function(fn)
        assert architectures.identify(sig, unsupported, refs=REFS)["architecture"] == name
    cfg = config.resolve("smoke")
    assert model.describe_weights(cfg)["architecture"] == model.DEMO


@pytest.mark.slow  # builds the seven networks from their definitions (about a minute)
def test_the_committed_references_are_their_definitions_today():
    r = subprocess.run([sys.executable, "-m", "xeontl.experiment.references"], capture_output=True, text=True,
                       timeout=scaled(900))
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]


# Each SavedModel the tests make (tests/savedmodels.py): what it is named, whether it is the paper's.
SAVEDMODELS = [
    ("slim_tf2", "TF-Slim resnet_v1_50", True),
    ("slim_tf2_nchw", "TF-Slim resnet_v1_50", True),
    ("slim_tf1_hub", "TF-Slim resnet_v1_50", True),
    ("keras_ResNet50", "Keras ResNet50 (v1)", False),
    ("keras_ResNet50_nchw", "Keras ResNet50 (v1)", False),
    ("keras_ResNet50V2", "Keras ResNet50V2", False),
    ("keras_MobileNetV2", "Keras MobileNetV2", False),
]
REFUSED = [("signature_only", "non-callable"), ("feature_maps", "not a feature vector")]


@pytest.fixture(scope="module")
def savedmodel_dirs(tmp_path_factory):
    import savedmodels

    return savedmodels.make(tmp_path_factory.mktemp("savedmodels"), *[k for k, *_ in SAVEDMODELS + REFUSED])


@pytest.mark.slow
def test_savedmodels_are_named_by_their_signature(savedmodel_dirs):
    """TF2 SavedModels (NHWC and NCHW), a TF1-Hub module and Keras' applications: each named as what it is, read
    from the graph hub.KerasLayer runs; only TF-Slim's resnet_v1_50 is the paper's."""
    for kind, name, is_paper in SAVEDMODELS:
        got = architectures.architecture_of(savedmodel_dirs[kind])
        assert (got["name"], got["is_paper"]) == (name, is_paper), kind
        assert got["signature_sha256"] == BY_NAME[name]["signature_sha256"], kind


@pytest.mark.slow
def test_tf1_hub_and_tf2_savedmodels_load_and_record_their_architecture_before_training(savedmodel_dirs):
    """The backbone every rank builds loads both formats and fills the weights record then (not rank 0 after
    training); a SavedModel hub.KerasLayer cannot run as a feature vector stops there in one line."""
    for kind in ("slim_tf1_hub", "slim_tf2", "keras_MobileNetV2"):
        cfg = config.resolve("smoke", {"weights": f"savedmodel:{savedmodel_dirs[kind]}"})
        info = model.describe_weights(cfg)
        assert info["architecture"] == "unknown"
        bb = model.backbone(cfg, info)
        name = dict((k, n) for k, n, _ in SAVEDMODELS)[kind]
        assert bb.output_shape[-1] in (2048, 1280) and (info["architecture"], info["architecture_is_paper"]) == (
            name, name == architectures.PAPER), kind
        assert info["architecture_sha256"] == BY_NAME[name]["signature_sha256"]
    for kind, needle in REFUSED:
        cfg = config.resolve("smoke", {"weights": f"savedmodel:{savedmodel_dirs[kind]}"})
        with pytest.raises(UserError, match=needle) as e:
            model.backbone(cfg, model.describe_weights(cfg))
        assert "\n" not in str(e.value), kind
