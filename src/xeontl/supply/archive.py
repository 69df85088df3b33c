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
from xeontl.common import records, sanitize
from xeontl.common.errors import UserError
from xeontl.supply import dockerapi, imageref, savelayout
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
        # (when it loads the archive with --verify-with: an unauthenticated one tags no deps image a build reuses)
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


def _signature(sig: bytes | None, sums_text: bytes, path: Path, allowed: Path | None) -> dict:
    """The trust anchor: SHA256SUMS signed with `ssh-keygen -Y sign` (invoke archive --sign KEY), verified against
    an allowed-signers file (invoke build --from FILE --verify-with ALLOWED_SIGNERS). Without --verify-with the
    archive vouches only for itself (its checksums and manifest agree), and that is said."""
    if allowed is None:
        return {"verified": False, "why": "no --verify-with: the archive's checksums vouch only for themselves"}
    if sig is None:
        raise UserError(f"{path} is not signed (no {SIGNATURE}): --verify-with needs an archive made with `invoke "
                        f"archive --sign KEY`; nothing was loaded")
    if not Path(allowed).is_file():
        raise UserError(f"--verify-with {allowed}: no such file (an ssh allowed_signers file: `PRINCIPAL KEY` lines)")
    with tempfile.TemporaryDirectory(prefix="xeontl-verify-") as d:
        sig_file = Path(d) / SIGNATURE
        sig_file.write_bytes(sig)
        who = subprocess.run(["ssh-keygen", "-Y", "find-principals", "-s", str(sig_file), "-f", str(allowed)],
                             capture_output=True, text=True)
        principal = who.stdout.strip().splitlines()[0] if who.returncode == 0 and who.stdout.strip() else None
        if principal is None:
            raise UserError(f"{path}: its signature is by no key of {allowed}: nothing was loaded")
        ok = subprocess.run(["ssh-keygen", "-Y", "verify", "-f", str(allowed), "-I", principal, "-n", NAMESPACE,
                             "-s", str(sig_file)], input=sums_text, capture_output=True)
        if ok.returncode != 0:
            raise UserError(f"{path}: its signature does not verify for {principal} ({ok.stderr.decode().strip()[:80]})"
                            f": the archive was altered after it was signed; nothing was loaded")
    return {"verified": True, "principal": principal, "allowed_signers": str(Path(allowed).resolve())}


class _Hashed(io.RawIOBase):
    """The archive's one descriptor, read once, front to back: every byte read also goes into the archive's sha256."""

    def __init__(self, f):
        self.f, self.sha256 = f, hashlib.sha256()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer) -> int:
        n = self.f.readinto(buffer)
        self.sha256.update(memoryview(buffer)[:n])
        return n


SMALL = {"manifest.json": 1 << 20, "SHA256SUMS": 1 << 20, SIGNATURE: 1 << 16}  # read whole; at most this long


def _read_once(path: Path, image_copy=None) -> tuple[dict[str, str], dict[str, bytes], str]:
    """One pass over the archive, as a stream: each member's sha256, the small members' bytes (SMALL), image.tar.gz
    copied into IMAGE_COPY (a private file) as it is hashed, and the whole file's sha256. Nothing is read from PATH
    again: what was checked is what is loaded (before, the archive was opened three times: a file changed between
    the check and `docker load` was loaded unchecked)."""
    digests: dict[str, str] = {}
    small: dict[str, bytes] = {}
    try:
        f = open(path, "rb")
    except OSError as e:
        raise UserError(f"--from {path}: cannot be read ({e.strerror})") from None
    with f:
        raw = _Hashed(f)
        try:
            tar = tarfile.open(fileobj=raw, mode="r|", bufsize=CHUNK)  # a plain tar, as `invoke archive` writes it
        except (tarfile.TarError, OSError) as e:
            raise UserError(f"{path} is not an archive ({str(e).splitlines()[0]}): make one with `invoke archive`") \
                from None
        try:
            with tar:
                for m in tar:
                    name = m.name.removeprefix(f"{ROOT}/")
                    if not m.isfile():
                        continue
                    if name in digests:
                        raise UserError(f"{path} holds {name} twice: not made by `invoke archive`; nothing was loaded")
                    if name in SMALL and m.size > SMALL[name]:
                        raise UserError(f"{path}: its {name} is {m.size} bytes, more than `invoke archive` writes; "
                                        f"nothing was loaded")
                    h, member = hashlib.sha256(), tar.extractfile(m)
                    while chunk := member.read(CHUNK):
                        h.update(chunk)
                        if name in SMALL:
                            small[name] = small.get(name, b"") + chunk
                        elif name == "image.tar.gz" and image_copy is not None:
                            image_copy.write(chunk)
                    digests[name] = h.hexdigest()
            while raw.read(CHUNK):  # what follows the tar's end, into the file's sha256
                pass
        except (tarfile.TarError, EOFError, OSError) as e:
            raise UserError(f"{path} is truncated or not an archive ({e}): copy it again, or make it with `invoke "
                            f"archive`") from None
    return digests, small, raw.sha256.hexdigest()


HEX12, HEX64 = re.compile(r"[0-9a-f]{12}"), re.compile(r"[0-9a-f]{64}")


def _names(manifest: dict, path: Path) -> None:
    """What the manifest names that becomes a tag or a line, in the form `invoke archive` writes it, in a checkout or
    not: image.inputs 12 hex digits (it names xeontl:inputs-<inputs>), the commit a git object id, deps_image absent
    or {"ref": "xeontl-deps:<12 hex>", "id": "sha256:<64 hex>"}."""
    image, deps, commit = manifest["image"], manifest.get("deps_image"), manifest["commit"]
    bad = ("image.inputs" if not isinstance(image.get("inputs"), str) or not HEX12.fullmatch(image["inputs"])
           else "commit" if not re.fullmatch(r"[0-9a-f]{40}|[0-9a-f]{64}", commit)
           else "deps_image" if deps is not None and not (
               isinstance(deps, dict) and isinstance(deps.get("ref"), str) and isinstance(deps.get("id"), str)
               and deps["ref"].startswith(f"{imagelib.DEPS_REPO}:") and HEX12.fullmatch(deps["ref"].split(":", 1)[1])
               and deps["id"].startswith("sha256:") and HEX64.fullmatch(deps["id"][7:]))
           else None)
    if bad:
        raise UserError(f"{path}: its manifest's {bad} is not what `invoke archive` writes: nothing was loaded")


def verify(path: Path, allowed_signers: Path | None = None, image_copy=None) -> dict:
    """Every member against SHA256SUMS (which must list every member, image.tar.gz and source.tar.gz included), the
    manifest against both, the signature where asked, and the archive against this checkout: one line for the first
    problem, nothing loaded. All from one read of the file (`_read_once`; IMAGE_COPY: where image.tar.gz goes). Returns
    the manifest (with what vouched for it under "trust", and the whole file's sha256 under "archive_sha256")."""
    path = Path(path)
    if not path.is_file():
        raise UserError(f"--from {path}: no such file")
    digests, small, archive_sha256 = _read_once(path, image_copy)
    for needed in ("manifest.json", "SHA256SUMS", *REQUIRED):
        if needed not in digests:
            raise UserError(f"{path} has no {needed}: not made by `invoke archive`, or truncated; copy it again")
    sums_text = small.get("SHA256SUMS", b"")
    sums = _sums(sums_text.decode(errors="replace"), path)
    unlisted = sorted(set(digests) - set(sums) - {"SHA256SUMS", SIGNATURE})
    if unlisted or "manifest.json" not in sums:
        raise UserError(f"{path}: {', '.join(unlisted) or 'manifest.json'} not in its SHA256SUMS: an archive "
                        f"member nobody vouched for; nothing was loaded")
    trust = _signature(small.get(SIGNATURE) if SIGNATURE in digests else None, sums_text, path, allowed_signers)
    for name, want in sums.items():
        if name not in digests:
            raise UserError(f"{path} lacks {name}, which its SHA256SUMS lists: truncated; copy it again")
        if digests[name] != want:
            raise UserError(f"{path}: {name} has sha256 {digests[name][:16]}..., its SHA256SUMS says "
                            f"{want[:16]}...: the archive was altered or damaged; nothing was loaded")
    manifest = _manifest(small.get("manifest.json", b""), path)
    if set(manifest["members"]) != set(sums) - {"manifest.json"} or any(
            manifest["members"][n]["sha256"] != sums[n] for n in manifest["members"]):
        raise UserError(f"{path}: its manifest and its SHA256SUMS list other members or digests: altered; "
                        f"nothing was loaded")
    _names(manifest, path)
    here = imagelib.checkout_inputs_hash()
    if here is not None and manifest["image"]["inputs"] != here:
        raise UserError(f"{path} holds the image of commit {manifest['commit'][:12]} (inputs "
                        f"{manifest['image']['inputs']}), this checkout is inputs {here}: check out "
                        f"{manifest['commit'][:12]} (its source is in the archive), or build here; nothing was loaded")
    return {**manifest, "trust": trust, "archive_sha256": archive_sha256}


CONFIG_MEMBER = re.compile(r"(blobs/sha256/)?[0-9a-f]{64}(\.json)?")  # where a save keeps its images' configs
CONFIG_BYTES = 1 << 22  # an image config is a few KiB; a bigger blob is a layer


def _saved_images(stream) -> list[dict]:
    """The images of a `docker save` stream, from its own files: each manifest entry's config (an image's id is the
    sha256 of its config) with the digest its content really has, and the tags the save carries. Every config is read
    as a record (records.parse: bounded size and depth, the docker-image-config schema): `<id>.json` is always an
    image's config, so one that is not is one line naming it; a blob (docker 25+) may be a layer too, so a blob that is
    not a config is one line only when manifest.json names it as one."""
    configs, refused, entries, seen = {}, {}, None, set()
    with tarfile.open(fileobj=stream, mode="r|") as saved:
        for m in saved:
            savelayout.check(m, seen)
            if m.name == "manifest.json":
                entries = records.parse(saved.extractfile(m).read(1 << 20), "docker-save-manifest",
                                        "the archive's image.tar.gz: manifest.json")
            elif CONFIG_MEMBER.fullmatch(m.name) and m.isfile():
                where = f"{savelayout.WHERE}: member {m.name}"
                try:
                    if m.size >= CONFIG_BYTES:
                        raise UserError(f"{where}: {m.size} bytes, more than an image config is: not an image config "
                                        f"`docker save` writes; nothing was loaded")
                    data = saved.extractfile(m).read()
                    records.parse(data, "docker-image-config", where,
                                  "not an image config `docker save` writes; nothing was loaded")
                    configs[m.name] = hashlib.sha256(data).hexdigest()
                except UserError as e:
                    if m.name.endswith(".json"):
                        raise
                    refused[m.name] = e  # a layer, unless manifest.json names it as a config
    if not isinstance(entries, list) or not all(isinstance(e, dict) and isinstance(e.get("Config"), str)
                                                for e in entries):
        raise UserError("the archive's image.tar.gz is not a `docker save` (no manifest.json): nothing was loaded")
    for e in entries:
        if e["Config"] in refused:
            raise refused[e["Config"]]
    return [{"config": e.get("Config"), "id": f"sha256:{configs.get(e.get('Config'), '?')}",
             "tags": e.get("RepoTags") or []} for e in entries]


def _untagged(stream, out) -> None:
    """The `docker save` stream with its tags removed (RepoTags null, no `repositories` file): `docker load` then
    loads the images by id and moves no tag; xeontl tags the checked id itself."""
    seen: set[str] = set()
    with tarfile.open(fileobj=stream, mode="r|") as saved, tarfile.open(fileobj=out, mode="w|") as loaded:
        for m in saved:
            savelayout.check(m, seen)  # named as docker reads it: one manifest.json, whatever its spelling
            if m.name == "repositories":
                continue
            f = saved.extractfile(m) if m.isfile() else None
            if m.name == "manifest.json":
                saved_manifest = records.parse(f.read(1 << 20), "docker-save-manifest", "image.tar.gz: manifest.json")
                body = json.dumps([{**e, "RepoTags": None} for e in saved_manifest]).encode()
                m.size, f = len(body), io.BytesIO(body)
            elif m.name == "index.json":
                body = json.dumps(savelayout.untag_index(records.parse(f.read(1 << 20), "oci-index",
                                                                          "image.tar.gz: index.json"))).encode()
                m.size, f = len(body), io.BytesIO(body)
            loaded.addfile(m, f)


OWN_REPO = "xeontl"  # the repository an unauthenticated archive may move a tag of


def _tag_allowed(tag: str, verified: bool) -> None:
    """The tag `build --from` moves. From an unauthenticated archive only one of xeontl's own repository, and never a
    content tag (xeontl:inputs-<hash>), which a later plain `invoke build` reuses as its own build. Never another
    stack's own tag (xeontl:paper): an archive holds the default stack's image (its inputs hash is checked)."""
    imageref.require(tag, "--tag", "nothing was loaded")  # as Docker reads it, with its implicit :latest
    ref = imageref.tagged(tag)
    imagelib.check_tag(tag, imagelib.DEFAULT, "nothing was loaded")
    if ref.tag is None or ref.digest or (not verified and (ref.name != imageref.tagged(OWN_REPO).name
                                                           or ref.tag.startswith("inputs-"))):
        raise UserError(f"--tag {tag}: an archive without --verify-with moves only a tag xeontl:NAME of xeontl's own "
                        f"(not xeontl:inputs-*, the builder's); nothing was loaded")


def load(path: Path, tag: str = "xeontl:latest", verify_with: Path | None = None) -> dict:
    """`invoke build --from FILE`: verify (and check the signature with VERIFY_WITH), reading the file once and keeping
    the image's bytes it hashed (a private unnamed file); read the saved images' ids from their own configs and check
    them against the manifest before anything is loaded; load them untagged (a tag stored in the archive cannot move
    one of the user's); then tag the checked id and record the archive.

    Tags: TAG (the user's --tag, default xeontl:latest). Only an archive verified against a signer also gets the tags
    a later build reuses: xeontl:inputs-<inputs> (the content tag: `invoke build` takes it as its own build) and its
    deps image's xeontl-deps:<hash> (a source-only rebuild builds on it), each after its image's id was checked.
    Unauthenticated, TAG must be xeontl:NAME, and that is said in one line."""
    t0 = time.time()
    _tag_allowed(tag, verify_with is not None)
    records_dir().mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryFile(dir=records_dir()) as image_copy:  # unnamed: nobody can open it but this process
        manifest = verify(path, verify_with, image_copy)
        verified = manifest["trust"]["verified"]
        if not verified:
            print(f"xeontl build --from: the archive is unauthenticated (no --verify-with ALLOWED_SIGNERS; "
                  f"`invoke archive --sign KEY` makes one that can be): its checksums vouch only for themselves, so it "
                  f"moves no tag but {tag}", flush=True)
        dockerapi.check_daemon()
        want = manifest["image"]["id"]
        deps = (manifest.get("deps_image") or {}).get("id")
        try:
            image_copy.seek(0)
            with gzip.open(image_copy) as image:
                found = {i["id"] for i in _saved_images(image)}
        except (OSError, EOFError, tarfile.TarError, ValueError) as e:
            raise UserError(f"the archive's image.tar.gz is not a readable `docker save` ({e}): nothing was loaded") \
                from None
        missing = [i for i in (want, deps) if i and i not in found]
        if missing:
            raise UserError(f"the archive's image.tar.gz does not hold image {missing[0][:19]} its manifest names "
                            f"(it holds {', '.join(sorted(i[:19] for i in found))}): nothing was loaded")
        print(f"xeontl build --from: docker load of {sanitize.text(want[:19])} (its tags stripped) ...", flush=True)
        image_copy.seek(0)
        with gzip.open(image_copy) as image:
            dockerapi.load(dockerapi.chunks_written(lambda out: _untagged(image, out)))
    info = dockerapi.inspect(want)
    if info is None or info["Id"] != want:
        raise UserError(f"the loaded image is not {want[:19]}: the archive is damaged; copy it again")
    if verified:
        if deps and (dockerapi.inspect(deps) or {}).get("Id") == deps:
            dockerapi.tag(deps, manifest["deps_image"]["ref"])
        dockerapi.tag(want, f"xeontl:inputs-{manifest['image']['inputs']}")
    dockerapi.tag(want, tag)
    record = {"archive": str(Path(path).resolve()), "archive_sha256": manifest["archive_sha256"],
              "commit": manifest["commit"], "image_id": want, "loaded": datetime.now(timezone.utc).isoformat(),
              "trust": manifest["trust"]}
    (records_dir() / f"{want.replace(':', '_')}.json").write_text(json.dumps(record, indent=1))
    print(f"xeontl build --from: {tag} = {sanitize.text(want[:19])} (commit {sanitize.text(manifest['commit'][:12])}) "
          f"in {time.time() - t0:.0f} s")
    return record
