"""Profiles (configs/*.toml) -> one validated, resolved config.

Every field has one entry in FIELDS: its type, its check and its help text. The CLI generates one `--flag` per field
from it, so every profile value can be overridden and nothing is accepted unchecked.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from importlib import resources
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: the paper stack's 3.9 has tomllib's own source, tomli
    import tomli as tomllib
from typing import Any, Callable

from xeontl.common.errors import UserError


@dataclasses.dataclass(frozen=True)
class Field:
    type: type
    help: str
    check: Callable[[Any], str | None] = lambda v: None  # returns what is wrong, or None
    default: Any = None
    # Part of the training recipe: a run whose value differs from a protocol's (the paper's, the kit's) is not a run of
    # that protocol, and the verdict names the field. Not recipe: what the run reads (dataset, weights: their own
    # facts, from their identity), where it writes, the seed (repeats differ by it), how it is logged, and exact
    # rewrites of the same math (fold_batch_norm). A run recorded before a field existed ran with its default.
    recipe: bool = False


def _finite(v):
    return None if not isinstance(v, float) or math.isfinite(v) else "must be a finite number"


def _positive(v):
    return _finite(v) or (None if v > 0 else "must be > 0")


def _non_negative(v):
    return _finite(v) or (None if v >= 0 else "must be >= 0")


def _between(low, high, why=""):
    return lambda v: _finite(v) or (None if low <= v <= high else f"must be between {low} and {high}{why}")


def _sha256(v):
    return None if re.fullmatch(r"[0-9a-f]{64}", v) else "must be 64 lowercase hex digits (a sha256)"


def _sha256_or_empty(v):
    return None if v == "" or not _sha256(v) else _sha256(v) + ", or empty"


def _split(v):
    # colorectal_histology has one split, `train`; TFDS's slicing: train, train[:80%], train[80%:], train[10:20]
    return None if re.fullmatch(r"train(\[(-?\d+%?:(-?\d+%?)?|:-?\d+%?)\])?", v) else \
        "must be a TFDS slice of the train split, e.g. train[:80%] or train[80%:]"


def _weights(v):
    kind, sep, path = v.partition(":")
    if v == "random" or (sep and kind in ("savedmodel", "keras") and path):
        return None
    return "must be random, savedmodel:DIR (a TF-Hub feature-vector SavedModel) or keras:FILE.h5"


def _one_of(*choices):
    return lambda v: None if v in choices else f"must be one of {', '.join(choices)}"


# Seeds: numpy's legacy seeding (tf.keras.utils.set_random_seed) takes < 2**32; --repeats adds up to N-1.
SEED_MAX = 2**31 - 1


def _image_size(v):
    # ResNet50 downsamples by 32: below 32 px the last stage has no spatial extent left to pool.
    return None if 32 <= v <= 1024 else "must be between 32 and 1024 pixels (ResNet50 downsamples by 32)"


def _verbosity(v):
    return None if v in (0, 1, 2) else "must be 0, 1 or 2"


def _dataset(v):
    if v in ("tfds", "synthetic") or (v.startswith("folder:") and len(v) > len("folder:")):
        return None
    return "must be tfds, synthetic or folder:PATH (a Kather class-folder tree or its .zip)"


def _fraction(v):
    return None if 0 <= v <= 1 else "must be between 0 and 1"


FIELDS: dict[str, Field] = {
    "description": Field(str, "what this profile is for", default=""),
    # data
    "dataset": Field(str, "tfds | synthetic | folder:PATH", _dataset, "synthetic"),
    "data_dir": Field(str, "TFDS data dir (default: $TFDS_DATA_DIR or ~/tensorflow_datasets); for dataset=synthetic "
                      "the dir of its cached set (default: ~/.cache/xeontl/synthetic)", default=""),
    "manual_dir": Field(str, "folder holding a pre-downloaded Kather_texture_2016_image_tiles_5000.zip", default=""),
    "archive_sha256": Field(str, "expected sha256 of a folder:*.zip dataset (default: the upstream archive's)", _sha256,
                            default="936d0b95ae0f04f1f7b18a2b7e8c55776c3e887d102f645bcee752d1a6626a32"),
    "train_split": Field(str, "TFDS split for training", _split, default="train[:80%]", recipe=True),
    "val_split": Field(str, "TFDS split for validation", _split, default="train[80%:]", recipe=True),
    # at most 50,000 tiles (3.4 GB in memory, on every rank)
    "synthetic_train": Field(int, "synthetic training images (all ranks together)", _between(1, 50_000), 1600),
    "synthetic_val": Field(int, "synthetic validation images", _between(1, 50_000), 400),
    "image_size": Field(int, "backbone input size in pixels (images are resized from 150)", _image_size, 224,
                        recipe=True),
    "augment": Field(bool, "random flips + rotation on the fly", default=True, recipe=True),
    "rotation_factor": Field(float, "RandomRotation factor (fraction of 2*pi)", _fraction, 0.5, recipe=True),
    "seed": Field(int, "seed for data order, synthetic data and head init", _between(0, SEED_MAX), 42),
    # model
    "weights": Field(str, "random | savedmodel:DIR (TF-Hub feature vector) | keras:FILE.h5 (ImageNet v1)", _weights,
                     default="random"),
    "weights_sha256": Field(str, "expected sha256 of the weight file/dir (checked when set)", _sha256_or_empty,
                            default=""),
    "fold_batch_norm": Field(bool, "fold the frozen backbone's batch norms into its convolutions (exact in inference; "
                             "Keras-built backbones: random and keras:; a SavedModel runs as saved)", default=True),
    "feature_norm": Field(str, "standardize backbone features before the head: auto (only for random weights) | on "
                          "| off",
                          _one_of("auto", "on", "off"), "auto", recipe=True),
    # training
    "precision": Field(str, "bf16 | fp32 | auto (bf16 where the CPU has oneDNN BF16 kernels, else fp32; decided by "
                            "each rank and recorded in metrics.json)", _one_of("bf16", "fp32", "auto"), "bf16",
                       recipe=True),
    "amp": Field(str, "how bf16 is applied: onednn (TF's auto mixed precision graph rewrite) | keras "
                 "(mixed_bfloat16 policy)",
                 _one_of("onednn", "keras"), "onednn", recipe=True),
    "epochs": Field(int, "maximum epochs (early stopping usually ends sooner)", _between(1, 100_000), 100, recipe=True),
    "patience": Field(int, "early-stopping patience on val_loss", _between(0, 100_000), 10, recipe=True),
    "min_delta": Field(float, "smallest val_loss decrease that counts as an improvement", _non_negative, 0.0,
                       recipe=True),
    "batch_size": Field(int, "images per step per worker", _between(1, 65_536), 32, recipe=True),
    "optimizer": Field(str, "adam | sgd", _one_of("adam", "sgd"), "adam", recipe=True),
    "learning_rate": Field(float, "base learning rate (one worker)", _between(1e-12, 100.0), 0.001, recipe=True),
    "lr_scaling": Field(str, "how LR grows with workers: linear (base x N) | none", _one_of("linear", "none"),
                        "linear", recipe=True),
    "lr_schedule": Field(str, "none | plateau: Keras' ReduceLROnPlateau as Intel's kit sets it (val_loss, factor 0.2, "
                         "patience 5, cooldown 1, min_lr 1e-10)", _one_of("none", "plateau"), "none", recipe=True),
    "warmup_epochs": Field(int, "LR warm-up epochs (Horovod runs)", _between(0, 100_000), 3, recipe=True),
    "backward_passes_per_step": Field(int, "local gradient accumulation before each allreduce (Horovod runs)",
                                      _between(1, 100_000), 5, recipe=True),
    "steps_per_epoch": Field(int, "cap on steps per epoch (0: the whole shard)", _between(0, 10_000_000), 0,
                             recipe=True),
    # opt-in speed path (never the paper profile's default): train the head on cached backbone features
    "feature_cache": Field(bool, "compute the frozen backbone's features once (val + K augmented views of train) "
                           "and train the head on them; not the paper's protocol", default=False, recipe=True),
    "feature_cache_views": Field(int, "K: augmented views of each training image in the feature cache "
                                 "(epoch e trains on view e mod K)", _between(1, 64), 2, recipe=True),
    "feature_cache_dir": Field(str, "where cached features live (default: $XEONTL_CACHE_DIR or ~/.cache/xeontl)",
                               default=""),
    "verbose": Field(int, "Keras progress output on rank 0: 0 none, 1 bar, 2 one line per epoch", _verbosity, 2),
}

# Keys a profile file may hold beyond FIELDS: its parent, and the values a field may take where the protocol itself is
# ambiguous (`readings`: field -> {reading name: value}); a run at any of them is a run of the protocol, and says which.
_META_KEYS = {"inherit", "readings"}


def profile_names() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files("xeontl.configs").iterdir() if p.name.endswith(".toml"))


def _read_profile(name: str, seen: tuple[str, ...] = ()) -> dict[str, Any]:
    if name not in profile_names():
        raise UserError(f"unknown profile {name!r}: choose one of {', '.join(profile_names())}")
    if name in seen:
        raise UserError(f"profile '{name}' inherits from itself ({' -> '.join(seen + (name,))})")
    raw = tomllib.loads(resources.files("xeontl.configs").joinpath(f"{name}.toml").read_text())
    parent = raw.pop("inherit", None)
    base = _read_profile(parent, seen + (name,)) if parent else {}
    return {**base, **raw}


def readings(profile: str) -> dict[str, dict[str, Any]]:
    """The profile's readings of ambiguous values: field -> {reading name: value} (configs/paper.toml)."""
    return {k: {name: coerce(k, v) for name, v in values.items()}
            for k, values in (_read_profile(profile).get("readings") or {}).items()}


def recipe_differences(cfg: dict[str, Any], protocol: str) -> tuple[list[str], dict[str, str]]:
    """How a run's resolved config departs from a protocol's (a profile: paper, kit), recipe fields only (Field.recipe):
    (["learning_rate 0.5 != paper 0.001", ...], {field: reading name} for values that are one of the protocol's
    readings of an ambiguous value). A field the run's config lacks (recorded before the field existed) ran with its
    default. Precision is not compared here: what a run *ran* at is its own fact (a CPU without BF16 runs auto as
    fp32)."""
    want = resolve(protocol)
    known = readings(protocol)
    differ, read = [], {}
    for key, f in FIELDS.items():
        if not f.recipe or key == "precision":
            continue
        try:
            got = coerce(key, cfg.get(key, f.default))
        except UserError:
            got = cfg.get(key)
        if got == want[key]:
            name = next((n for n, v in known.get(key, {}).items() if v == got), None)
            if name:
                read[key] = name
            continue
        name = next((n for n, v in known.get(key, {}).items() if v == got), None)
        if name:
            read[key] = name
        else:
            differ.append(f"{key} {got!r} != {protocol} {want[key]!r}")
    return differ, read


def coerce(key: str, value: Any) -> Any:
    """Parse a CLI string or check a TOML value against the field's type."""
    f = FIELDS[key]
    if isinstance(value, str) and f.type is not str:
        try:
            if f.type is bool:
                if value.lower() not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                value = value.lower() in ("true", "1", "yes")
            else:
                value = f.type(value)
        except ValueError:
            raise UserError(f"{key}: {value!r} is not a valid {f.type.__name__}") from None
    if f.type is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if not isinstance(value, f.type) or (f.type is int and isinstance(value, bool)):
        raise UserError(f"{key}: expected {f.type.__name__}, got {value!r}")
    return value


def resolve(profile: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """Profile + overrides -> the complete, checked config (every FIELD present)."""
    values = _read_profile(profile)
    unknown = sorted(set(values) - set(FIELDS) - _META_KEYS)
    if unknown:
        raise UserError(f"profile '{profile}' has unknown key(s) {', '.join(unknown)}: valid keys are in "
                        f"xeontl/experiment/config.py")
    for key in overrides or {}:
        if key not in FIELDS:
            raise UserError(f"unknown config key '{key}': valid keys are {', '.join(FIELDS)}")
    values.update({k: v for k, v in (overrides or {}).items() if v is not None})
    return _checked(profile, {key: values.get(key, f.default) for key, f in FIELDS.items()})


def _checked(profile: str, values: dict[str, Any]) -> dict[str, Any]:
    cfg = {"profile": profile}
    for key in FIELDS:
        value = coerce(key, values[key])
        if isinstance(value, str) and re.search(r"[\x00-\x1f\x7f]", value):
            raise UserError(f"{key}={value!r} has a control character (a newline?): give it on one line")
        problem = FIELDS[key].check(value)
        if problem:
            raise UserError(f"{key}={value!r} {problem}")
        cfg[key] = value
    return cfg


def load(path: Path | str) -> dict[str, Any]:
    """A run's resolved config.json, used as is: every field present, nothing unknown, every value checked.
    This is how the ranks get their config: the launcher resolves it once, the ranks never resolve it again."""
    from xeontl.common import records

    path = Path(path)
    try:  # a regular file, bounded, its schema's fields and types (schemas/config.schema.json); then each value checked
        raw = records.read_record(path, "config")
    except UserError as e:
        raise UserError(f"{e}: give a run's config.json (`python -m xeontl config --profile NAME > FILE` writes one)") \
            from None
    if not isinstance(raw, dict) or not isinstance(raw.get("profile"), str):
        raise UserError(f"config {path} has no profile name: give a resolved config (`python -m xeontl config`)")
    unknown = sorted(set(raw) - set(FIELDS) - {"profile"})
    missing = sorted(set(FIELDS) - set(raw))
    if unknown or missing:
        raise UserError(f"config {path} is not a resolved config of this version "
                        f"({'unknown: ' + ', '.join(unknown) if unknown else 'missing: ' + ', '.join(missing)}): "
                        f"write it again with `python -m xeontl config`")
    return _checked(raw["profile"], raw)


def save(cfg: dict[str, Any], path: Path) -> None:
    path.write_text(json.dumps(cfg, indent=1) + "\n")
