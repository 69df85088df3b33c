"""The three data sources (TFDS, the upstream Kather archive, synthetic H&E-like textures) and the tf.data pipeline.

All sources end as the same thing: uint8 images of 150x150x3 and int labels in TFDS's class order, held in memory
(5000 decoded tiles are 337 MB), so sharding, class counts and hashes are exact and cheap.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import logging
import os
import zipfile
from pathlib import Path

import numpy as np

from xeontl import SYNTHETIC_NOTICE
from xeontl.common.errors import UserError
from xeontl.experiment import textures
from xeontl.experiment.textures import TILE
from xeontl.experiment.tfds_order import TFDS_SPLIT, tfds_extracted, tfds_record_order, tfds_slice

log = logging.getLogger(__name__)

# TFDS colorectal_histology label order; the archive's folders 01_TUMOR ... 08_EMPTY are in the same order.
CLASS_NAMES = ("tumor", "stroma", "complex", "lympho", "debris", "mucosa", "adipose", "empty")
KATHER_FOLDERS = tuple(f"{i + 1:02d}_{n.upper()}" for i, n in enumerate(CLASS_NAMES))
ARCHIVE_NAME = "Kather_texture_2016_image_tiles_5000.zip"
ARCHIVE_BYTES = 258_098_431
ARCHIVE_SHA256 = "936d0b95ae0f04f1f7b18a2b7e8c55776c3e887d102f645bcee752d1a6626a32"
SYNTHETIC_VERSION = "1"  # bump when the generator's output changes; recorded in provenance


@dataclasses.dataclass
class Split:
    images: np.ndarray  # (n, 150, 150, 3) uint8
    labels: np.ndarray  # (n,) int32
    keys: tuple | None = None  # the Kather tiles' TFDS keys, '<class name>/<file name>' (what orders TFDS's records)

    def __len__(self):
        return len(self.labels)

    def class_counts(self) -> list[int]:
        return np.bincount(self.labels, minlength=len(CLASS_NAMES)).tolist()

    def shard(self, size: int, rank: int) -> "Split":
        """Disjoint 1/size of the examples (the paper's halves for 2 workers), stratified by class: each class is
        dealt out in turn, so every worker sees every class (a plain stride would give a worker only some classes
        whenever labels are periodic, as the synthetic ones are)."""
        by_class = np.argsort(self.labels, kind="stable")
        return self.take(np.sort(by_class[rank::size]))

    def take(self, idx) -> "Split":
        """The examples at the indices IDX, in that order (their keys with them)."""
        idx = np.asarray(idx, int)
        keys = None if self.keys is None else tuple(np.asarray(self.keys)[idx])
        return Split(self.images[idx], self.labels[idx], keys)

    def sha256(self) -> str:
        h = hashlib.sha256(self.images.tobytes())
        h.update(self.labels.tobytes())
        return h.hexdigest()

    def tile_digests(self) -> list[str]:
        """One sha256 per example, of its label (one byte), its key where it has one (the tile's file name, which
        decides its place in TFDS's record order: a renamed tile is another split) and its decoded pixels: what the
        example is, whatever file or record order it came in."""
        keys = self.keys or [""] * len(self)
        return [hashlib.sha256(bytes([int(label)]) + key.encode() + b"\0" + image.tobytes()).hexdigest()
                for image, label, key in zip(self.images, self.labels, keys)]


def content_sha256(*splits: Split) -> str:
    """The data set's identity from its content: sha256 over the sorted per-example digests of every split together.
    The upstream archive (its TIFFs decoded) and TFDS's build of it (lossless PNG records, in TFDS's own order and
    split, each with its file name) give the same value; a changed pixel, a relabelled or renamed tile, a missing or
    an extra one give another."""
    h = hashlib.sha256()
    for d in sorted(d for split in splits for d in split.tile_digests()):
        h.update(bytes.fromhex(d))
    return h.hexdigest()


# What `prepare_tfds` leaves beside a TFDS build it made from a checked archive: the archive and the content it gave.
TFDS_ORIGIN = "xeontl-origin.json"


@dataclasses.dataclass
class Dataset:
    train: Split
    val: Split
    info: dict  # name, source, version, checksums, notices: goes into provenance


def sha256_file(path: Path, chunk: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


# ----------------------------------------------------------------------------------------------- synthetic textures
def synthetic_image(seed: int, index: int) -> tuple[np.ndarray, int]:
    """One 150x150 H&E-like tile; class = index % 8, fully determined by (seed, index) (experiment/textures.py)."""
    label = index % len(CLASS_NAMES)
    return textures.paint(CLASS_NAMES[label], np.random.default_rng([seed, index, int(SYNTHETIC_VERSION)])), label


def synthetic_split(seed: int, start: int, count: int) -> Split:
    images = np.empty((count, TILE, TILE, 3), np.uint8)
    labels = np.empty(count, np.int32)
    for j in range(count):
        images[j], labels[j] = synthetic_image(seed, start + j)
    return Split(images, labels)


# Validation indices start far from training's so the two never share a tile.
_SYNTHETIC_VAL_OFFSET = 1_000_000


def synthetic_cache_file(cfg) -> Path | None:
    """Where the synthetic set of this config is kept once made: named by everything that determines it (the
    generator's version, the seed, the counts), so a changed generator or config never reads a stale set."""
    if not cfg["data_dir"]:
        return None
    return Path(cfg["data_dir"]) / (f"synthetic-v{SYNTHETIC_VERSION}-seed{cfg['seed']}-"
                                    f"{cfg['synthetic_train']}-{cfg['synthetic_val']}.npz")


def _synthesize(cfg) -> tuple[Split, Split]:
    return (synthetic_split(cfg["seed"], 0, cfg["synthetic_train"]),
            synthetic_split(cfg["seed"], _SYNTHETIC_VAL_OFFSET, cfg["synthetic_val"]))


def write_synthetic_cache(cfg) -> Path:
    """Make the set once (10-30 s of numpy for the demo's 2000 tiles; the launcher does it on the host before the
    run), written whole under a temporary name: a reader sees the complete file or none."""
    path = synthetic_cache_file(cfg)
    path.parent.mkdir(parents=True, exist_ok=True)
    train, val = _synthesize(cfg)
    tmp = path.with_name(path.name + f".{os.getpid()}.part")
    with open(tmp, "wb") as f:
        np.savez(f, train_images=train.images, train_labels=train.labels, val_images=val.images,
                 val_labels=val.labels)
    os.replace(tmp, path)
    return path


def load_synthetic(cfg) -> Dataset:
    """The cached set when the launcher made it (0.6 s to read the demo's 120 MB), else made here (10-30 s)."""
    path = synthetic_cache_file(cfg)
    if path is not None and path.is_file():
        with np.load(path) as z:
            train = Split(z["train_images"], z["train_labels"])
            val = Split(z["val_images"], z["val_labels"])
    else:
        path = None
        train, val = _synthesize(cfg)
    info = {"name": "synthetic", "source": f"xeontl.experiment.data.synthetic_image v{SYNTHETIC_VERSION}",
            "generator_version": SYNTHETIC_VERSION, "seed": cfg["seed"], "notice": SYNTHETIC_NOTICE,
            "cache_file": str(path) if path else None}
    return Dataset(train, val, info)


# ----------------------------------------------------------------------------------------------- TFDS
def tfds_dirs(cfg) -> tuple[str, str]:
    """(data_dir, manual_dir) the config means: its own, else $TFDS_DATA_DIR or ~/tensorflow_datasets (TFDS's)."""
    data_dir = cfg["data_dir"] or os.environ.get("TFDS_DATA_DIR") or str(Path.home() / "tensorflow_datasets")
    return data_dir, cfg["manual_dir"] or str(Path(data_dir) / "downloads" / "manual")


def prepare_tfds(cfg):
    """TFDS's colorectal_histology builder, prepared: from the archive in manual_dir (its sha256 checked first) or by
    TFDS's own download manager (which checks the download against the checksum TFDS registers for it). A build made
    here is recorded beside TFDS's files (TFDS_ORIGIN: the archive's sha256 and the content it gave), which is how a
    later run knows its TFDS data are that archive's. Returns (builder, data_dir)."""
    import requests
    import tensorflow_datasets as tfds
    from tensorflow_datasets.core.download.download_manager import NonMatchingChecksumError

    data_dir, manual_dir = tfds_dirs(cfg)
    builder = tfds.builder("colorectal_histology", data_dir=data_dir)
    manual_archive = Path(manual_dir) / ARCHIVE_NAME
    if builder.is_prepared():
        return builder, data_dir
    if manual_archive.is_file():
        # TFDS takes a file from manual_dir by its name and does not verify it: we do (measured: a fixture archive
        # with another sha256 was prepared without a word).
        digest = sha256_file(manual_archive)
        if digest != cfg["archive_sha256"]:
            raise UserError(f"{manual_archive} has sha256 {digest}, expected {cfg['archive_sha256']}: re-download "
                            f"{ARCHIVE_NAME} (or pass --archive-sha256 for a different, known archive)")
    else:  # TFDS downloads it and checks it against the checksum it registers for the URL
        digest = next(iter(builder.url_infos.values())).checksum
    try:
        builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=manual_dir))
    except (OSError, requests.exceptions.RequestException, NonMatchingChecksumError) as e:
        # no network, a refused or broken download, a wrong checksum, an unwritable data dir
        raise UserError(
            f"TFDS colorectal_histology is not prepared in {data_dir} and could not be downloaded "
            f"({type(e).__name__}): put {ARCHIVE_NAME} (sha256 {ARCHIVE_SHA256}) in {manual_dir} "
            f"(`invoke assets`), or use --dataset folder:PATH"
        ) from None
    whole = _tfds_split(builder, "train")
    origin = {"archive_sha256": digest, "content_sha256": content_sha256(whole),
              "examples_per_class": whole.class_counts(), "tfds_version": str(builder.info.version)}
    (Path(builder.data_dir) / TFDS_ORIGIN).write_text(json.dumps(origin, indent=1) + "\n")
    return builder, data_dir


def tfds_key(label: int, file_name: str) -> str:
    """A Kather tile's key as colorectal_histology's builder yields it: '<class name>/<file name>'."""
    return f"{CLASS_NAMES[label]}/{file_name}"


def _tfds_split(builder, split: str) -> Split:
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split=split, shuffle_files=False)
    rows = [(r["image"], r["label"], tfds_key(r["label"], r["filename"].decode())) for r in tfds.as_numpy(ds)]
    images, labels, keys = zip(*rows) if rows else ((), (), ())
    return Split(np.stack(images).astype(np.uint8), np.asarray(labels, np.int32), tuple(keys))


def tfds_origin(builder) -> dict | None:
    from xeontl.common import records

    try:  # a record damaged or planted beside TFDS's files is no origin at all
        return records.read_record(Path(builder.data_dir) / TFDS_ORIGIN, "tfds-origin")
    except UserError:
        return None


def _tfds_keys(builder) -> list[str]:
    """Every record's key in the build's train split ('<class name>/<file name>'), its images left encoded."""
    import tensorflow_datasets as tfds

    ds = builder.as_dataset(split=TFDS_SPLIT, shuffle_files=False, decoders={"image": tfds.decode.SkipDecoding()})
    return [tfds_key(r["label"], r["filename"].decode()) for r in tfds.as_numpy(ds)]


def in_record_order(split: Split) -> Split:
    """SPLIT in TFDS's record order of its keys: how TFDS reads a slice of a build of one shard, and the one order
    whatever the shard count (TFDS interleaves its reads of several shards: 16 records of each in turn)."""
    return split.take(tfds_record_order(list(split.keys)))


def load_tfds(cfg) -> Dataset:
    builder, data_dir = prepare_tfds(cfg)
    specs = (cfg["train_split"], cfg["val_split"])
    keys = _tfds_keys(builder)
    wanted = [tfds_slice(spec, len(keys)) for spec in specs]  # what TFDS refuses: one line before any image is decoded
    order = tfds_record_order(keys)
    splits, split = [], "TFDS's record order"
    for spec, indices in zip(specs, wanted):
        got = _tfds_split(builder, spec)
        # the records a slice holds are the first ones in the order of their keys' hashes, in every build TFDS
        # makes: a build whose records are in another order (another tool's, a reordered one) is not that split
        if sorted(got.keys) != sorted(keys[order[i]] for i in indices):
            split = f"not TFDS's record order: the build's {spec} holds other records than its keys' order gives"
        splits.append(in_record_order(got))
    info = {"name": "colorectal_histology", "source": "tfds", "version": str(builder.info.version),
            "data_dir": data_dir, "splits": list(specs), "split": split,
            "records_sha256": {"train": splits[0].sha256(), "val": splits[1].sha256()},
            "tfds_origin": tfds_origin(builder)}
    return Dataset(splits[0], splits[1], info)


# ----------------------------------------------------------------------------------------------- Kather archive
def _decode_tile(data: bytes, name: str, skipped: list) -> np.ndarray | None:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as im:
            if im.mode != "RGB":
                skipped.append(f"{name}: mode {im.mode}, not RGB")
                return None
            arr = np.asarray(im, np.uint8)
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError, Image.DecompressionBombError) as e:
        # PIL's ways of refusing a damaged file (a bomb, a truncated header, a bad chunk): skipped, never a crash
        skipped.append(f"{name}: unreadable ({e.__class__.__name__})")
        return None
    if arr.shape != (TILE, TILE, 3):
        skipped.append(f"{name}: shape {arr.shape}, expected {(TILE, TILE, 3)}")
        return None
    return arr


ARCHIVE_ROOT = "Kather_texture_2016_image_tiles_5000"  # the zip's one folder, which TFDS's builder reads


def _zip_members(z: zipfile.ZipFile, unlike: list):
    files, dirs, seen = {}, set(), set()
    for info in z.infolist():
        p = tfds_extracted(info.filename)
        if info.is_dir() or not p:
            continue
        if p in seen:  # TFDS 4.9.4 extracts on a thread pool: which copy it keeps is a race
            unlike.append(f"{p}: twice in the zip (which one TFDS's extractor keeps is a race)")
        if any(len(part.encode()) > 255 for part in p.split("/")):  # NAME_MAX: the extraction fails
            unlike.append(f"{p[:80]}...: a name longer than 255 bytes (TFDS's extraction fails on it)")
        seen.add(p)
        files[p] = info
        parts = p.split("/")
        dirs.update("/".join(parts[:i]) for i in range(1, len(parts)))
    unlike.extend(f"{p}: a file and a folder of the same path (TFDS's extraction fails)" for p in sorted(files)
                  if p in dirs)
    if not any(p.startswith(f"{ARCHIVE_ROOT}/") for p in files):
        unlike.append(f"no {ARCHIVE_ROOT}/ folder in the zip (TFDS's builder reads its class folders there)")
    for ci, folder in enumerate(KATHER_FOLDERS):
        prefix = f"{ARCHIVE_ROOT}/{folder}/"
        for p in sorted(p for p in files if p.startswith(prefix)):
            if "/" in p[len(prefix):]:
                unlike.append(f"{p}: in a folder inside {folder} (TFDS's builder fails on it)")
            else:
                yield ci, p[len(prefix):], z.read(files[p])


def _archive_members(path: Path, expected_sha256: str, unlike: list):
    """Yield (class_index, file name, bytes) of each file TFDS's colorectal_histology builder would read from the
    upstream .zip (as its extractor writes it: the last of two same paths wins) or from a class-folder tree, in the
    builder's order. Where that builder would fail or read something else, UNLIKE gets a line: a folder inside a class
    folder, a name that is not UTF-8, a zip without its one top folder."""
    if path.is_file():
        if not zipfile.is_zipfile(path):
            raise UserError(f"{path} is neither a folder nor a .zip archive: give the Kather folder tree or "
                            f"{ARCHIVE_NAME}")
        digest = sha256_file(path)
        if digest != expected_sha256:
            raise UserError(f"{path} has sha256 {digest}, expected {expected_sha256}: re-download {ARCHIVE_NAME} "
                            f"(or pass --archive-sha256 for a different, known archive)")
        try:
            with zipfile.ZipFile(path) as z:
                yield from _zip_members(z, unlike)
        except (zipfile.BadZipFile, RuntimeError, NotImplementedError, UnicodeDecodeError, EOFError, OSError) as e:
            raise UserError(f"{path}: a member cannot be read ({type(e).__name__}: {' '.join(str(e).split())[:200]})"
                            ) from None
        return
    for ci, folder in enumerate(KATHER_FOLDERS):
        for f in sorted((path / folder).iterdir()):
            if tfds_extracted(f.name) is None:  # what TFDS's extractor would not have written
                if f.is_dir() and any(tfds_extracted(g.name) for g in f.rglob("*") if g.is_file()):
                    unlike.append(f"{folder}/{f.name}/: a folder whose files an archive's extraction would write")
                continue
            try:
                f.name.encode()
            except UnicodeEncodeError:
                unlike.append(f"{folder}/{f.name!r}: the name is not UTF-8 (TFDS's keys are)")
                continue
            if not f.is_file():
                unlike.append(f"{folder}/{f.name}: not a file (TFDS's builder fails on it)")
                continue
            yield ci, f.name, f.read_bytes()


def _check_folder(path: Path) -> None:
    if not path.exists():
        raise UserError(f"dataset path {path} does not exist: give the unpacked Kather tree (01_TUMOR ... 08_EMPTY) "
                        f"or {ARCHIVE_NAME}")
    if path.is_dir():
        missing = [f for f in KATHER_FOLDERS if not (path / f).is_dir()]
        if missing:
            raise UserError(f"{path} lacks class folder(s) {', '.join(missing)}: expected {', '.join(KATHER_FOLDERS)}")


def check_source(cfg) -> None:
    """The cheap checks of the configured source, before a run writes anything (a missing path, class folder)."""
    if cfg["dataset"].startswith("folder:"):
        _check_folder(_folder_path(cfg))


def _folder_path(cfg) -> Path:
    return Path(cfg["dataset"].split(":", 1)[1]).expanduser()


def load_folder(cfg, path: Path) -> Dataset:
    _check_folder(path)
    for spec in (cfg["train_split"], cfg["val_split"]):
        tfds_slice(spec, None)  # a slice TFDS refuses: one line before any tile is decoded
    images, labels, keys, skipped, unlike = [], [], [], [], []
    for ci, name, data in _archive_members(path, cfg["archive_sha256"], unlike):
        # every file, as TFDS's builder decodes every file of a class folder (a PNG too); one it cannot is skipped
        arr = _decode_tile(data, f"{KATHER_FOLDERS[ci]}/{name}", skipped)
        if arr is not None:
            images.append(arr)
            labels.append(ci)
            keys.append(tfds_key(ci, name))
    for s in skipped:
        log.warning("skipped %s", s)
    counts = np.bincount(np.asarray(labels, int), minlength=len(CLASS_NAMES)) if labels else np.zeros(8, int)
    empty = [KATHER_FOLDERS[i] for i, c in enumerate(counts) if c == 0]
    if empty:
        raise UserError(f"{path}: no readable 150x150 RGB TIFF in {', '.join(empty)} "
                        f"({len(skipped)} skipped): every class needs images")
    # The records in the order TFDS's build of the same files holds them, cut by the configured TFDS slices: the
    # same train and val tiles in the same order as `dataset = "tfds"` on this archive (tests/test_data.py holds it
    # to TFDS's own build). A skipped tile is one TFDS would have kept (or failed on): then it is not TFDS's split.
    whole = in_record_order(Split(np.stack(images), np.asarray(labels, np.int32), tuple(keys)))
    train, val = (tfds_slice(cfg[k], len(whole)) for k in ("train_split", "val_split"))
    info = {"name": "kather_texture_2016_image_tiles_5000", "source": f"folder:{path}",
            "archive_sha256": sha256_file(path) if path.is_file() else None,
            "split": "TFDS's record order" if not (skipped or unlike) else
                     f"not TFDS's build: {len(whole)} readable tiles, {len(skipped)} skipped, {len(unlike)} entries "
                     f"TFDS's builder would read otherwise",
            "splits": [cfg["train_split"], cfg["val_split"]], "unlike_tfds": unlike[:20],
            "skipped_images": len(skipped), "skipped_examples": skipped[:20]}
    return Dataset(whole.take(train), whole.take(val), info)


def load(cfg) -> Dataset:
    """The configured dataset, whole (sharding happens in the trainer, which knows its rank)."""
    source = cfg["dataset"]
    if source == "synthetic":
        ds = load_synthetic(cfg)
    elif source == "tfds":
        ds = load_tfds(cfg)
    else:
        ds = load_folder(cfg, _folder_path(cfg))
    ds.info.update(class_names=list(CLASS_NAMES), train_size=len(ds.train), val_size=len(ds.val),
                   train_class_counts=ds.train.class_counts(), val_class_counts=ds.val.class_counts())
    return ds


def identity(ds: Dataset) -> dict:
    """What the data are, for the verdict: examples per class, tile shape, content digest, the archive they came from
    where known (a checked .zip; a TFDS build made from one, content unchanged since), else why not. ~0.3 s."""
    whole, source = content_sha256(ds.train, ds.val), ds.info.get("source", "")
    origin = ds.info.get("tfds_origin") or {}
    archive = ((origin.get("archive_sha256") if origin.get("content_sha256") == whole else None) if source == "tfds"
               else ds.info.get("archive_sha256"))
    checked = (f"the archive TFDS was prepared from ({TFDS_ORIGIN}), content unchanged since" if source == "tfds"
               else "the .zip's sha256, before decoding")
    counts = np.bincount(np.concatenate([ds.train.labels, ds.val.labels]), minlength=len(CLASS_NAMES)).tolist()
    return {"examples_per_class": counts, "tile_shape": list(ds.train.images.shape[1:]), "content_sha256": whole,
            "archive_sha256": archive, "archive_checked": checked if archive else None,
            "archive_unchecked": None if archive else unchecked_why(source, origin, len(ds.train) + len(ds.val))}


def unchecked_why(source: str, origin: dict, tiles: int) -> str:
    """Why no archive stands behind these tiles (the verdict's data line says it)."""
    built = sum(origin.get("examples_per_class") or [])
    return ("an unpacked tree: no archive to check" if source.startswith("folder:") else
            f"a TFDS build without {TFDS_ORIGIN} (prepared by another tool, or its record damaged)" if not origin else
            f"the splits read {tiles} tiles of the {built} the build was prepared with" if tiles != built else
            f"the tiles differ from the content {TFDS_ORIGIN} recorded when the build was prepared: changed since, or "
            f"prepared by an xeontl before 4a07c06, whose digest left file names out (delete the build, prepare again)")


# ----------------------------------------------------------------------------------------------- tf.data
def augmenter(cfg):
    """The paper's augmentation: random horizontal+vertical flip and random rotation, as a Keras preprocessing stack."""
    import tensorflow as tf

    return tf.keras.Sequential([
        tf.keras.layers.RandomFlip("horizontal_and_vertical", seed=cfg["seed"]),
        tf.keras.layers.RandomRotation(cfg["rotation_factor"], fill_mode="reflect", seed=cfg["seed"] + 1),
    ], name="augmentation")


def pipeline(split: Split, cfg, training: bool, batch_size: int | None = None, augment: bool | None = None):
    """uint8 tiles in memory -> [shuffled,] [augmented,] resized, [0,1]-scaled float batches, prefetched.

    training: shuffle each epoch and drop the last partial batch; augment defaults to training and cfg["augment"]
    (the feature cache asks for augmented views in a fixed order: training=False, augment=True)."""
    import tensorflow as tf

    size = cfg["image_size"]
    ds = tf.data.Dataset.from_tensor_slices((split.images, split.labels)).cache()
    if training:
        ds = ds.shuffle(len(split), seed=cfg["seed"], reshuffle_each_iteration=True)
    ds = ds.batch(batch_size or cfg["batch_size"], drop_remainder=training)
    if training:
        # One endless iterator across epochs (fit's steps_per_epoch = one pass): a finite dataset makes Keras build
        # a new iterator, and refill the pipeline, at every epoch boundary, outside the epoch's own timing.
        ds = ds.repeat()
    if augment is None:
        augment = training and cfg["augment"]
    aug = augmenter(cfg) if augment else None

    def prepare(x, y):
        x = tf.cast(x, tf.float32) / 255.0
        if aug is not None:
            x = aug(x, training=True)  # rotate at 150 px, before the (costlier) upsampling
        if size != TILE:
            x = tf.image.resize(x, (size, size))
        return x, y

    # tf.data's autotuner off, its choices stated: its model thread sleeps in doubling periods (up to 60 s) and the
    # iterator's teardown waits out the current sleep. Measured on the demo pipeline: 41.9 s to delete the iterator
    # after 100 s of use (its next wake-up, at 141.9 s), 0.09 s with the autotuner off (and as many batches served:
    # 1438 vs 1422 in 100 s, AMD EPYC 2 vCPUs); that wait was the 26-48 s "end-of-fit tail" inside train_seconds.
    # The map runs on as many threads as this rank has CPUs, two batches prefetched.
    options = tf.data.Options()
    options.autotune.enabled = False
    return (ds.map(prepare, num_parallel_calls=len(os.sched_getaffinity(0))).prefetch(2)
            .with_options(options))
