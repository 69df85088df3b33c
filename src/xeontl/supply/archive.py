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

import contextlib
import gzip
import hashlib
import io
import json
import os
import re
import subprocess
import tarfile
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

from xeontl import __version__
from xeontl.common import records
from xeontl.common.errors import UserError
from xeontl.supply import dockerapi
from xeontl.supply import image as imagelib

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
    return records.read_record(path, "archive-record", missing=None)


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


def _gzip_into(out: Path, writer, what: str) -> None:
    """WRITER(stream) | gzip -1 > OUT (gzip in a process of its own, compressing while the daemon streams), one line
    if either fails (e.g. a full disk)."""
    with open(out, "wb") as f, tempfile.TemporaryFile() as err:
        gz = subprocess.Popen(["gzip", "-1"], stdin=subprocess.PIPE, stdout=f, stderr=err)
        failed = None
        try:
            writer(gz.stdin)
        except (UserError, BrokenPipeError) as e:
            failed = str(e)
        with contextlib.suppress(BrokenPipeError):
            gz.stdin.close()
        rc = gz.wait()
        err.seek(0)
        said = err.read().decode(errors="replace").strip().splitlines()
    if rc or failed:
        if failed and failed.startswith(what):
            raise UserError(failed)
        raise UserError(f"{what} failed ({(said or [failed or 'gzip failed'])[-1]}): free disk space where the "
                        f"archive is written, then try again")


def make(output: Path | None, image: str = "xeontl:latest", with_assets: bool = False, profile: str = "paper",
         sign: Path | None = None) -> Path:
    """`invoke archive`: the image of this commit, its source, (the assets), a manifest and SHA256SUMS in one tar;
    with SIGN (an ssh private key), SHA256SUMS.sig too: `ssh-keygen -Y sign` under the namespace xeontl-archive, the
    trust anchor `invoke build --from FILE --verify-with ALLOWED_SIGNERS` checks."""
    if sign is not None and not Path(sign).is_file():
        raise UserError(f"--sign {sign}: no such key file (an ssh private key, e.g. ~/.ssh/id_ed25519)")
    commit = _git("rev-parse", "HEAD")
    if not commit:
        raise UserError("not a git checkout: `invoke archive` packs the source of a commit (git archive)")
    if _git("status", "--porcelain", "--untracked-files=no"):
        raise UserError("the checkout has uncommitted changes: commit them first (the archive carries one commit, "
                        "and its image must be built from exactly that)")
    inputs = imagelib.checkout_inputs_hash()
    info = dockerapi.require_image(image, inputs)  # built from this commit, or one line
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
        deps_info = dockerapi.inspect(deps)
        refs = [image, *([deps] if deps_info else [])]
        print(f"xeontl archive: docker save {' '.join(refs)} | gzip -1 ...", flush=True)
        _gzip_into(work / "image.tar.gz", lambda out: dockerapi.save(refs, out), "docker save")
        members["image.tar.gz"] = work / "image.tar.gz"
        print("xeontl archive: git archive HEAD ...", flush=True)
        _pipe(["git", "-C", str(imagelib.ROOT), "archive", "--format=tar", "--prefix=xeontl/", commit], ["gzip", "-9"],
              work / "source.tar.gz", "git archive")
        members["source.tar.gz"] = work / "source.tar.gz"
        if with_assets:
            from xeontl.experiment import config
            from xeontl.supply import assets

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
        signed = []
        if sign is not None:
            r = subprocess.run(["ssh-keygen", "-Y", "sign", "-f", str(sign), "-n", NAMESPACE, str(work / "SHA256SUMS")],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise UserError(f"--sign {sign}: ssh-keygen could not sign ({r.stderr.strip()[:100]})")
            signed = [SIGNATURE]
        partial = out.with_name(f".{out.name}.partial")
        try:
            with tarfile.open(partial, "w") as tar:
                for name in ("manifest.json", "SHA256SUMS", *signed, *members):
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


SIGNATURE = "SHA256SUMS.sig"
NAMESPACE = "xeontl-archive"  # ssh-keygen -Y's namespace: a signature made for anything else does not verify here
REQUIRED = ("image.tar.gz", "source.tar.gz")
SUMS_LINE = re.compile(r"([0-9a-f]{64})  ([A-Za-z0-9._-]+)")


def _sums(text: str, path: Path) -> dict[str, str]:
    """SHA256SUMS as `invoke archive` writes it (`sha256sum`'s format: digest, two spaces, name), every line."""
    sums = {}
    for line in text.splitlines():
        m = SUMS_LINE.fullmatch(line)
        if not m:
            raise UserError(f"{path}: its SHA256SUMS has a line not in `<sha256>  <name>` form ({line[:60]!r}): not "
                            f"made by `invoke archive`; nothing was loaded")
        sums[m[2]] = m[1]
    return sums


def _manifest(raw: bytes, path: Path) -> dict:
    try:
        doc = records.parse(raw, "archive-manifest", f"{path}: manifest.json",
                            "its manifest.json is not one `invoke archive` writes: nothing was loaded")
        assert isinstance(doc, dict) and isinstance(doc["members"], dict) and isinstance(doc["image"], dict)
        assert re.fullmatch(r"sha256:[0-9a-f]{64}", doc["image"]["id"]) and isinstance(doc["commit"], str)
        assert all(re.fullmatch(r"[0-9a-f]{64}", m["sha256"]) for m in doc["members"].values())
    except (ValueError, KeyError, TypeError, AssertionError):
        raise UserError(f"{path}: its manifest.json is not one `invoke archive` writes: nothing was loaded") from None
    return doc


def _signature(tar, members: dict, sums_text: bytes, path: Path, allowed: Path | None) -> dict:
    """The trust anchor: SHA256SUMS signed with `ssh-keygen -Y sign` (invoke archive --sign KEY), verified against
    an allowed-signers file (invoke build --from FILE --verify-with ALLOWED_SIGNERS). Without --verify-with the
    archive vouches only for itself (its checksums and manifest agree), and that is said."""
    if allowed is None:
        return {"verified": False, "why": "no --verify-with: the archive's checksums vouch only for themselves"}
    if SIGNATURE not in members:
        raise UserError(f"{path} is not signed (no {SIGNATURE}): --verify-with needs an archive made with `invoke "
                        f"archive --sign KEY`; nothing was loaded")
    if not Path(allowed).is_file():
        raise UserError(f"--verify-with {allowed}: no such file (an ssh allowed_signers file: `PRINCIPAL KEY` lines)")
    with tempfile.TemporaryDirectory(prefix="xeontl-verify-") as d:
        sig = Path(d) / SIGNATURE
        sig.write_bytes(tar.extractfile(members[SIGNATURE]).read(1 << 16))
        who = subprocess.run(["ssh-keygen", "-Y", "find-principals", "-s", str(sig), "-f", str(allowed)],
                             capture_output=True, text=True)
        principal = who.stdout.strip().splitlines()[0] if who.returncode == 0 and who.stdout.strip() else None
        if principal is None:
            raise UserError(f"{path}: its signature is by no key of {allowed}: nothing was loaded")
        ok = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal, "-n", NAMESPACE,
                             "-s", str(sig)], input=sums_text, capture_output=True)
        if ok.returncode != 0:
            raise UserError(f"{path}: its signature does not verify for {principal} ({ok.stderr.decode().strip()[:80]})"
                            f": the archive was altered after it was signed; nothing was loaded")
    return {"verified": True, "principal": principal, "allowed_signers": str(Path(allowed).resolve())}


def verify(path: Path, allowed_signers: Path | None = None) -> dict:
    """Every member against SHA256SUMS (which must list every member, image.tar.gz and source.tar.gz included), the
    manifest against both, the signature where asked, and the archive against this checkout: one line for the first
    problem, nothing loaded. Returns the manifest (with what vouched for it under "trust")."""
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
        for needed in ("manifest.json", "SHA256SUMS", *REQUIRED):
            if needed not in members:
                raise UserError(f"{path} has no {needed}: not made by `invoke archive`, or truncated; copy it again")
        sums_text = tar.extractfile(members["SHA256SUMS"]).read(1 << 20)
        sums = _sums(sums_text.decode(errors="replace"), path)
        unlisted = sorted(set(members) - set(sums) - {"SHA256SUMS", SIGNATURE})
        if unlisted or "manifest.json" not in sums:
            raise UserError(f"{path}: {', '.join(unlisted) or 'manifest.json'} not in its SHA256SUMS: an archive "
                            f"member nobody vouched for; nothing was loaded")
        trust = _signature(tar, members, sums_text, path, allowed_signers)
        for name, want in sums.items():
            if name not in members:
                raise UserError(f"{path} lacks {name}, which its SHA256SUMS lists: truncated; copy it again")
            h, f = hashlib.sha256(), tar.extractfile(members[name])
            try:
                while chunk := f.read(CHUNK):
                    h.update(chunk)
            except (tarfile.TarError, EOFError, OSError) as e:
                raise UserError(f"{path}: {name} is truncated ({e}): copy the archive again") from None
            if h.hexdigest() != want:
                raise UserError(f"{path}: {name} has sha256 {h.hexdigest()[:16]}..., its SHA256SUMS says "
                                f"{want[:16]}...: the archive was altered or damaged; nothing was loaded")
        manifest = _manifest(tar.extractfile(members["manifest.json"]).read(1 << 20), path)
        if set(manifest["members"]) != set(sums) - {"manifest.json"} or any(
                manifest["members"][n]["sha256"] != sums[n] for n in manifest["members"]):
            raise UserError(f"{path}: its manifest and its SHA256SUMS list other members or digests: altered; "
                            f"nothing was loaded")
    here = imagelib.checkout_inputs_hash()
    if here is not None and manifest["image"]["inputs"] != here:
        raise UserError(f"{path} holds the image of commit {manifest['commit'][:12]} (inputs "
                        f"{manifest['image']['inputs']}), this checkout is inputs {here}: check out "
                        f"{manifest['commit'][:12]} (its source is in the archive), or build here; nothing was loaded")
    return {**manifest, "trust": trust}


def _saved_images(stream) -> list[dict]:
    """The images of a `docker save` stream, from its own files: each manifest entry's config (an image's id is the
    sha256 of its config) with the digest its content really has, and the tags the save carries."""
    configs, entries = {}, None
    with tarfile.open(fileobj=stream, mode="r|") as saved:
        for m in saved:
            if m.name == "manifest.json":
                entries = records.parse(saved.extractfile(m).read(1 << 20), "docker-save-manifest",
                                        "the archive's image.tar.gz: manifest.json")
            elif re.fullmatch(r"(blobs/sha256/)?[0-9a-f]{64}(\.json)?", m.name) and m.isfile() and m.size < 1 << 22:
                data = saved.extractfile(m).read()
                with contextlib.suppress(ValueError):
                    if "rootfs" in json.loads(data):  # an image config, not a layer
                        configs[m.name] = hashlib.sha256(data).hexdigest()
    if not isinstance(entries, list):
        raise UserError("the archive's image.tar.gz is not a `docker save` (no manifest.json): nothing was loaded")
    return [{"config": e.get("Config"), "id": f"sha256:{configs.get(e.get('Config'), '?')}",
             "tags": e.get("RepoTags") or []} for e in entries]


def _untagged(stream, out) -> None:
    """The `docker save` stream with its tags removed (RepoTags null, no `repositories` file): `docker load` then
    loads the images by id and moves no tag; xeontl tags the checked id itself."""
    with tarfile.open(fileobj=stream, mode="r|") as saved, tarfile.open(fileobj=out, mode="w|") as loaded:
        for m in saved:
            if m.name == "repositories":
                continue
            f = saved.extractfile(m) if m.isfile() else None
            if m.name == "manifest.json":
                saved_manifest = records.parse(f.read(1 << 20), "docker-save-manifest", "image.tar.gz: manifest.json")
                body = json.dumps([{**e, "RepoTags": None} for e in saved_manifest]).encode()
                m.size, f = len(body), io.BytesIO(body)
            loaded.addfile(m, f)


def load(path: Path, tag: str = "xeontl:latest", verify_with: Path | None = None) -> dict:
    """`invoke build --from FILE`: verify (and check the signature with VERIFY_WITH); read the saved images' ids from
    their own configs and check them against the manifest before anything is loaded; load them untagged (a tag stored
    in the archive cannot move one of the user's); then tag the checked id and record the archive."""
    t0 = time.time()
    manifest = verify(path, verify_with)
    if not manifest["trust"]["verified"]:
        print(f"xeontl build --from: not verified against a signer: {manifest['trust']['why']} (give --verify-with "
              f"ALLOWED_SIGNERS for an archive made with `invoke archive --sign KEY`)", flush=True)
    dockerapi.check_daemon()
    want = manifest["image"]["id"]
    deps = (manifest.get("deps_image") or {}).get("id")
    with tarfile.open(path, "r:") as tar:
        member = _members(tar, Path(path))["image.tar.gz"]
        try:
            with gzip.open(tar.extractfile(member)) as image:
                found = {i["id"] for i in _saved_images(image)}
        except (OSError, EOFError, tarfile.TarError, ValueError) as e:
            raise UserError(f"the archive's image.tar.gz is not a readable `docker save` ({e}): nothing was loaded") \
                from None
        missing = [i for i in (want, deps) if i and i not in found]
        if missing:
            raise UserError(f"the archive's image.tar.gz does not hold image {missing[0][:19]} its manifest names "
                            f"(it holds {', '.join(sorted(i[:19] for i in found))}): nothing was loaded")
        print(f"xeontl build --from: docker load of {want[:19]} (its tags stripped) ...", flush=True)
        with gzip.open(tar.extractfile(member)) as image:
            dockerapi.load(dockerapi.chunks_written(lambda out: _untagged(image, out)))
    info = dockerapi.inspect(want)
    if info is None or info["Id"] != want:
        raise UserError(f"the loaded image is not {want[:19]}: the archive is damaged; copy it again")
    content_tag = f"xeontl:inputs-{manifest['image']['inputs']}"
    tags = [content_tag, tag]
    if deps and manifest.get("deps_image", {}).get("ref"):
        dockerapi.tag(deps, manifest["deps_image"]["ref"])
    for t in tags:
        dockerapi.tag(want, t)
    record = {"archive": str(Path(path).resolve()), "archive_sha256": _sha256(Path(path)), "commit": manifest["commit"],
              "image_id": want, "loaded": datetime.now(timezone.utc).isoformat(), "trust": manifest["trust"]}
    records_dir().mkdir(parents=True, exist_ok=True)
    (records_dir() / f"{want.replace(':', '_')}.json").write_text(json.dumps(record, indent=1))
    print(f"xeontl build --from: {tag} = {want[:19]} (commit {manifest['commit'][:12]}) in {time.time() - t0:.0f} s")
    return record
