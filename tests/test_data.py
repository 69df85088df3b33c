"""Data sources on data the tests make themselves: synthetic tiles, a tiny Kather TIFF tree and zip, TFDS mock data."""

import hashlib
import re
import zipfile
from pathlib import Path

import numpy as np
import paper_inputs
import pytest
from PIL import Image

from xeontl.common.errors import UserError
from xeontl.experiment import config, data


def cfg(**over):
    return config.resolve("smoke", over)


def test_synthetic_is_deterministic_balanced_and_well_typed():
    a = data.synthetic_split(7, 0, 32)
    b = data.synthetic_split(7, 0, 32)
    assert a.images.shape == (32, 150, 150, 3) and a.images.dtype == np.uint8 and a.labels.dtype == np.int32
    assert np.array_equal(a.images, b.images) and a.sha256() == b.sha256()
    assert a.class_counts() == [4] * 8
    assert data.synthetic_split(8, 0, 32).sha256() != a.sha256()  # the seed matters


def test_synthetic_classes_differ_but_vary_within():
    s = data.synthetic_split(1, 0, 64)
    means = np.array([s.images[s.labels == k].mean(axis=(0, 1, 2)) for k in range(8)])
    assert len({tuple(np.round(m)) for m in means}) == 8  # 8 distinct colour signatures
    lympho = s.images[s.labels == 3].astype(float)
    assert np.abs(lympho[0] - lympho[1]).mean() > 10  # two tiles of a class are not copies


def test_synthetic_train_and_val_never_share_a_tile():
    ds = data.load_synthetic(cfg())
    train = {hashlib.sha1(x.tobytes()).hexdigest() for x in ds.train.images}
    assert not train & {hashlib.sha1(x.tobytes()).hexdigest() for x in ds.val.images}
    assert ds.info["notice"] == "synthetic data — not the paper's dataset"


def test_shards_are_disjoint_and_cover_the_set():
    s = data.synthetic_split(3, 0, 40)
    parts = [s.shard(2, r) for r in range(2)]
    assert sum(len(p) for p in parts) == 40
    hashes = [{hashlib.sha1(x.tobytes()).hexdigest() for x in p.images} for p in parts]
    assert not hashes[0] & hashes[1]
    # stratified: every worker sees every class (a plain stride over index % 8 labels would not), +-1 image
    a, b = parts[0].class_counts(), parts[1].class_counts()
    assert min(a) > 0 and min(b) > 0 and all(abs(x - y) <= 1 for x, y in zip(a, b))


def test_pipeline_shapes_and_range():
    s = data.synthetic_split(3, 0, 16)
    x, y = next(iter(data.pipeline(s, cfg(image_size=64, batch_size=8), training=True)))
    assert x.shape == (8, 64, 64, 3) and float(x.numpy().min()) >= 0 and float(x.numpy().max()) <= 1
    assert y.shape == (8,)


def test_training_pipeline_is_one_endless_reshuffled_iterator():
    """Endless, so Keras never rebuilds the pipeline between epochs; each pass is a new order of the same tiles."""
    import tensorflow as tf

    s = data.synthetic_split(3, 0, 16)
    ds = data.pipeline(s, cfg(image_size=32, batch_size=8, augment=False), training=True)
    assert ds.cardinality() == tf.data.INFINITE_CARDINALITY
    batches = [y.numpy() for _, y in ds.take(4)]
    first, second = np.concatenate(batches[:2]), np.concatenate(batches[2:])
    assert sorted(first) == sorted(second) == sorted(s.labels)  # every pass is the whole shard once
    val = data.pipeline(s, cfg(image_size=32, batch_size=8), training=False)
    assert val.cardinality() == 2  # validation stays one finite pass, in order


def test_synthetic_set_is_made_once_by_the_launcher_and_read_back(tmp_path, monkeypatch):
    """The launcher makes the set on the host (assets), every run reads it instead of synthesizing (10-30 s)."""
    from xeontl.supply import assets

    monkeypatch.setenv("XEONTL_CACHE_DIR", str(tmp_path))
    c = assets.absolute(cfg(synthetic_train=16, synthetic_val=8))
    assert c["data_dir"] == str(tmp_path / "synthetic") and assets.host_paths(c) == [c["data_dir"]]
    path = data.synthetic_cache_file(c)
    assert f"v{data.SYNTHETIC_VERSION}-seed{c['seed']}-16-8" in path.name  # named by all that determines it
    assert assets.needed(c) == {"synthetic": path}
    assets.fetch(c, progress=False, manifest=tmp_path / "manifest.json")
    assert path.is_file() and assets.needed(c) == {} and not (tmp_path / "manifest.json").exists()
    cached, made = data.load_synthetic(c), data.load_synthetic({**c, "data_dir": ""})
    assert cached.info["cache_file"] == str(path) and made.info["cache_file"] is None
    assert cached.train.sha256() == made.train.sha256() and cached.val.sha256() == made.val.sha256()
    other = {**c, "seed": c["seed"] + 1}
    assert data.synthetic_cache_file(other) != path
    assert assets.needed(other) == {"synthetic": data.synthetic_cache_file(other)}


def test_training_iterator_is_deleted_without_waiting_for_tf_data_autotuner():
    """tf.data's autotuner thread sleeps in doubling periods (up to 60 s) and deleting the iterator waited out the
    current one, depending on its phase: 41.9 s after 100 s of demo training, 36.9 s after 45 s of this pipeline at
    32 px, 0.0 s in other runs. So: the autotuner is off in every pipeline (what catches it turned back on: a wait that
    long needs tens of seconds of iterating first), and deleting an iterator that ran takes no wait."""
    import time

    s = data.synthetic_split(3, 0, 16)
    for training in (True, False):
        assert data.pipeline(s, cfg(image_size=32, batch_size=8), training).options().autotune.enabled is False
    it, t0 = iter(data.pipeline(s, cfg(image_size=32, batch_size=8), training=True)), time.time()
    while time.time() - t0 < 0.5:
        next(it)
    t1 = time.time()
    del it
    assert time.time() - t1 < 10


# ---------------------------------------------------------------------------------------------- Kather archive
def write_tree(root, per_class=3, bad=()):
    for ci, folder in enumerate(data.KATHER_FOLDERS):
        (root / folder).mkdir(parents=True)
        for i in range(per_class):
            img = np.full((150, 150, 3), (ci * 30, 255 - ci * 30, i * 40), np.uint8)
            Image.fromarray(img).save(root / folder / f"{ci}_{i}.tif")
    for name, im in bad:
        im.save(root / name) if hasattr(im, "save") else (root / name).write_bytes(im)
    return root


def test_folder_tree_loads_in_tfds_class_order(tmp_path):
    root = write_tree(tmp_path / "kather")
    ds = data.load(cfg(dataset=f"folder:{root}"))
    assert len(ds.train) + len(ds.val) == 24
    all_labels = np.concatenate([ds.train.labels, ds.val.labels])
    all_images = np.concatenate([ds.train.images, ds.val.images])
    for img, label in zip(all_images, all_labels):
        assert img[0, 0, 0] == label * 30  # 01_TUMOR -> 0 (tumor) ... 08_EMPTY -> 7 (empty), as TFDS
    assert data.CLASS_NAMES == ("tumor", "stroma", "complex", "lympho", "debris", "mucosa", "adipose", "empty")


def test_non_rgb_and_unreadable_images_are_skipped_and_counted(tmp_path):
    root = write_tree(tmp_path / "kather", bad=[
        ("01_TUMOR/gray.tif", Image.new("L", (150, 150))), ("02_STROMA/broken.tif", b"not a tiff")])
    ds = data.load(cfg(dataset=f"folder:{root}"))
    assert ds.info["skipped_images"] == 2 and len(ds.train) + len(ds.val) == 24


def test_missing_class_folder_is_refused(tmp_path):
    root = write_tree(tmp_path / "kather")
    for f in (root / "05_DEBRIS").iterdir():
        f.unlink()
    (root / "05_DEBRIS").rmdir()
    with pytest.raises(UserError, match="05_DEBRIS"):
        data.load(cfg(dataset=f"folder:{root}"))


def make_zip(tmp_path):
    root = write_tree(tmp_path / "tree")
    z = tmp_path / data.ARCHIVE_NAME
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(root.rglob("*.tif")):
            zf.write(f, f"Kather_texture_2016_image_tiles_5000/{f.relative_to(root)}")
    return z


def test_zip_with_matching_checksum_loads(tmp_path):
    z = make_zip(tmp_path)
    ds = data.load(cfg(dataset=f"folder:{z}", archive_sha256=data.sha256_file(z)))
    assert len(ds.train) + len(ds.val) == 24 and ds.info["archive_sha256"] == data.sha256_file(z)


def test_zip_with_wrong_checksum_is_refused(tmp_path):
    z = make_zip(tmp_path)  # default expectation: the real archive's sha256
    with pytest.raises(UserError, match=f"expected {data.ARCHIVE_SHA256}"):
        data.load(cfg(dataset=f"folder:{z}"))


def test_missing_dataset_path(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        data.load(cfg(dataset=f"folder:{tmp_path}/nope"))


# ---------------------------------------------------------------------------------------------- TFDS
def tfds_build(monkeypatch, archive, data_dir, **download):
    """TFDS's own colorectal_histology build of ARCHIVE (in its manual dir, registered as the builder's download)."""
    import tensorflow_datasets as tfds

    register_fixture(monkeypatch, archive)
    builder = tfds.builder("colorectal_histology", data_dir=str(data_dir))
    builder.download_and_prepare(download_config=tfds.download.DownloadConfig(manual_dir=str(archive.parent),
                                                                              **download))
    return builder


def register_fixture(monkeypatch, archive, checksum=None):
    """Register the fixture archive as the builder's download (TFDS checks size and sha256 of what it finds in
    manual_dir under the registered file name), instead of the real 258 MB archive's record."""
    from tensorflow_datasets.core.download import checksums
    from tensorflow_datasets.image_classification import colorectal_histology as ch

    info = checksums.UrlInfo(size=archive.stat().st_size, checksum=checksum or data.sha256_file(archive),
                             filename=data.ARCHIVE_NAME)
    monkeypatch.setattr(ch.ColorectalHistology, "url_infos", property(lambda self: {ch._TILES_DL_URL: info}))


def test_real_tfds_builder_prepares_the_archive_from_manual_dir(tmp_path, monkeypatch):
    """The real colorectal_histology builder (no mock): it finds the archive in manual_dir, checks it, decodes the
    TIFFs, and the 80/20 split sizes are what TFDS returns for train[:80%] / train[80%:]."""
    manual = tmp_path / "manual"
    manual.mkdir()
    archive = make_zip(manual)  # 8 classes x 3 tiles, the Kather layout, named as the upstream archive
    register_fixture(monkeypatch, archive)
    ds = data.load(cfg(dataset="tfds", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual),
                       archive_sha256=data.sha256_file(archive)))
    assert ds.info["name"] == "colorectal_histology" and ds.info["splits"] == ["train[:80%]", "train[80%:]"]
    assert (len(ds.train), len(ds.val)) == (19, 5)  # TFDS's own rounding of 80 % of 24 records
    assert ds.train.images.shape[1:] == (150, 150, 3) and ds.train.images.dtype == np.uint8
    assert sorted(set(np.concatenate([ds.train.labels, ds.val.labels]))) == list(range(8))
    again = data.load(cfg(dataset="tfds", data_dir=str(tmp_path / "tfds"), manual_dir=str(tmp_path / "none")))
    assert again.train.sha256() == ds.train.sha256()  # prepared once, read back without the archive


def test_real_tfds_builder_refuses_an_archive_with_another_checksum(tmp_path, monkeypatch):
    """TFDS prepares whatever file carries the archive's name in manual_dir; the loader checks its sha256 first."""
    manual = tmp_path / "manual"
    manual.mkdir()
    archive = make_zip(manual)
    register_fixture(monkeypatch, archive)
    with pytest.raises(UserError, match=f"has sha256 {data.sha256_file(archive)}, expected {data.ARCHIVE_SHA256}"):
        data.load(cfg(dataset="tfds", data_dir=str(tmp_path / "tfds"), manual_dir=str(manual)))
    assert not (tmp_path / "tfds" / "colorectal_histology").exists() or not any(
        (tmp_path / "tfds" / "colorectal_histology").rglob("*.tfrecord*"))


def test_tfds_absent_and_not_downloadable_says_where_to_put_the_archive(tmp_path, monkeypatch):
    import tensorflow_datasets as tfds

    def offline(*a, **k):
        raise ConnectionError("no network")

    monkeypatch.setattr(tfds.core.DatasetBuilder, "download_and_prepare", offline)
    with pytest.raises(UserError) as e:
        data.load(cfg(dataset="tfds", data_dir=str(tmp_path)))
    msg = str(e.value)
    assert data.ARCHIVE_NAME in msg and data.ARCHIVE_SHA256 in msg and "\n" not in msg


def test_a_folder_splits_as_tfdss_own_build_of_the_same_archive(tmp_path, tfds_made):
    """The oracle is TFDS itself: its colorectal_histology builder prepares a Kather-layout archive (tests/
    paper_inputs.py, 4 distinct tiles a class), and `dataset = "tfds"` reads train[:80%] / train[80%:] from that build;
    the same archive as `folder:` (the .zip, and the tree unpacked from it) gives the same tiles, labels and order in
    both splits, and records the split as the TFDS path does. Another slice (train[:50%]) is cut alike."""
    made, archive, tree = tfds_made, tfds_made["archive"], tmp_path / "tree"  # the module's build, read only
    with zipfile.ZipFile(archive) as z:
        z.extractall(tree)
    tree = tree / "Kather_texture_2016_image_tiles_5000"
    for slices in ({}, {"train_split": "train[:50%]", "val_split": "train[50%:]"}):
        common = {"data_dir": made["data_dir"], "manual_dir": str(archive.parent), "archive_sha256":
                  made["archive_sha256"], **slices}
        want = data.load(config.resolve("paper", {**common, "dataset": "tfds"}))
        assert len(want.train) == (26 if not slices else 16), len(want.train)  # TFDS's rounding of 32 records
        for source in (archive, tree):
            got = data.load(config.resolve("paper", {**common, "dataset": f"folder:{source}"}))
            for a, b in ((got.train, want.train), (got.val, want.val)):
                assert np.array_equal(a.labels, b.labels), (source, slices)
                assert np.array_equal(a.images, b.images), (source, slices)
            assert got.info["split"] == "TFDS's record order" and got.info["skipped_images"] == 0


def test_the_record_order_is_tfdss_hash_of_each_key():
    """Held to TFDS's own hasher (tensorflow_datasets.core.hashing.Hasher, salted with the split's name): the order
    is the keys sorted by it, whatever order they come in."""
    from tensorflow_datasets.core import hashing

    keys = [f"{c}/{i}_{k}.tif" for i, c in enumerate(data.CLASS_NAMES) for k in range(7)][::-1]
    hasher = hashing.Hasher("train")
    assert data.tfds_record_order(keys) == sorted(range(len(keys)), key=lambda i: hasher.hash_key(keys[i]))
    assert data.tfds_record_order(keys) != list(range(len(keys)))


# Zip members TFDS's extractor and colorectal_histology's builder read otherwise than a plain tree walk would (found by
# an adversary's reproducers against TFDS 4.9.4's own build): each (member name, what it holds), added to a plain
# archive, and whether TFDS's build of that archive still succeeds ("tfds": the folder path must then give its tiles in
# its order) or fails (the folder path must then record that its split is not TFDS's).
ROOT_DIR = data.ARCHIVE_ROOT
EDGE_MEMBERS = {
    "a dot-file tile (the extractor drops it)": ([(f"{ROOT_DIR}/01_TUMOR/.9.tif", "tile")], "tfds"),
    "a __MACOSX copy and a second root (outside the builder's folder)": (
        [(f"__MACOSX/{ROOT_DIR}/01_TUMOR/9.tif", "tile"), ("Other/02_STROMA/9.tif", "tile")], "tfds"),
    "the same path twice (TFDS 4.9.4 extracts on a thread pool: which copy it keeps is a race)": (
        [(f"{ROOT_DIR}/03_COMPLEX/2_0.tif", "tile")], None),
    "a name longer than 255 bytes (the extraction fails)": ([(f"{ROOT_DIR}/01_TUMOR/{'x' * 260}.tif", "tile")], None),
    "a file where a class folder's file is a folder (the extraction fails)": ([(f"{ROOT_DIR}/01_TUMOR", "tile")],
                                                                              None),
    "a .. path and a ./ path (normalized)": (
        [(f"{ROOT_DIR}/01_TUMOR/../02_STROMA/8.tif", "tile"), (f"{ROOT_DIR}/./04_LYMPHO/8.tif", "tile")], "tfds"),
    "an absolute path and a backup~ (dropped)": ([(f"/{ROOT_DIR}/01_TUMOR/7.tif", "tile"),
                                                  (f"{ROOT_DIR}/01_TUMOR/7.tif~", "tile")], "tfds"),
    "a PNG and an upper-case .TIF (the builder decodes every file)": (
        [(f"{ROOT_DIR}/05_DEBRIS/6.png", "png"), (f"{ROOT_DIR}/06_MUCOSA/6.TIF", "tile")], "tfds"),
    "a backslash in a name (TFDS's hasher reads it as /)": ([(f"{ROOT_DIR}/07_ADIPOSE/a\\b.tif", "tile")], "tfds"),
    "a folder inside a class folder (the builder fails on it)": ([(f"{ROOT_DIR}/01_TUMOR/sub/5.tif", "tile")], None),
    "a file that is no image (the builder fails on it)": ([(f"{ROOT_DIR}/08_EMPTY/notes.txt", "text")], None),
}


@pytest.mark.parametrize("case", EDGE_MEMBERS)
def test_a_zip_is_read_as_tfdss_extractor_and_builder_read_it(tmp_path, monkeypatch, case):
    import io

    rng = np.random.default_rng(7)

    def payload(kind):
        if kind == "text":
            return b"not an image"
        buf = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (150, 150, 3), dtype=np.uint8)).save(buf, "PNG" if kind == "png" else
                                                                                    "TIFF")
        return buf.getvalue()

    extra, outcome = EDGE_MEMBERS[case]
    archive = tmp_path / "manual" / data.ARCHIVE_NAME
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as z:
        import warnings

        with warnings.catch_warnings():  # a duplicate name is the case, not a mistake
            warnings.simplefilter("ignore")
            for ci, folder in enumerate(data.KATHER_FOLDERS):
                for k in range(3):
                    z.writestr(f"{ROOT_DIR}/{folder}/{ci}_{k}.tif", payload("tile"))
            for name, kind in extra:
                z.writestr(name, payload(kind))
    digest = data.sha256_file(archive)
    got = data.load(config.resolve("paper", {"dataset": f"folder:{archive}", "archive_sha256": digest}))
    if outcome is None:
        assert got.info["split"].startswith("not TFDS's build") and got.info["split"] != "TFDS's record order"
        return
    builder = tfds_build(monkeypatch, archive, tmp_path / "tfds")
    for spec, split in (("train[:80%]", got.train), ("train[80%:]", got.val)):
        want = data._tfds_split(builder, spec)
        assert np.array_equal(split.labels, want.labels) and np.array_equal(split.images, want.images), spec
        assert split.keys == want.keys, spec
    assert got.info["split"] == "TFDS's record order"
    assert data.content_sha256(got.train, got.val) == data.content_sha256(data._tfds_split(builder, "train"))


def test_a_build_of_two_shards_reads_as_the_folder_and_a_reordered_build_is_not_tfdss_split(tmp_path, monkeypatch):
    """The real archive's build has two shards, which TFDS reads interleaved (16 records of each in turn): the TFDS
    path gives the folder path's tiles in the folder path's order all the same. A build whose records were written in
    another order (another tool's; here its shards rewritten reversed) holds other records in train[:80%]: its split
    is recorded as not TFDS's."""
    import tensorflow as tf

    archive = tmp_path / "manual" / data.ARCHIVE_NAME
    digest = paper_inputs.kather_zip(archive, 10)
    builder = tfds_build(monkeypatch, archive, tmp_path / "tfds", num_shards=2)
    assert len(builder.info.splits["train"].shard_lengths) == 2
    common = {"data_dir": str(tmp_path / "tfds"), "manual_dir": str(archive.parent), "archive_sha256": digest}
    via_tfds = data.load(config.resolve("paper", {**common, "dataset": "tfds"}))
    via_folder = data.load(config.resolve("paper", {**common, "dataset": f"folder:{archive}"}))
    assert data._tfds_split(builder, "train[:80%]").keys != via_folder.train.keys  # TFDS's own read: interleaved
    for a, b in ((via_tfds.train, via_folder.train), (via_tfds.val, via_folder.val)):
        assert a.keys == b.keys and np.array_equal(a.images, b.images) and np.array_equal(a.labels, b.labels)
    assert via_tfds.info["split"] == via_folder.info["split"] == "TFDS's record order"
    for shard in sorted(Path(builder.data_dir).glob("*.tfrecord*")):
        records = [r.numpy() for r in tf.data.TFRecordDataset(str(shard))]
        with tf.io.TFRecordWriter(str(shard)) as w:
            for r in reversed(records):
                w.write(r)
    reordered = data.load(config.resolve("paper", {**common, "dataset": "tfds"}))
    assert reordered.info["split"].startswith("not TFDS's record order"), reordered.info["split"]


@pytest.fixture(scope="module")
def tfds_made(tmp_path_factory) -> dict:
    """One small TFDS build and its archive, shared: the tests that use it only read it."""
    root = tmp_path_factory.mktemp("tfds-made")
    made = paper_inputs.make("tfds", root / "data", "4")
    manual = root / "data" / "manual"
    return {**made, "archive": manual / data.ARCHIVE_NAME, "manual_dir": str(manual)}


@pytest.mark.parametrize("spec", ["train[100%:]", "train[5:5]", "train[:1000]"])
def test_a_slice_tfds_refuses_or_that_holds_nothing_is_one_line_on_both_paths(tfds_made, spec):
    made = tfds_made
    for dataset in ("tfds", f"folder:{made['archive']}"):
        with pytest.raises(UserError, match=re.escape(spec)):
            data.load(config.resolve("paper", {"data_dir": made["data_dir"], "manual_dir": made["manual_dir"],
                                               "archive_sha256": made["archive_sha256"], "dataset": dataset,
                                               "val_split": spec}))


def test_a_renamed_tile_is_another_data_set():
    """TFDS orders its records by file name: a tree with one tile renamed has other splits, so its content digest
    (which the paper's data is recognised by) is another, though no pixel changed."""
    tiles = np.zeros((2, 150, 150, 3), np.uint8)
    a = data.Split(tiles, np.array([0, 1], np.int32), ("tumor/0_0.tif", "stroma/1_0.tif"))
    b = data.Split(tiles, np.array([0, 1], np.int32), ("tumor/x.tif", "stroma/1_0.tif"))
    assert data.content_sha256(a) != data.content_sha256(b)


def test_a_damaged_tile_is_skipped_and_a_damaged_zip_is_one_line(tmp_path, monkeypatch):
    """What PIL refuses in its other ways (here its decompression-bomb guard) is a skipped tile, never a crash; a zip
    member whose bytes fail their CRC is one line naming the archive."""
    from PIL import Image as PILImage

    root = write_tree(tmp_path / "kather")
    monkeypatch.setattr(PILImage, "MAX_IMAGE_PIXELS", 100)  # every 150x150 tile is now a "bomb" (> 2 x 100 pixels)
    with pytest.raises(UserError, match="no readable"):
        data.load(cfg(dataset=f"folder:{root}"))
    monkeypatch.undo()
    z = make_zip(tmp_path)
    raw = bytearray(z.read_bytes())
    with zipfile.ZipFile(z) as zf:
        first = zf.infolist()[0]
    raw[first.header_offset + 30 + len(first.filename.encode()) + 200] ^= 0xFF  # a byte of its stored data
    z.write_bytes(bytes(raw))
    with pytest.raises(UserError, match="a member cannot be read"):
        data.load(cfg(dataset=f"folder:{z}", archive_sha256=data.sha256_file(z)))


def test_a_dot_folder_in_a_tree_is_not_dropped_as_a_dot_file_is(tmp_path):
    """A tree stands for the archive unpacked: a dot-file the extraction would not have written is left out, a
    folder of files it would have written (a class folder's .ipynb_checkpoints/) makes the builder fail."""
    root = write_tree(tmp_path / "kather")
    (root / "01_TUMOR" / ".DS_Store").write_bytes(b"finder")
    assert data.load(cfg(dataset=f"folder:{root}")).info["split"] == "TFDS's record order"
    (root / "01_TUMOR" / ".ipynb_checkpoints").mkdir()
    (root / "01_TUMOR" / ".ipynb_checkpoints" / "0_0.tif").write_bytes((root / "01_TUMOR" / "0_0.tif").read_bytes())
    assert data.load(cfg(dataset=f"folder:{root}")).info["split"].startswith("not TFDS's build")


def _tiles(n=8):
    images = np.zeros((n, 150, 150, 3), np.uint8)
    images[:, 0, 0, 0] = np.arange(n)
    labels = np.arange(n, dtype=np.int32) % 8
    return data.Split(images, labels, tuple(data.tfds_key(int(lab), f"t{i}.tif") for i, lab in enumerate(labels)))


# source, origin ("same": the tiles' own content; "old": another digest, as an older xeontl recorded), archive
# sha256 the loader read -> (archive recorded, the reason no archive is: a phrase, or None)
UNCHECKED = {
    "a TFDS build this bundle prepared, unchanged": ("tfds", "same", None, ("ab" * 32, None)),
    "a TFDS build without an origin record": ("tfds", None, None, (None, "a TFDS build without xeontl-origin.json")),
    "a TFDS build whose content differs from its origin's (or an older xeontl's digest)": (
        "tfds", "old", None, (None, "prepared by an xeontl before 4a07c06")),
    # the adversary's case: slices that read part of an unchanged build were told to rebuild it
    "a TFDS build, unchanged, read in part by the splits": ("tfds", "part", None,
                                                            (None, "the splits read 6 tiles of the 8")),
    "a .zip whose sha256 was checked": ("folder:/k.zip", None, "cd" * 32, ("cd" * 32, None)),
    "an unpacked tree": ("folder:/k", None, None, (None, "an unpacked tree")),
}


@pytest.mark.parametrize("case", list(UNCHECKED))
def test_a_run_without_a_checked_archive_says_why(case):
    """The verdict's data line says why no archive stands behind the tiles (a TFDS build an older xeontl prepared
    read "none checked" with no reason)."""
    source, origin, archive, (want_archive, why) = UNCHECKED[case]
    split = _tiles()
    content = data.content_sha256(split, split.take([]))
    info = {"source": source, "archive_sha256": archive,
            "tfds_origin": None if origin is None else {"archive_sha256": "ab" * 32, "examples_per_class": [1] * 8,
                                                        "content_sha256": "ef" * 32 if origin == "old" else content}}
    read = split.take(range(6)) if origin == "part" else split
    got = data.identity(data.Dataset(read, split.take([]), info))
    assert got["archive_sha256"] == want_archive
    assert (got["archive_unchecked"] is None) if why is None else (why in got["archive_unchecked"]), got
