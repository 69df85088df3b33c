"""The backbone: ResNet50 v1.5 topology, and the real weight loaders on weight files the tests write themselves."""

import numpy as np
import pytest
import tensorflow as tf

from xeontl.common.errors import UserError
from xeontl.experiment import config, model


def strides(net, name):
    return net.get_layer(name).strides


def test_v15_puts_the_stride_on_the_3x3_conv():
    v15, v1 = model.resnet50(64, v15=True), model.resnet50(64, v15=False)
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
