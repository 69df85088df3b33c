"""What TFDS does to a Kather archive, as data (tensorflow_datasets 4.9.4 and 4.7.0 alike): which files its extractor
writes, the order its build holds a split's records in, and which records a slice reads. The folder path reads the
archive by these rules, so that it gives TFDS's split (experiment/data.py; tests/test_data.py holds it to TFDS's build).
"""

from __future__ import annotations

import hashlib

from xeontl.common.errors import UserError

TFDS_SPLIT = "train"  # colorectal_histology's one split: TFDS's salt for its record order


def tfds_record_order(keys: list[str], split: str = TFDS_SPLIT) -> list[int]:
    """The indices of KEYS in the order a TFDS build writes (and reads back) a split's records: sorted by the md5 of
    the split's name, the salt, followed by the key (tensorflow_datasets/core/hashing.py's Hasher.hash_key, sorted by
    core/shuffle.py's Shuffler; TFDS 4.9.4). The keys are the builder's own: colorectal_histology's are
    '<class name>/<file name>' (image_classification/colorectal_histology.py, _generate_examples)."""
    salt = hashlib.md5(split.encode())

    def hashed(key: str) -> int:
        md5 = salt.copy()
        md5.update(key.replace("\\", "/").encode())  # as hashing._to_bytes normalizes a str key
        return int(md5.hexdigest(), 16)

    return sorted(range(len(keys)), key=lambda i: hashed(keys[i]))


def tfds_slice(spec: str, n: int | None) -> list[int]:
    """The record indices a TFDS slice of the train split reads from N records, by TFDS's own arithmetic
    (ReadInstruction: percent boundaries rounded to the closest record); what TFDS refuses, or a slice of no record,
    is one line. N None: the spec's syntax only."""
    from tensorflow_datasets.core import splits

    try:
        instr = splits.ReadInstruction.from_spec(spec)
        if n is None:
            return []
        info = splits.SplitInfo(name=TFDS_SPLIT, shard_lengths=[n], num_bytes=0, filename_template=None)
        out = [i for a in instr.to_absolute({TFDS_SPLIT: info}) for i in range(n)[slice(a.from_, a.to)]]
    except (ValueError, AssertionError) as e:
        raise UserError(f"split {spec!r}: TFDS refuses it ({' '.join(str(e).split())})") from None
    if not out:
        raise UserError(f"split {spec!r} holds none of the {n} tiles")
    return out


def tfds_extracted(name: str) -> str | None:
    """A zip member's path as TFDS's extractor writes it, or None where it writes nothing (tensorflow_datasets/core/
    download/extractor.py, _normpath: dot-files, absolute paths, backups ending in ~)."""
    import posixpath

    p = posixpath.normpath(name)
    if p.startswith(".") or posixpath.isabs(p) or p.endswith("~") or posixpath.basename(p).startswith("."):
        return None
    return p
