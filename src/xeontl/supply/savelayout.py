"""What a `docker save` stream may hold, member by member, before xeontl reads its manifest or strips its tags
(supply.archive): docker load reads a member by its normalised name, so `./manifest.json` is its manifest.json too, and
a second copy of a name, a name outside the layout, a hard link or a device is refused rather than guessed at.

The layout (moby image/tarexport, docker 20.10 to 27): manifest.json, repositories, <id>.json, <id>/ with VERSION,
json and layer.tar (a symlink to an earlier layer's layer.tar where two images share it, or, from docker 25, to its
blob), and from docker 25 the OCI layout beside it: oci-layout, index.json, blobs/sha256/<digest>."""

from __future__ import annotations

import posixpath
import re
import tarfile

from xeontl.common.errors import UserError

HEX = "[0-9a-f]{64}"
FILES = re.compile(rf"manifest\.json|repositories|index\.json|oci-layout|{HEX}\.json|{HEX}/(layer\.tar|json|VERSION)"
                   rf"|blobs/sha256/{HEX}")
DIRS = re.compile(rf"{HEX}|blobs|blobs/sha256")
LINKED = re.compile(rf"{HEX}/layer\.tar")  # the one member docker save writes as a symlink
LINK_TARGETS = re.compile(rf"{HEX}/layer\.tar|blobs/sha256/{HEX}")
# index.json's annotations that name (and so move) a tag on load
TAG_ANNOTATIONS = ("io.containerd.image.name", "org.opencontainers.image.ref.name")
WHERE = "the archive's image.tar.gz"


def _normal(name: str) -> str | None:
    if not name or name.startswith("/") or "\\" in name:
        return None
    norm = posixpath.normpath(name)
    return None if norm.startswith("..") or norm == "." else norm


def check(m: tarfile.TarInfo, seen: set[str]) -> str:
    """M's normalised name (M renamed to it) when the layout allows it and no earlier member had it; else one line."""
    name = _normal(m.name)
    bad = f"{WHERE}: member {m.name[:80]!r}"
    if name is None:
        raise UserError(f"{bad} is not a relative path inside the save: nothing was loaded")
    if name in seen:
        raise UserError(f"{bad} is a second copy of {name} (docker would read one, xeontl the other): nothing was "
                        f"loaded")
    seen.add(name)
    if m.isdir():
        ok = DIRS.fullmatch(name)
    elif m.isfile():
        ok = FILES.fullmatch(name)
    elif m.issym():
        target = _normal(posixpath.join(posixpath.dirname(name), m.linkname)) if not m.linkname.startswith("/") \
            else None
        ok = LINKED.fullmatch(name) and target is not None and LINK_TARGETS.fullmatch(target)
    else:  # hard links, devices, FIFOs
        ok = False
    if not ok:
        raise UserError(f"{bad} is not part of a `docker save` ({'a ' + _kind(m) if not m.isfile() else 'its name'}): "
                        f"nothing was loaded")
    m.name = name
    return name


def _kind(m: tarfile.TarInfo) -> str:
    return ("directory" if m.isdir() else "symlink" if m.issym() else "hard link" if m.islnk() else "device or FIFO")


def untag_index(doc: dict) -> dict:
    """index.json without the annotations that name a tag (docker load tags by them)."""
    if not isinstance(doc, dict):
        raise UserError(f"{WHERE}: index.json is not an OCI index: nothing was loaded")
    manifests = doc.get("manifests")
    if not isinstance(manifests, list) or not all(isinstance(e, dict) for e in manifests):
        raise UserError(f"{WHERE}: index.json has no list of manifests: nothing was loaded")

    def strip(a):
        return {k: v for k, v in a.items() if k not in TAG_ANNOTATIONS} if isinstance(a, dict) else a

    out = {**doc, "manifests": [{**e, "annotations": strip(e["annotations"])} if "annotations" in e else e
                                for e in manifests]}
    if "annotations" in doc:
        out["annotations"] = strip(doc["annotations"])
    return out
