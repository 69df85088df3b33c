"""--feature-cache: the cached path predicts what the full model predicts, the cache is keyed by what it depends on,
and the paper profile never uses it."""

import json
import sys

import numpy as np
import pytest
import tensorflow as tf

from conftest import run
from xeontl.experiment import config, data, features, model


def build(cfg):
    info = model.describe_weights(cfg)
    ds = data.load(cfg)
    sample = tf.image.resize(ds.train.images[:64].astype("float32") / 255.0, (cfg["image_size"],) * 2)
    net, bb, head = model.build(cfg, info, sample)
    return info, ds, net, bb, head


def test_paper_profile_never_uses_the_cache():
    assert config.resolve("paper")["feature_cache"] is False
    assert config.resolve("demo")["feature_cache"] is False


@pytest.mark.slow  # builds a ResNet50 and runs it: not in the fast tier
def test_cached_features_give_the_same_predictions_as_the_full_model(tmp_path):
    cfg = config.resolve("smoke", {"precision": "fp32", "feature_cache": True, "feature_cache_dir": str(tmp_path),
                                   "feature_cache_views": 1})
    info, ds, net, bb, head = build(cfg)
    cache = features.load_or_build(cfg, bb, info, ds.train, ds.val, show_progress=False)
    assert cache.train.shape == (1, len(ds.train), 2048) and cache.val.shape == (len(ds.val), 2048)
    from_cache = head.predict(cache.val, verbose=0)
    from_images = net.predict(data.pipeline(ds.val, cfg, training=False), verbose=0)
    np.testing.assert_allclose(from_cache, from_images, rtol=1e-4, atol=1e-5)
    assert (from_cache.argmax(1) == from_images.argmax(1)).all()
    # the un-augmented training view is the same features too: only augmentation makes views differ
    plain = features.extract(bb, ds.train, cfg, augment=False)
    np.testing.assert_allclose(head.predict(plain, verbose=0),
                               net.predict(data.pipeline(ds.train, cfg, training=False), verbose=0), atol=1e-5)


@pytest.mark.slow  # builds a ResNet50 and runs it: not in the fast tier
def test_views_differ_and_a_second_load_is_a_hit(tmp_path):
    cfg = config.resolve("smoke", {"feature_cache": True, "feature_cache_dir": str(tmp_path),
                                   "feature_cache_views": 2, "synthetic_train": 32, "synthetic_val": 16})
    info, ds, net, bb, head = build(cfg)
    first = features.load_or_build(cfg, bb, info, ds.train, ds.val, show_progress=False)
    assert not first.info["hit"] and first.info["images_through_backbone"] == 2 * 32 + 16
    assert not np.allclose(first.train[0], first.train[1])  # two independently augmented views
    again = features.load_or_build(cfg, bb, info, ds.train, ds.val, show_progress=False)
    assert again.info["hit"] and again.info["key"] == first.info["key"]
    np.testing.assert_array_equal(again.train, first.train)
    assert [p.name for p in tmp_path.iterdir()] == [f"features-{first.info['key'][:32]}.npz"]  # no temp left


@pytest.mark.parametrize("change", [{"seed": 7}, {"image_size": 96}, {"precision": "fp32"}, {"rotation_factor": 0.1},
                                    {"feature_cache_views": 3}, {"augment": False}])
def test_cache_key_changes_with_every_input(change):
    cfg = config.resolve("smoke")
    info = model.describe_weights(cfg)
    split = data.synthetic_split(1, 0, 8)
    base = features.cache_key(cfg, info, split, split)
    assert features.cache_key({**cfg, **change}, model.describe_weights({**cfg, **change}), split, split) != base
    other = data.synthetic_split(1, 8, 8)  # other images
    assert features.cache_key(cfg, info, other, split) != base
    assert features.cache_key(cfg, {**info, "sha256": "ab" * 32}, split, split) != base  # other weights


@pytest.mark.slow
def test_feature_cache_training_run_reports_the_cache_and_evaluates_on_images(tmp_path):
    out = tmp_path / "run"
    r = run([sys.executable, "-m", "xeontl", "train", "--profile", "smoke", "--epochs", "3", "--feature-cache", "true",
             "--feature-cache-dir", str(tmp_path / "cache"), "--output", str(out)])
    assert r.returncode == 0, r.stderr[-2000:]
    assert "feature cache (2 views + val)" in r.stderr  # the progress bar
    m = json.loads((out / "metrics.json").read_text())
    fc = m["feature_cache"]
    assert fc["views"] == 2 and not fc["hit"] and fc["build_seconds"] > 0
    assert any("feature cache" in n for n in m["notices"])
    assert m["per_epoch"][0]["elapsed_seconds"] > m["feature_cache"]["build_seconds"]  # time-to-accuracy clock
    assert 0 <= m["final_val_accuracy"] <= 1 and sum(map(sum, m["confusion_matrix"])) == 80
