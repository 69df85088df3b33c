"""One file to carry: `invoke archive` packs the image (`docker save`, identified by its id), the source of the
commit (`git archive`, which carries results/reference), the assets when asked, a manifest (versions, digests,
sizes) and SHA256SUMS into one tar; `invoke build --from FILE` verifies every checksum and that the archive is this
checkout's before loading anything, then loads the image and tags it. A run's provenance then says its image came
from that archive (execution.image.archive).

Layout of the archive (an uncompressed tar, so members can be verified and read as streams):

    xeontl-archive/manifest.json   versions, commit, image id and inputs hash, member sizes and sha256s
    xeontl-archive/SHA256SUMS      `sha256sum -c`-able list of the members below
    xeontl-archive/image.tar.gz    docker save of the image and its deps image (for source-only rebuilds), gzip -1
    xeontl-archive/source.tar.gz   git archive of the commit (src, docker, tests, results/reference, docs, ...)
    xeontl-archive/assets.tar      with --with-assets: the paper's verified assets (invoke assets --export)
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from xeontl import __version__, dockercli
from xeontl import image as imagelib
from xeontl.errors import UserError

ROOT = "xeontl-archive"
CHUNK = 1 << 20


def records_dir() -> Path:
    """Where `build --from` records which archive an image came from (read by the docker engine's provenance)."""
    return Path(os.environ.get("XEONTL_CACHE_DIR") or Path.home() / ".cache" / "xeontl") / "archives"


def archived_from(image_id: str | None) -> dict | None:
    """The record of the archive the image IMAGE_ID was loaded from by `invoke build --from`, if it was."""
    if not image_id:
        return None
    path = records_dir() / f"{image_id.replace(':', '_')}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def _git(*args: str) -> str:
    r = subprocess.run(["git", "-C", str(imagelib.ROOT), *args], capture_output=True, text=True)
    return r.stdout.strip() if r.returncode == 0 else ""


def _pipe(first: list[str], second: list[str], out: Path, what: str) -> None:
    """FIRST | SECOND > OUT, one line if either fails (e.g. a full disk)."""
    with open(out, "wb") as f:
        a = subprocess.Popen(first, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        b = subprocess.Popen(second, stdin=a.stdout, stdout=f, stderr=subprocess.PIPE)
        a.stdout.close()
        b_err = b.communicate()[1]
        a_err = a.stderr.read()
        a.wait()
    if a.returncode or b.returncode:
        why = (a_err or b_err).decode(errors="replace").strip().splitlines()[-1:] or ["failed"]
        raise UserError(f"{what} failed ({why[0]}): free disk space where the archive is written, then try again")


def make(output: Path | None, image: str = "xeontl:latest", with_assets: bool = False, profile: str = "paper") -> Path:
    """`invoke archive`: the image of this commit, its source, (the assets), a manifest and SHA256SUMS in one tar."""
    commit = _git("rev-parse", "HEAD")
    if not commit:
        raise UserError("not a git checkout: `invoke archive` packs the source of a commit (git archive)")
    if _git("status", "--porcelain", "--untracked-files=no"):
        raise UserError("the checkout has uncommitted changes: commit them first (the archive carries one commit, "
                        "and its image must be built from exactly that)")
    inputs = imagelib.checkout_inputs_hash()
    info = dockercli.require_image(image, inputs)  # built from this commit, or one line
    out = Path(output) if output else Path(f"xeontl-{__version__}-{commit[:12]}.tar")
    if out.exists():
        raise UserError(f"{out} exists: choose another --output, nothing was overwritten")
    out.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix=".xeontl-archive-", dir=out.parent) as d:
        work = Path(d)
        members = {}
        # the deps image too (its layers are the image's own, so it costs only its config): with it, the other
        # machine rebuilds after a source change in seconds instead of building TensorFlow's layers and Horovod again
        deps = imagelib.deps_tag()
        deps_info = dockercli.inspect(deps)
        refs = [image, *([deps] if deps_info else [])]
        print(f"xeontl archive: docker save {' '.join(refs)} | gzip -1 ...", flush=True)
        _pipe(["docker", "save", *refs], ["gzip", "-1"], work / "image.tar.gz", "docker save")
        members["image.tar.gz"] = work / "image.tar.gz"
        print("xeontl archive: git archive HEAD ...", flush=True)
        _pipe(["git", "-C", str(imagelib.ROOT), "archive", "--format=tar", "--prefix=xeontl/", commit], ["gzip", "-9"],
              work / "source.tar.gz", "git archive")
        members["source.tar.gz"] = work / "source.tar.gz"
        if with_assets:
            from xeontl import assets, config

            assets.export(config.resolve(profile), work / "assets.tar")
            members["assets.tar"] = work / "assets.tar"
        sums = {name: _sha256(p) for name, p in members.items()}
        manifest = {
            "xeontl_version": __version__, "commit": commit, "created": datetime.now(timezone.utc).isoformat(),
            "image": {"ref": image, "id": info["Id"], "inputs": inputs, "repo_digests": info.get("RepoDigests"),
                      "labels": (info.get("Config") or {}).get("Labels") or {}, "bytes": info.get("Size")},
            "deps_image": {"ref": deps, "id": deps_info["Id"]} if deps_info else None,
            "members": {name: {"bytes": p.stat().st_size, "sha256": sums[name]} for name, p in members.items()},
            "source_includes": ["results/reference (committed)", "docs", "src", "docker", "tests"],
        }
        (work / "manifest.json").write_text(json.dumps(manifest, indent=1))
        (work / "SHA256SUMS").write_text("".join(f"{sums[n]}  {n}\n" for n in members)
                                         + f"{_sha256(work / 'manifest.json')}  manifest.json\n")
        partial = out.with_name(f".{out.name}.partial")
        try:
            with tarfile.open(partial, "w") as tar:
                for name in ("manifest.json", "SHA256SUMS", *members):
                    tar.add(work / name, arcname=f"{ROOT}/{name}")
        except OSError as e:
            partial.unlink(missing_ok=True)
            raise UserError(f"writing {out} failed ({e.strerror}): free disk space there, nothing was left behind") \
                from None
        os.replace(partial, out)
    size = out.stat().st_size
    print(f"xeontl archive: {out} ({size / 1e9:.2f} GB, image {info['Id'][:19]}, commit {commit[:12]}) in "
          f"{time.time() - t0:.0f} s; on the other machine: invoke build --from {out.name}")
    return out


def _members(tar: tarfile.TarFile, path: Path) -> dict[str, tarfile.TarInfo]:
    try:
        return {m.name.removeprefix(f"{ROOT}/"): m for m in tar.getmembers() if m.isfile()}
    except (tarfile.TarError, EOFError, OSError) as e:
        raise UserError(f"{path} is truncated or not an archive ({e}): copy it again, or make it with `invoke "
                        f"archive`") from None


def verify(path: Path) -> dict:
    """Every member's sha256 against SHA256SUMS and the manifest, and the archive against this checkout: one line
    for the first problem, nothing loaded. Returns the manifest."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--from {path}: no such file")
    try:
        tar = tarfile.open(path, "r:")  # a plain tar, as `invoke archive` writes it
    except (tarfile.TarError, OSError) as e:
        raise UserError(f"{path} is not an archive ({str(e).splitlines()[0]}): make one with `invoke archive`") \
            from None
    with tar:
        members = _members(tar, path)
        for needed in ("manifest.json", "SHA256SUMS"):
            if needed not in members:
                raise UserError(f"{path} has no {needed}: not made by `invoke archive`, or truncated; copy it again")
        manifest = json.loads(tar.extractfile(members["manifest.json"]).read())
        sums = dict(reversed(line.split("  ", 1)) for line in
                    tar.extractfile(members["SHA256SUMS"]).read().decode().splitlines() if line.strip())
        for name, want in sums.items():
            if name not in members:
                raise UserError(f"{path} lacks {name}, which its SHA256SUMS lists: truncated; copy it again")
            h, f = hashlib.sha256(), tar.extractfile(members[name])
            try:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
            except (tarfile.TarError, EOFError, OSError) as e:
                raise UserError(f"{path}: {name} is truncated ({e}): copy the archive again") from None
            if h.hexdigest() != want or (name in manifest["members"] and manifest["members"][name]["sha256"] != want):
                raise UserError(f"{path}: {name} has sha256 {h.hexdigest()[:16]}..., its SHA256SUMS says "
                                f"{want[:16]}...: the archive was altered or damaged; nothing was loaded")
    here = imagelib.checkout_inputs_hash()
    if here is not None and manifest["image"]["inputs"] != here:
        raise UserError(f"{path} holds the image of commit {manifest['commit'][:12]} (inputs "
                        f"{manifest['image']['inputs']}), this checkout is inputs {here}: check out "
                        f"{manifest['commit'][:12]} (its source is in the archive), or build here; nothing was loaded")
    return manifest


def load(path: Path, tag: str = "xeontl:latest") -> dict:
    """`invoke build --from FILE`: verify, then docker load the image, check its id, tag it, record the archive."""
    t0 = time.time()
    manifest = verify(path)
    dockercli.check_daemon()
    with tarfile.open(path, "r:") as tar:
        member = _members(tar, Path(path))["image.tar.gz"]
        print(f"xeontl build --from: docker load of {manifest['image']['id'][:19]} ...", flush=True)
        proc = subprocess.Popen(["docker", "load"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT)
        with gzip.open(tar.extractfile(member)) as image:
            shutil.copyfileobj(image, proc.stdin, CHUNK)
        proc.stdin.close()
        said = proc.stdout.read().decode(errors="replace")
        if proc.wait() != 0:
            raise UserError(f"docker load failed ({said.strip().splitlines()[-1:]}): check the Docker daemon and its "
                            f"disk space")
    want = manifest["image"]["id"]
    info = dockercli.inspect(want)
    if info is None or info["Id"] != want:
        raise UserError(f"the loaded image is not {want[:19]}: the archive is damaged; copy it again")
    content_tag = f"xeontl:inputs-{manifest['image']['inputs']}"
    for t in (content_tag, tag):
        subprocess.run(["docker", "tag", want, t], check=True, capture_output=True)
    record = {"archive": str(Path(path).resolve()), "archive_sha256": _sha256(Path(path)), "commit": manifest["commit"],
              "image_id": want, "loaded": datetime.now(timezone.utc).isoformat()}
    records_dir().mkdir(parents=True, exist_ok=True)
    (records_dir() / f"{want.replace(':', '_')}.json").write_text(json.dumps(record, indent=1))
    print(f"xeontl build --from: {tag} = {want[:19]} (commit {manifest['commit'][:12]}) in {time.time() - t0:.0f} s")
    return record

