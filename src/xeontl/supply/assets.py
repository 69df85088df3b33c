"""The paper's inputs as pinned, verifiable files: the ImageNet ResNet50 weights (a TF-Hub feature vector, through
tensorflow_hub's own resolver and cache) and the Kather archive (the file TFDS's colorectal_histology builder
registers, fetched into TFDS's manual_dir so TFDS prepares it offline). Every download shows progress, is atomic (a
partial file is `NAME.part`, never NAME), resumes from where it stopped, and ends in one line for a 404, a timeout, a
truncated body, a wrong hash or a full disk. `export`/`import_` carry verified assets to an air-gapped host.

assets/manifest.json records where each asset came from, its sha256 and size, and (weights) the architecture named by
the SavedModel's own graph (its exact convolution signature, xeontl.experiment.architectures: TF-Slim's resnet_v1_50
is the paper's), which is checked, not assumed.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import http.client
import importlib.util
import io
import json
import os
import re
import shutil
import socket
import tarfile
import tempfile
import time
import urllib.error
from datetime import datetime, timezone
from pathlib import Path

from xeontl.common import records, redact
from xeontl.common.errors import UserError
from xeontl.experiment import data
from xeontl.supply import fetch as one_fetch

# Intel's pipeline for this experiment: TF-Slim ResNet50 feature vector, 224 px, inputs in [0,1].
WEIGHTS_HANDLE = "https://tfhub.dev/google/imagenet/resnet_v1_50/feature_vector/5"
# The archive TFDS's colorectal_histology builder downloads (and registers with this size and sha256).
DATA_URL = "https://zenodo.org/record/53169/files/Kather_texture_2016_image_tiles_5000.zip"
CHUNK = 1 << 20
TIMEOUT = 60.0


def sha256_file(path: Path) -> str:
    return data.sha256_file(path)


# ------------------------------------------------------------------------------------------------ one file
def fetch_file(url: str, dest: Path, sha256: str, size: int | None = None, timeout: float = TIMEOUT,
               progress: bool = True) -> dict:
    """URL -> DEST, verified. Resumes DEST.part with an HTTP Range request; DEST appears only when its sha256 is
    right. Returns what the manifest records."""
    dest = Path(dest)
    if dest.is_file():
        digest = sha256_file(dest)
        if digest == sha256:
            return {"path": str(dest), "sha256": digest, "size": dest.stat().st_size, "source": "already present"}
        raise UserError(f"{dest} is there but has sha256 {digest}, expected {sha256}: remove it and fetch again")
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    shown = redact.url(url)
    try:  # one fetch (supply/fetch.py): credentials to the URL's own origin only, no https -> http redirect
        response = one_fetch.open_url(url, {"Range": f"bytes={have}-"} if have else {}, timeout)
    except urllib.error.HTTPError as e:
        if e.code == 416 and have:  # the .part is already whole
            response = None
        else:
            raise UserError(f"download of {shown} failed: HTTP {e.code} {redact.text(str(e.reason))}: check the URL, "
                            f"or bring the file with `invoke assets --from FILE`") from None
    except (urllib.error.URLError, socket.timeout, TimeoutError, ConnectionError, ValueError,
            http.client.HTTPException) as e:
        # urllib's message for a URL it cannot read quotes the bad part (a password's tail): only its kind is said
        reason = (type(e).__name__ if isinstance(e, (ValueError, http.client.InvalidURL))
                  else redact.text(str(getattr(e, "reason", e))))
        raise UserError(f"download of {shown} failed ({reason}): no route to it from here? fetch on a connected "
                        f"machine with `invoke assets --export FILE`, then `invoke assets --from FILE` here") from None
    if response is not None:
        _stream(response, part, have, shown, dest, progress, timeout)
    digest = sha256_file(part)
    if digest != sha256:
        part.unlink()
        raise UserError(f"{shown} gave a file with sha256 {digest}, expected {sha256}: it was removed; the source "
                        f"changed or the transfer was corrupted (fetch again, or check the pin)")
    if size is not None and part.stat().st_size != size:
        part.unlink()
        raise UserError(f"{shown} gave {part.stat().st_size} bytes, expected {size}: removed, fetch again")
    os.replace(part, dest)
    return {"path": str(dest), "sha256": digest, "size": dest.stat().st_size, "source": shown}


def _stream(response, part: Path, have: int, url: str, dest: Path, progress: bool, timeout: float) -> None:
    from tqdm import tqdm

    resumed = response.status == 206
    if have and not resumed:
        have = 0  # the server ignored the Range: start over
    length = response.headers.get("Content-Length")
    total = have + int(length) if length is not None else None
    written = have
    bar = tqdm(total=total, initial=have, unit="B", unit_scale=True, desc=dest.name, disable=not progress,
               mininterval=1.0)
    try:
        with open(part, "ab" if resumed else "wb") as f:
            while True:
                try:
                    block = response.read(CHUNK)
                except (socket.timeout, TimeoutError, ConnectionError, OSError) as e:
                    if isinstance(e, OSError) and e.errno == errno.ENOSPC:
                        raise
                    raise UserError(f"download of {url} broke off after {written} bytes ({type(e).__name__}): "
                                    f"run the same command again to resume from there") from None
                if not block:
                    break
                f.write(block)
                written += len(block)
                bar.update(len(block))
    except OSError as e:
        if e.errno == errno.ENOSPC:
            raise UserError(f"the disk under {dest.parent} is full after {written} bytes: free "
                            f"{((total or written) - written) >> 20} MiB more and run again to resume") from None
        raise
    finally:
        bar.close()
    if total is not None and written < total:
        raise UserError(f"download of {url} is truncated: {written} of {total} bytes (kept as {part.name}); run the "
                        f"same command again to resume")


# ------------------------------------------------------------------------------------------------ the weights
def fetch_weights(handle: str, target: Path, sha256: str = "", cache_dir: Path | None = None) -> dict:
    """The TF-Hub model through tensorflow_hub's resolver (its cache: $TFHUB_CACHE_DIR), copied whole to TARGET.
    The resolver does its own HTTP (not supply/fetch.py's rules): a handle with credentials or a query is refused."""
    from xeontl.experiment.model import saved_model_architecture, weights_sha256

    if "://" in handle and redact.url(handle) != handle:
        raise UserError(f"--weights-handle {redact.url(handle)}: credentials or a query in a TF-Hub handle would go "
                        f"wherever TF-Hub's resolver is redirected; give a plain URL, or bring the weights with "
                        f"`invoke assets --from FILE`")
    target = Path(target)
    if (target / "saved_model.pb").is_file():
        digest = weights_sha256(target)
        if sha256 and digest != sha256:
            raise UserError(f"{target} has sha256 {digest}, expected {sha256}: remove it and fetch again")
        return {"path": str(target), "sha256": digest, "source": "already present"}
    cache = Path(cache_dir or os.environ.get("TFHUB_CACHE_DIR") or Path.home() / ".cache" / "xeontl" / "tfhub")
    os.environ["TFHUB_CACHE_DIR"] = str(cache)
    import tensorflow_hub as hub

    try:
        resolved = Path(hub.resolve(handle))
    except urllib.error.HTTPError as e:
        raise UserError(f"TF-Hub could not fetch {redact.text(handle)}: HTTP {e.code} {redact.text(str(e.reason))}: "
                        f"check the handle, or "
                        f"bring the weights with `invoke assets --from FILE`") from None
    except (urllib.error.URLError, OSError, ValueError, tarfile.TarError) as e:
        raise UserError(f"TF-Hub could not fetch {redact.text(handle)} ({type(e).__name__}: "
                        f"{redact.text(str(e))[:120]}): no route to it from here? use `invoke assets --export FILE` on "
                        f"a connected machine and `--from FILE` here") from None
    if not (resolved / "saved_model.pb").is_file():
        raise UserError(f"{handle} resolved to {resolved}, which is not a SavedModel (no saved_model.pb)")
    digest = weights_sha256(resolved)
    if sha256 and digest != sha256:
        raise UserError(f"{handle} gave weights with sha256 {digest}, expected {sha256}: not copied; the model "
                        f"changed or the pin is wrong")
    tmp = target.with_name(target.name + ".part")
    shutil.rmtree(tmp, ignore_errors=True)
    target.parent.mkdir(parents=True, exist_ok=True)
    shutil.copytree(resolved, tmp)
    os.replace(tmp, target)
    return {"path": str(target), "sha256": digest, "source": handle, "tfhub_cache": str(resolved),
            **saved_model_architecture(target)}


# ------------------------------------------------------------------------------------------------ trust on first use
def seen_store() -> Path:
    """Where this user's first-seen weight hashes live (never /tmp: another user could plant it)."""
    state = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(state) / "xeontl" / "weights-first-seen.json"


def pin_weights(cfg: dict) -> dict | None:
    """The weights a run reads, held to a hash: the config's weights_sha256 where it has one (the paper's TF-Hub
    model publishes none the bundle could pin); otherwise the hash they had the first time this user ran them,
    recorded then (seen_store) and checked on every later run: weights replaced behind a reviewer's back stop the run
    in one line. A SavedModel is executable graph code. Returns what provenance records (weights_pin).

    The pin is on the content, under both names of it: the path as the config gives it (absolute, links not
    resolved) and the file it resolves to. Retargeting a link the config names (`link.h5` -> other weights) finds
    the link's own entry and is refused, never a "first use" of a new resolved path; "first use" is only for a name
    never seen under either."""
    from xeontl.experiment.model import weights_sha256

    kind, sep, raw = cfg["weights"].partition(":")
    if not sep:
        return None
    given = Path(os.path.abspath(Path(raw).expanduser()))
    path = given.resolve()
    if not path.exists():  # a cluster's storage this host does not see: the ranks check weights_sha256 there
        return {"status": "not on the launcher's host: not checked here", "path": str(path)}
    digest = weights_sha256(given)
    if cfg["weights_sha256"]:
        if digest != cfg["weights_sha256"]:
            raise UserError(f"weights {given} have sha256 {digest}, expected {cfg['weights_sha256']}: re-stage them")
        return {"status": "pinned by the config (weights_sha256)", "path": str(path), "sha256": digest}
    store = seen_store()
    try:
        seen = json.loads(store.read_text())
    except (OSError, ValueError):
        seen = {}
    seen = seen if isinstance(seen, dict) else {}
    names = list(dict.fromkeys([str(given), str(path)]))
    firsts = [(name, seen[name]) for name in names if isinstance(seen.get(name), dict)]
    for name, first in firsts:
        if first.get("sha256") != digest:
            raise UserError(f"weights {name} have sha256 {digest}, not the {first.get('sha256')} they had at their "
                            f"first use ({first.get('first_seen')}, {store}): if they were replaced on purpose, pin "
                            f"them with --set weights_sha256={digest}; nothing was run")
    if len(firsts) < len(names):  # a name not seen before: recorded now (beside the other, if that one was)
        stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
        seen = {**seen, **{name: {"sha256": digest, "first_seen": stamp} for name in names if name not in dict(firsts)}}
        store.parent.mkdir(parents=True, exist_ok=True)
        tmp = store.with_name(f".{store.name}.{os.getpid()}")
        tmp.write_text(json.dumps(seen, indent=1) + "\n")
        os.replace(tmp, store)
    if not firsts:
        return {"status": "first use: its hash recorded, later runs are held to it", "path": str(path),
                "sha256": digest, "store": str(store)}
    return {"status": "the hash of its first use", "path": str(path), "sha256": digest,
            "first_seen": firsts[0][1].get("first_seen"), "store": str(store)}


# ------------------------------------------------------------------------------------------------ what a profile needs
def manual_dir(cfg: dict) -> Path:
    return Path(data.tfds_dirs(cfg)[1])


def placed(cfg: dict, weights, folder, tfds) -> dict:
    """The config with each file it reads put where the caller says: weights(PATH) for savedmodel:/keras: weights,
    folder(PATH) for a folder dataset, tfds(cfg) -> (data_dir, manual_dir) for the TFDS dataset."""
    out = dict(cfg)
    kind, sep, raw = cfg["weights"].partition(":")
    if sep and kind in ("savedmodel", "keras"):
        out["weights"] = f"{kind}:{weights(Path(raw).expanduser())}"
    if cfg["dataset"].startswith("folder:"):
        out["dataset"] = f"folder:{folder(Path(cfg['dataset'][7:]).expanduser())}"
    if cfg["dataset"] == "tfds":
        out["data_dir"], out["manual_dir"] = map(str, tfds(cfg))
    return out


def absolute(cfg: dict, cache_synthetic: bool = True) -> dict:
    """The config with every host path it reads made absolute (weights, a folder dataset, TFDS's dirs for a tfds
    dataset), so the ranks see the same files wherever they run: the docker engine mounts these very paths."""
    out = placed(cfg, Path.resolve, Path.resolve, lambda c: [Path(d).resolve() for d in data.tfds_dirs(c)])
    # The synthetic set is made once, on this host, and read by every run here. Not for Slurm: the nodes may not see
    # this host's cache, and Charliecloud cannot bind a path the image lacks (ch-run: "can't mkdir ... Read-only file
    # system" for ~/.cache/xeontl/synthetic): the ranks make it themselves, as before.
    if cfg["dataset"] == "synthetic" and cache_synthetic:
        root = cfg["data_dir"] or Path(os.environ.get("XEONTL_CACHE_DIR") or Path.home() / ".cache" / "xeontl")
        out["data_dir"] = str((Path(root).expanduser() / ("" if cfg["data_dir"] else "synthetic")).resolve())
    return out


def host_paths(cfg: dict) -> list[str]:
    """The (absolute) paths a config reads, for read-only mounts."""
    kind, sep, raw = cfg["weights"].partition(":")
    paths = [raw] if sep and kind in ("savedmodel", "keras") else []
    if cfg["dataset"].startswith("folder:"):
        paths.append(cfg["dataset"][7:])
    if cfg["dataset"] == "tfds":
        paths.append(cfg["data_dir"])
        if not cfg["manual_dir"].startswith(cfg["data_dir"] + "/"):
            paths.append(cfg["manual_dir"])
    if cfg["dataset"] == "synthetic" and cfg["data_dir"]:
        paths.append(cfg["data_dir"])
    return [str(Path(path).expanduser().resolve()) for path in paths]


def needed(cfg: dict) -> dict[str, Path]:
    """The assets a config reads that can be fetched or made: {"weights": DIR, "data": ARCHIVE, "synthetic": FILE}
    (only what is missing)."""
    out = {}
    cache = data.synthetic_cache_file(cfg) if cfg["dataset"] == "synthetic" else None
    if cache is not None and not cache.is_file():
        out["synthetic"] = cache
    kind, _, raw = cfg["weights"].partition(":")
    if kind == "savedmodel" and not (Path(raw).expanduser() / "saved_model.pb").is_file():
        out["weights"] = Path(raw).expanduser()
    if cfg["dataset"] == "tfds" and not _tfds_prepared(cfg):
        archive = manual_dir(cfg) / data.ARCHIVE_NAME
        if not archive.is_file():
            out["data"] = archive
    return out


def _tfds_prepared(cfg: dict) -> bool:
    return any((Path(data.tfds_dirs(cfg)[0]) / "colorectal_histology").glob("*/dataset_info.json"))


def fetch(cfg: dict, weights_handle: str = WEIGHTS_HANDLE, data_url: str = DATA_URL, progress: bool = True,
          manifest: Path | None = None) -> dict:
    """Everything the config needs and lacks, fetched and verified; the manifest updated. Returns its entries."""
    got = {}
    todo = needed(cfg)
    if "synthetic" in todo:  # made, not fetched: nothing to record in the manifest
        data.write_synthetic_cache(cfg)
    if ("weights" in todo or (cfg["dataset"] == "tfds" and not _tfds_prepared(cfg))) and not all(
            importlib.util.find_spec(m) for m in ("tensorflow", "tensorflow_hub", "tensorflow_datasets")):
        raise UserError("the paper's weights and data are prepared on this host with TF Hub and TFDS, which this "
                        "Python lacks: run `invoke setup --native` (or bring them with `invoke assets --from FILE`)")
    if "data" in todo:
        got["data"] = fetch_file(data_url, todo["data"], cfg["archive_sha256"],
                                 data.ARCHIVE_BYTES if cfg["archive_sha256"] == data.ARCHIVE_SHA256 else None,
                                 progress=progress)
    if "weights" in todo:
        got["weights"] = fetch_weights(weights_handle, todo["weights"], cfg["weights_sha256"])
    if cfg["dataset"] == "tfds" and not _tfds_prepared(cfg):
        # prepared here, on the host, so the ranks (a container's user included) only read it
        data.prepare_tfds(cfg)
    if got:
        record(got, manifest or MANIFEST)
    return got


MANIFEST = Path("assets") / "manifest.json"


def record(entries: dict, manifest: Path) -> None:
    doc = records.read_record(manifest, "assets-manifest", missing={})
    stamp = datetime.now(timezone.utc).isoformat(timespec="seconds")
    # a URL's credentials never reach the manifest, whichever field holds it
    doc.update({k: {**{f: redact.text(x) if isinstance(x, str) else x for f, x in v.items()}, "recorded_utc": stamp}
                for k, v in entries.items()})
    manifest.parent.mkdir(parents=True, exist_ok=True)
    manifest.write_text(json.dumps(doc, indent=1) + "\n")


# ------------------------------------------------------------------------------------------------ air-gapped hosts
def export(cfg: dict, out: Path) -> dict:
    """Pack the verified assets the config reads into OUT (a tar with a manifest of sha256s)."""
    from xeontl.experiment.model import weights_sha256

    out = Path(out)
    if out.exists():
        raise UserError(f"{out} exists: choose another --export file, nothing was overwritten")
    missing = needed(cfg)
    if missing:
        raise UserError(f"cannot export: {', '.join(f'{k} ({v})' for k, v in missing.items())} missing; fetch them "
                        f"first with `invoke assets`")
    items = {}
    _, _, weights = cfg["weights"].partition(":")
    if cfg["weights"].startswith("savedmodel:"):
        items["weights"] = (Path(weights).expanduser(), weights_sha256(Path(weights).expanduser()))
    archive = manual_dir(cfg) / data.ARCHIVE_NAME
    if cfg["dataset"] == "tfds" and archive.is_file():
        items["data"] = (archive, sha256_file(archive))
    manifest = {k: {"name": k if k == "weights" else data.ARCHIVE_NAME, "sha256": h} for k, (p, h) in items.items()}
    tmp = out.with_name(out.name + ".part")
    with tarfile.open(tmp, "w") as tar:
        info = tarfile.TarInfo("xeontl-assets.json")
        body = json.dumps(manifest, indent=1).encode()
        info.size = len(body)
        info.mtime = int(time.time())
        tar.addfile(info, io.BytesIO(body))
        for k, (path, _) in items.items():
            tar.add(path, arcname=manifest[k]["name"])
    os.replace(tmp, out)
    return manifest


# What a bundle may hold: its manifest, the weights dir, the Kather archive; at most this much unpacked.
BUNDLE_LIMIT = 8 << 30
BUNDLE_MANIFEST = "xeontl-assets.json"


def _bundle_members(tar: tarfile.TarFile, bundle: Path) -> dict[str, tarfile.TarInfo]:
    """The bundle's members by name, each one confined: a plain file or directory under a name export() writes
    (never absolute, never '..', never a link or a device), the whole no larger than BUNDLE_LIMIT."""
    out, total = {}, 0
    for m in tar.getmembers():
        name = m.name
        ok = name == BUNDLE_MANIFEST or name == data.ARCHIVE_NAME or name == "weights" or name.startswith("weights/")
        if not ok or name.startswith("/") or ".." in Path(name).parts or not (m.isfile() or m.isdir()):
            raise UserError(f"--from {bundle}: member {name!r} is not one `invoke assets --export` writes (a link, a "
                            f"device, or a path outside the bundle's names): refused, nothing was unpacked")
        if name in out or (name == data.ARCHIVE_NAME and not m.isfile()) or (name == "weights" and not m.isdir()):
            what = "a second copy" if name in out else "of the wrong kind"
            raise UserError(f"--from {bundle}: member {name!r} is {what} (`invoke assets --export` writes the archive "
                            f"as a file, the weights as a directory): refused, nothing was unpacked")
        total += m.size
        if total > BUNDLE_LIMIT:
            raise UserError(f"--from {bundle}: more than {BUNDLE_LIMIT >> 30} GiB of content: refused, nothing was "
                            f"unpacked")
        out[name] = m
    return out


def _plain(member: tarfile.TarInfo) -> tarfile.TarInfo:
    """MEMBER as it is placed: owned by whoever imports (as root, extractall would otherwise chown it to the uid the
    bundle names), its mode without set-id or sticky bits and writable by its owner only (without tarfile's "data"
    filter, extractall would chmod a 4755 member setuid)."""
    out = copy.copy(member)
    out.uid, out.gid, out.uname, out.gname = os.geteuid(), os.getegid(), "", ""
    out.mode = 0o755 if member.isdir() else member.mode & 0o755
    return out


def _member_sha256(tar: tarfile.TarFile, member: tarfile.TarInfo) -> str:
    h, f = hashlib.sha256(), tar.extractfile(member)
    while block := f.read(CHUNK):
        h.update(block)
    return h.hexdigest()


def _bundle_digest(tar: tarfile.TarFile, members: dict, kind: str) -> str:
    """What weights_sha256 / sha256_file would say of the entry once unpacked, read from the tar's streams."""
    if kind == "data":
        return _member_sha256(tar, members[data.ARCHIVE_NAME])
    from xeontl.experiment.model import tree_sha256

    # the same function as weights_sha256 on the unpacked dir (item 10: this one sorted names as strings, that one
    # paths, and `a.txt` beside `a/b` was refused)
    return tree_sha256({n.removeprefix("weights/"): _member_sha256(tar, m) for n, m in members.items()
                        if n.startswith("weights/") and m.isfile()})


def import_(cfg: dict, bundle: Path, manifest_file: Path | None = None) -> dict:
    """Unpack a bundle made by export() where the config reads the assets. Nothing lands before everything is checked:
    the tar must be plain (as export writes it: no decompression to bomb /tmp), every member confined to the names
    export writes, every sha256 computed from the tar's own streams against its manifest and the config's pins; then
    each entry is unpacked beside its destination and renamed into place. An existing destination is checked too."""
    from xeontl.experiment.model import weights_sha256

    bundle = Path(bundle)
    if not bundle.is_file():
        raise UserError(f"--from {bundle}: no such file")
    try:
        tar = tarfile.open(bundle, "r:")
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"--from {bundle} is not an assets bundle (a plain tar; {str(e).splitlines()[0][:80]}): make "
                        f"one with `invoke assets --export`") from None
    got = {}
    with tar:
        try:
            members = _bundle_members(tar, bundle)
            if BUNDLE_MANIFEST not in members or members[BUNDLE_MANIFEST].size > 1 << 16:
                raise ValueError(f"no {BUNDLE_MANIFEST}")
            manifest = records.parse(tar.extractfile(members[BUNDLE_MANIFEST]).read(), "assets-bundle",
                                     f"--from {bundle}: {BUNDLE_MANIFEST}", "its manifest is not one `invoke assets "
                                     "--export` writes; nothing was unpacked")
            if not isinstance(manifest, dict) or not set(manifest) <= {"weights", "data"} or any(
                    not isinstance(e, dict) or e.get("name") != ("weights" if k == "weights" else data.ARCHIVE_NAME)
                    or not re.fullmatch(r"[0-9a-f]{64}", str(e.get("sha256"))) for k, e in manifest.items()):
                raise ValueError("its manifest is not one `invoke assets --export` writes")
            verified = {}
            for kind, entry in manifest.items():  # every sha256, from the tar's streams, before anything is unpacked
                if kind == "data" and data.ARCHIVE_NAME not in members:
                    raise ValueError(f"it lists {data.ARCHIVE_NAME} but does not hold it")
                pb = members.get("weights/saved_model.pb")
                if kind == "weights" and not (pb and pb.isfile()):  # an empty weights/ hashes as valid: refused
                    raise ValueError("it lists weights but holds no SavedModel (no weights/saved_model.pb)")
                digest = _bundle_digest(tar, members, kind)
                pinned = cfg["weights_sha256"] if kind == "weights" else cfg["archive_sha256"]
                if digest != entry["sha256"] or (pinned and digest != pinned):
                    raise UserError(f"--from {bundle}: {entry['name']} has sha256 {digest}, expected "
                                    f"{pinned or entry['sha256']}: the bundle is corrupt or from other assets; nothing "
                                    f"was unpacked")
                _, _, weights = cfg["weights"].partition(":")
                dest = Path(weights).expanduser() if kind == "weights" else manual_dir(cfg) / data.ARCHIVE_NAME
                if dest.exists():
                    have = weights_sha256(dest) if kind == "weights" else sha256_file(dest)
                    if have != digest:
                        raise UserError(f"--from {bundle}: {dest} exists with sha256 {have}, not the bundle's "
                                        f"{digest}: nothing was replaced; move it away to import these")
                verified[kind] = (dest, digest)
        except (ValueError, KeyError, tarfile.TarError, EOFError) as e:
            raise UserError(f"--from {bundle} is not an assets bundle ({str(e).splitlines()[0][:100]}): make one "
                            f"with `invoke assets --export`; nothing was unpacked") from None
        for kind, (dest, digest) in verified.items():
            if dest.exists():
                got[kind] = {"path": str(dest), "sha256": digest, "source": "already present"}
                continue
            dest.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=".xeontl-import-", dir=dest.parent) as d:
                prefix = "weights" if kind == "weights" else data.ARCHIVE_NAME
                part = [m for n, m in members.items() if n == prefix or n.startswith(prefix + "/")]
                # members checked already (_bundle_members), placed as the importer's with plain modes (_plain); and
                # tarfile's own "data" filter where this Python has it (3.11.4+; Debian 12's 3.11.2 has not)
                tar.extractall(d, members=[_plain(m) for m in part],
                               **({"filter": "data"} if hasattr(tarfile, "data_filter") else {}))
                src = Path(d) / prefix
                again = weights_sha256(src) if kind == "weights" else sha256_file(src)
                if again != digest:  # the file changed between the check and the unpacking
                    raise UserError(f"--from {bundle}: {prefix} changed while it was unpacked: nothing was placed")
                os.replace(src, dest)
            got[kind] = {"path": str(dest), "sha256": digest, "source": f"bundle {bundle.name}"}
    record(got, manifest_file or MANIFEST)
    return got
