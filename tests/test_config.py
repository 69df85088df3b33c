"""Profiles: the paper profile holds every value of shared/paper.md; bad values fail with one clear line."""

import pytest

from conftest import one_line_error, run, scaled
from xeontl.common.errors import UserError
from xeontl.experiment import config

PAPER = config.resolve("paper")


@pytest.mark.parametrize("key,value", [
    ("dataset", "tfds"),                      # TFDS colorectal_histology
    ("train_split", "train[:80%]"),           # 4000 images
    ("val_split", "train[80%:]"),             # 1000 images
    ("precision", "bf16"),                    # BF16 auto mixed precision
    ("amp", "onednn"),                        # ... via TF's oneDNN AMP rewrite
    ("patience", 10),                         # early stopping patience 10
    ("learning_rate", 0.001),                 # the "printed" reading: 0.001 x 2 workers = the printed 0.002
    ("lr_schedule", "none"),                  # no schedule but the warm-up
    ("lr_scaling", "linear"),                 # scaled by the number of workers
    ("warmup_epochs", 3),                     # LR warm-up over 3 epochs
    ("backward_passes_per_step", 5),          # gradients averaged every 5 steps
    ("augment", True),                        # flips + rotation
    ("image_size", 224),                      # Intel's pipeline input size
    ("weights", "savedmodel:assets/weights/resnet50_v1_5"),  # ImageNet weights, staged by checksum
    ("feature_norm", "auto"),                 # -> off for real weights: the paper's bare head
])
def test_paper_profile_value(key, value):
    assert PAPER[key] == value


def test_paper_epochs_bound_allows_paper_convergence():
    assert PAPER["epochs"] >= 45 + 7  # ~45 epochs with a spread of 6-7 must fit under the cap


def test_profiles_inherit_and_override():
    demo, smoke = config.resolve("demo"), config.resolve("smoke")
    assert demo["dataset"] == smoke["dataset"] == "synthetic"
    assert demo["weights"] == "random"
    assert demo["backward_passes_per_step"] == 5  # inherited from paper
    assert config.resolve("demo", {"epochs": "3"})["epochs"] == 3


@pytest.mark.parametrize("overrides,needle", [
    ({"epochs": 0}, "epochs"), ({"batch_size": -1}, "batch_size"), ({"patience": -1}, "patience"),
    ({"image_size": 16}, "image_size"), ({"epochs": "ten"}, "epochs"), ({"precision": "fp16"}, "precision"),
    ({"dataset": "imagenet"}, "dataset"), ({"nonsense": 1}, "unknown config key"),
    # TFDS's ReadInstruction refuses these ("train[:]": a slice with neither bound), so the config does
    ({"train_split": "train[:]"}, "train_split"), ({"val_split": "test[80%:]"}, "val_split"),
    ({"train_split": "train[:80%]+train[90%:]"}, "train_split"),
])
def test_bad_values_are_refused(overrides, needle):
    with pytest.raises(UserError, match=needle):
        config.resolve("demo", overrides)


def test_unknown_profile():
    with pytest.raises(UserError, match="unknown profile 'nope'.*demo"):
        config.resolve("nope")


@pytest.mark.parametrize("args,needle", [
    (["--profile", "nope"], "unknown profile"), (["--epochs", "0"], "epochs=0"), (["--batch-size", "x"], "batch_size"),
])
def test_cli_bad_input_is_one_line(args, needle):
    one_line_error(run(["python", "-m", "xeontl", "config", *args], timeout=scaled(60)), needle)
