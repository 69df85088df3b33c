"""One archive to carry: `invoke archive` -> `invoke build --from`. Bad archives (truncated, altered, another
commit's, not an archive) are one line with nothing loaded; a full disk while archiving leaves nothing; and for real,
the image goes through an archive and back with its id, and a run records the archive it came from."""

import gzip
import hashlib
import io
import json
import os
import secrets
import subprocess
import tarfile

import pytest

from conftest import ROOT, docker_ok, invoke, scaled, tasks_module
from xeontl.common.errors import UserError
from xeontl.supply import archive, dockerapi
from xeontl.supply import image as imagelib


def fake_archive(path, inputs=None, commit="c0ffee" * 6 + "beef", members=None, alter=None, sums_text=None,
                 manifest=None, extra=None, sign=None, image_id="sha256:" + "1" * 64, deps=None):
    """An archive as `invoke archive` lays it out, with small stand-in members (or those given); SUMS_TEXT, MANIFEST,
    EXTRA members replace or add to what `invoke archive` would write; SIGN: a key to sign SHA256SUMS with, as
    `invoke archive --sign` does."""
    members = members or {"image.tar.gz": b"image bytes", "source.tar.gz": b"source bytes"}
    sums = {n: hashlib.sha256(b).hexdigest() for n, b in members.items()}
    manifest = manifest if manifest is not None else json.dumps({
        "commit": commit, "image": {"id": image_id, "inputs": inputs or imagelib.checkout_inputs_hash()},
        "members": {n: {"bytes": len(b), "sha256": sums[n]} for n, b in members.items()},
        **({"deps_image": deps} if deps is not None else {})}).encode()
    sums_text = sums_text if sums_text is not None else (
        "".join(f"{sums[n]}  {n}\n" for n in members) + f"{hashlib.sha256(manifest).hexdigest()}  manifest.json\n")
    files = {"manifest.json": manifest, "SHA256SUMS": sums_text.encode(), **members, **(extra or {})}
    if sign:
        (path.parent / "SHA256SUMS").write_bytes(files["SHA256SUMS"])
        subprocess.run(["ssh-keygen", "-q", "-Y", "sign", "-f", str(sign), "-n", archive.NAMESPACE,
                        str(path.parent / "SHA256SUMS")], check=True, capture_output=True)
        files[archive.SIGNATURE] = (path.parent / "SHA256SUMS.sig").read_bytes()
    if alter:
        files[alter] = files[alter][:-1] + b"X"
    with tarfile.open(path, "w") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(f"{archive.ROOT}/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return path


def test_a_good_archive_verifies(tmp_path):
    assert archive.verify(fake_archive(tmp_path / "a.tar"))["commit"].startswith("c0ffee")


def truncated(path):
    body = fake_archive(path, members={"image.tar.gz": os.urandom(40000), "source.tar.gz": b"s"}).read_bytes()
    path.write_bytes(body[: len(body) // 2])


@pytest.mark.parametrize("spoil,needle", [
    (truncated, "truncated"),
    (lambda p: fake_archive(p, alter="image.tar.gz"), "was altered or damaged"),
    (lambda p: fake_archive(p, inputs="0123456789ab"), "holds the image of commit c0ffeec0ffee"),
    (lambda p: p.write_text("not a tar"), "not an archive"),
    # the reproducers: an empty SHA256SUMS verified nothing and loaded the image
    (lambda p: fake_archive(p, sums_text=""), "not in its SHA256SUMS: an archive member nobody vouched for"),
    (lambda p: fake_archive(p, sums_text="SHA256 (image.tar.gz) = " + "a" * 64 + "\n"), "not in `<sha256>  <name>`"),
    (lambda p: fake_archive(p, sums_text="a" * 64 + " image.tar.gz\n"), "not in `<sha256>  <name>`"),
    (lambda p: fake_archive(p, members={"source.tar.gz": b"s"}), "has no image.tar.gz"),
    (lambda p: fake_archive(p, manifest=b"{not json"), "its manifest.json is not one `invoke archive` writes"),
    (lambda p: fake_archive(p, extra={"evil.sh": b"rm -rf /"}), "evil.sh not in its SHA256SUMS"),
])
def test_a_bad_archive_is_one_line_and_nothing_is_loaded(tmp_path, monkeypatch, spoil, needle):
    path = tmp_path / "a.tar"
    spoil(path)
    monkeypatch.setenv("XEONTL_CACHE_DIR", str(tmp_path / "cache"))
    loaded = []
    monkeypatch.setattr(dockerapi, "check_daemon", lambda: loaded.append("daemon"))
    monkeypatch.setattr(dockerapi, "load", lambda *a, **k: loaded.append(a) or pytest.fail("docker load ran"))
    monkeypatch.setattr(dockerapi, "tag", lambda *a, **k: loaded.append(a) or pytest.fail("docker tag ran"))
    with pytest.raises(UserError, match=needle) as e:
        archive.load(path)
    assert "\n" not in str(e.value) and loaded == []


def test_build_from_a_bad_archive_says_so_in_one_line(tmp_path):
    r = invoke("build", "--from", str(fake_archive(tmp_path / "a.tar", alter="source.tar.gz")))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "altered or damaged" in r.stderr


def test_archive_refuses_an_uncommitted_checkout_and_an_existing_file(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "_git", lambda *a: "abc" if a[0] == "rev-parse" else " M src/xeontl/placement/plan.py")
    with pytest.raises(UserError, match="uncommitted changes: commit them first"):
        archive.make(tmp_path / "x.tar")
    monkeypatch.setattr(archive, "_git", lambda *a: "abc" if a[0] == "rev-parse" else "")
    monkeypatch.setattr(dockerapi, "require_image", lambda ref, inputs: {"Id": "sha256:1"})
    (tmp_path / "x.tar").write_text("mine")
    with pytest.raises(UserError, match="exists: choose another --output"):
        archive.make(tmp_path / "x.tar")
    assert (tmp_path / "x.tar").read_text() == "mine"


def test_a_full_disk_while_archiving_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "_git", lambda *a: "abc" if a[0] == "rev-parse" else "")
    monkeypatch.setattr(dockerapi, "require_image", lambda ref, inputs: {"Id": "sha256:1", "Size": 1})
    monkeypatch.setattr(dockerapi, "inspect", lambda ref: {"Id": "sha256:2"})
    monkeypatch.setattr(archive, "_pipe", lambda first, second, out, what: out.write_bytes(b"x" * 100))
    monkeypatch.setattr(archive, "_gzip_into", lambda out, writer, what: out.write_bytes(b"x" * 100))
    real_open = tarfile.open

    def full(name, mode="r", *a, **k):
        if "w" in mode:
            raise OSError(28, "No space left on device")
        return real_open(name, mode, *a, **k)
    monkeypatch.setattr(tarfile, "open", full)
    with pytest.raises(UserError, match="No space left on device"):
        archive.make(tmp_path / "out" / "x.tar")
    assert list((tmp_path / "out").iterdir()) == []  # no partial archive, no work dir


def clean_checkout() -> bool:
    r = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                       text=True)
    return r.returncode == 0 and not r.stdout.strip()


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.skipif(not clean_checkout(), reason="invoke archive packs a commit: the checkout has uncommitted changes")
def test_the_image_goes_through_an_archive_and_back(image, tmp_path, monkeypatch):
    """For real: invoke archive of the built image, then invoke build --from under another tag; the loaded image
    has the same id, and a run on it records the archive it came from."""
    from xeontl.engines import docker
    from xeontl.launch.options import Options

    env = {**os.environ, "XEONTL_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "x.tar"
    r = invoke("archive", "--output", str(out), timeout=scaled(1800), env=env)
    assert r.returncode == 0, r.stderr
    manifest = archive.verify(out)
    assert manifest["image"]["id"] == dockerapi.inspect("xeontl:latest")["Id"]
    assert set(manifest["members"]) == {"image.tar.gz", "source.tar.gz"}
    assert manifest["deps_image"] == {"ref": imagelib.deps_tag(), "id": dockerapi.inspect(imagelib.deps_tag())["Id"]}
    with tarfile.open(out) as tar:
        src = tarfile.open(fileobj=tar.extractfile(f"{archive.ROOT}/source.tar.gz"))
        names = src.getnames()
    assert "xeontl/src/xeontl/placement/plan.py" in names
    assert any(n.startswith("xeontl/results/reference/") for n in names)
    tag = f"xeontl:from-archive-{secrets.token_hex(3)}"
    try:
        r = invoke("build", "--from", str(out), "--tag", tag, timeout=scaled(1800), env=env)
        assert r.returncode == 0, r.stderr
        assert dockerapi.inspect(tag)["Id"] == manifest["image"]["id"]
        assert dockerapi.inspect(imagelib.deps_tag())["Id"] == manifest["deps_image"]["id"]  # rebuilds stay cheap
        monkeypatch.setenv("XEONTL_CACHE_DIR", str(tmp_path / "cache"))
        engine = docker.DockerEngine(Options(image=tag, build=False))
        engine.preflight(None)
        record = engine.execution()["image"]["archive"]
        assert record["archive"] == str(out) and record["commit"] == manifest["commit"]
        assert record["archive_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True)


# ------------------------------------------------------------------------------------------------ the trust anchor
@pytest.fixture
def signers(tmp_path):
    """Two ssh keys; an allowed_signers file naming the first."""
    for name in ("alice", "mallory"):
        subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", name, "-f", str(tmp_path / name)],
                       check=True)
    allowed = tmp_path / "allowed_signers"
    allowed.write_text(f"alice@example {(tmp_path / 'alice.pub').read_text()}")
    return tmp_path / "alice", tmp_path / "mallory", allowed


def test_a_signed_archive_verifies_against_its_signer_only(tmp_path, signers):
    alice, mallory, allowed = signers
    good = fake_archive((tmp_path / "a").mkdir() or tmp_path / "a" / "x.tar", sign=alice)
    assert archive.verify(good, allowed)["trust"] == {"verified": True, "principal": "alice@example",
                                                      "allowed_signers": str(allowed)}
    assert archive.verify(good)["trust"]["verified"] is False  # no --verify-with: said, not assumed
    forged = fake_archive((tmp_path / "b").mkdir() or tmp_path / "b" / "x.tar", sign=mallory)
    with pytest.raises(UserError, match="its signature is by no key of"):
        archive.verify(forged, allowed)
    unsigned = fake_archive((tmp_path / "c").mkdir() or tmp_path / "c" / "x.tar")
    with pytest.raises(UserError, match="is not signed"):
        archive.verify(unsigned, allowed)


def test_an_archive_altered_after_it_was_signed_does_not_verify(tmp_path, signers):
    alice, _, allowed = signers
    (tmp_path / "a").mkdir()
    path = fake_archive(tmp_path / "a" / "x.tar", sign=alice)
    with tarfile.open(path) as tar:  # SHA256SUMS and its member rewritten together, the old signature kept
        files = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    image = b"another image"
    files[f"{archive.ROOT}/image.tar.gz"] = image
    sums = files[f"{archive.ROOT}/SHA256SUMS"].decode().splitlines()
    sums[0] = f"{hashlib.sha256(image).hexdigest()}  image.tar.gz"
    files[f"{archive.ROOT}/SHA256SUMS"] = ("\n".join(sums) + "\n").encode()
    with tarfile.open(path, "w") as tar:
        for name, body in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    with pytest.raises(UserError, match="does not verify for alice@example"):
        archive.verify(path, allowed)


@pytest.mark.docker
@pytest.mark.skipif(not docker_ok(), reason="needs a Docker daemon")
def test_loading_moves_no_tag_and_checks_the_id_before_loading(tmp_path, monkeypatch):
    """A tiny image (docker import: no registry) saved under a tag the user has, `victim:1`, as a forged archive
    would carry it: `build --from` loads it by id without touching `victim:1`, and an archive whose manifest names
    another id is refused before `docker load` runs."""
    tag, victim = f"xeontl:test-tiny-{secrets.token_hex(3)}", f"xeontl-test-victim:{secrets.token_hex(3)}"
    inputs = secrets.token_hex(6)  # its own content tag, xeontl:inputs-<this>, never the real image's
    monkeypatch.setattr(imagelib, "checkout_inputs_hash", lambda: inputs)
    layer = tmp_path / "layer.tar"
    with tarfile.open(layer, "w") as t:
        info = tarfile.TarInfo("hello")
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    subprocess.run(["docker", "import", str(layer), victim], check=True, capture_output=True)  # the user's
    victim_id = dockerapi.inspect(victim)["Id"]
    subprocess.run(["docker", "import", "--change", "LABEL x=forged", str(layer), tag], check=True, capture_output=True)
    forged_id = dockerapi.inspect(tag)["Id"]
    try:
        saved = subprocess.run(["docker", "save", tag], check=True, capture_output=True).stdout
        with tarfile.open(fileobj=io.BytesIO(saved)) as t:  # the save's tags rewritten to the user's tag
            files = {m.name: (m, t.extractfile(m).read() if m.isfile() else None) for m in t.getmembers()}
        m, body = files["manifest.json"]
        body = json.dumps([{**e, "RepoTags": [victim]} for e in json.loads(body)]).encode()
        files["manifest.json"] = (m, body)
        out = io.BytesIO()
        with tarfile.open(fileobj=out, mode="w") as t:
            for m, b in files.values():
                m.size = len(b) if b is not None else m.size
                t.addfile(m, io.BytesIO(b) if b is not None else None)
        image = gzip.compress(out.getvalue())
        subprocess.run(["docker", "rmi", tag], capture_output=True)
        wrong = fake_archive(tmp_path / "wrong.tar", members={"image.tar.gz": image, "source.tar.gz": b"s"})
        with pytest.raises(UserError, match="does not hold image sha256:111111"):
            archive.load(wrong, tag)
        assert dockerapi.inspect(forged_id) is None  # refused before docker load ran
        good = fake_archive(tmp_path / "good.tar", members={"image.tar.gz": image, "source.tar.gz": b"s"},
                            image_id=forged_id)
        monkeypatch.setenv("XEONTL_CACHE_DIR", str(tmp_path / "cache"))
        # issue 39 item 2: the unsigned manifest's deps ref named the user's tag, and it was moved with force
        deps_victim = fake_archive(tmp_path / "deps.tar", members={"image.tar.gz": image, "source.tar.gz": b"s"},
                                   image_id=forged_id, deps={"ref": victim, "id": forged_id})
        with pytest.raises(UserError, match="its manifest.s deps_image is not what|field deps_image"):
            archive.load(deps_victim, tag)
        assert dockerapi.inspect(forged_id) is None and dockerapi.inspect(victim)["Id"] == victim_id
        archive.load(good, tag)
        assert dockerapi.inspect(tag)["Id"] == forged_id
        assert dockerapi.inspect(victim)["Id"] == victim_id  # the archive's stored tag moved nothing
        # unsigned: no content tag a later plain `invoke build` would reuse as its own build
        assert dockerapi.inspect(f"xeontl:inputs-{inputs}") is None
    finally:
        subprocess.run(["docker", "rmi", "-f", tag, victim, f"xeontl:inputs-{inputs}"], capture_output=True)
        subprocess.run(["docker", "rmi", "-f", forged_id], capture_output=True)


# ------------------------------------------------------------------------------------------------ issue 39, item 2
def docker_save(*configs: bytes) -> bytes:
    """A `docker save` as image.tar.gz holds it, of images that are only their configs (an image's id is its config's
    sha256), each under a tag of the user's as a forged save would carry it."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        entries = []
        for config in configs:
            name = f"{hashlib.sha256(config).hexdigest()}.json"
            entries.append({"Config": name, "RepoTags": ["victim:latest"], "Layers": []})
            info = tarfile.TarInfo(name)
            info.size = len(config)
            t.addfile(info, io.BytesIO(config))
        body = json.dumps(entries).encode()
        info = tarfile.TarInfo("manifest.json")
        info.size = len(body)
        t.addfile(info, io.BytesIO(body))
    return gzip.compress(out.getvalue())


APP, DEPS = b'{"rootfs": {"type": "layers", "diff_ids": []}, "x": "app"}', b'{"rootfs": {"type": "layers"}, "x": 1}'
APP_ID, DEPS_ID = (f"sha256:{hashlib.sha256(c).hexdigest()}" for c in (APP, DEPS))


@pytest.fixture
def daemon(monkeypatch, tmp_path):
    """The daemon as archive.load asks it, recorded: what was loaded (bytes), the tags set, the ids present."""
    got = {"loaded": b"", "tags": [], "ids": set()}

    def load(chunks):
        got["loaded"] += b"".join(chunks)
        got["ids"] |= {APP_ID, DEPS_ID} if f"{APP_ID[7:]}.json".encode() in got["loaded"] else set()
    monkeypatch.setattr(dockerapi, "check_daemon", lambda: None)
    monkeypatch.setattr(dockerapi, "load", load)
    monkeypatch.setattr(dockerapi, "inspect", lambda ref: {"Id": ref} if ref in got["ids"] else None)
    monkeypatch.setattr(dockerapi, "tag", lambda source, ref: got["tags"].append((source, ref)))
    monkeypatch.setenv("XEONTL_CACHE_DIR", str(tmp_path / "cache"))
    return got


DEPS_REF = {"ref": f"{imagelib.DEPS_REPO}:{'a' * 12}", "id": DEPS_ID}


@pytest.mark.parametrize("signed, tag, tags", [
    # the reproducer moved the deps ref the unsigned manifest named, and made xeontl:inputs-<hash>, which a
    # later plain `invoke build` reused as its own build
    (False, "xeontl:latest", [(APP_ID, "xeontl:latest")]),
    (False, "xeontl:mine", [(APP_ID, "xeontl:mine")]),
    (True, "xeontl:latest", [(DEPS_ID, DEPS_REF["ref"]), (APP_ID, "xeontl:inputs-{inputs}"),
                             (APP_ID, "xeontl:latest")]),
])
def test_only_a_verified_archive_makes_the_tags_a_later_build_reuses(tmp_path, daemon, signers, capsys, signed, tag,
                                                                    tags):
    alice, _, allowed = signers
    (tmp_path / "a").mkdir()
    members = {"image.tar.gz": docker_save(APP, DEPS), "source.tar.gz": b"s"}
    path = fake_archive(tmp_path / "a" / "x.tar", members=members, image_id=APP_ID, deps=DEPS_REF,
                        sign=alice if signed else None)
    archive.load(path, tag, allowed if signed else None)
    inputs = imagelib.checkout_inputs_hash()
    assert daemon["tags"] == [(i, t.format(inputs=inputs)) for i, t in tags]
    said = [line for line in capsys.readouterr().out.splitlines() if "unauthenticated" in line]
    assert len(said) == (0 if signed else 1)


@pytest.mark.parametrize("tag,says", [
    ("victim:latest", "moves only a tag xeontl:NAME"), ("xeontl:inputs-0123456789ab", "moves only a tag xeontl:NAME"),
    ("registry:5000/xeontl:x", "moves only a tag xeontl:NAME"),  # "xeontl" is xeontl:latest, its own: moved
    ("xeontl:", "not an image reference Docker accepts.*nothing was loaded"),
    ("XEONTL:x", "not an image reference Docker accepts.*nothing was loaded"),
])
def test_an_unauthenticated_archive_moves_no_tag_but_xeontls_own(tmp_path, daemon, tag, says):
    path = fake_archive(tmp_path / "x.tar", members={"image.tar.gz": docker_save(APP), "source.tar.gz": b"s"},
                        image_id=APP_ID)
    with pytest.raises(UserError, match=says) as e:
        archive.load(path, tag)
    assert "\n" not in str(e.value) and daemon["tags"] == [] and daemon["loaded"] == b""


DROP = object()


@pytest.mark.parametrize("field, fields, deps, commit", [
    # outside a checkout nothing compared image.inputs with anything: it became the tag xeontl:inputs-<it>
    ("image.inputs", {"inputs": "latest"}, None, None),
    ("image.inputs", {"inputs": "0123456789ab\n"}, None, None),
    ("image.inputs", {"inputs": None}, None, None),
    ("image.inputs", {"inputs": DROP}, None, None),
    # the reproducer: the unsigned manifest's deps ref was tagged with force (auditsec-victim:latest moved)
    ("deps_image", {}, {"ref": "victim:latest", "id": DEPS_ID}, None),
    ("deps_image", {}, {"ref": f"{imagelib.DEPS_REPO}:latest", "id": DEPS_ID}, None),
    ("deps_image", {}, {"ref": DEPS_REF["ref"], "id": "sha256:x"}, None),
    ("deps_image", {}, "xeontl-deps:aaaaaaaaaaaa", None),
    ("commit", {}, None, "c0ffee\x1b[2J"),
])
def test_what_the_manifest_names_is_checked_in_a_checkout_or_not(tmp_path, monkeypatch, daemon, field, fields, deps,
                                                                 commit):
    monkeypatch.setattr(imagelib, "checkout_inputs_hash", lambda *a: None)  # an installed copy: no checkout
    named = {k: v for k, v in {"id": APP_ID, "inputs": "0123456789ab", **fields}.items() if v is not DROP}
    members = {"image.tar.gz": docker_save(APP, DEPS), "source.tar.gz": b"s"}
    sums = {n: hashlib.sha256(b).hexdigest() for n, b in members.items()}
    manifest = json.dumps({"commit": commit or "c0ffee" * 6 + "beef", "image": named,
                           "members": {n: {"bytes": len(b), "sha256": sums[n]} for n, b in members.items()},
                           **({"deps_image": deps} if deps is not None else {})}).encode()
    path = fake_archive(tmp_path / "x.tar", members=members, manifest=manifest)
    # refused by the manifest's schema (records.parse: the field by its path) or, past it, by the manifest's own check
    top = field.split(".")[0]
    with pytest.raises(UserError, match=rf"its manifest's {field} is not what `invoke archive` writes|"
                                        rf"manifest.json: field {top}\b.*its manifest.json is not one `invoke archive`"
                                        rf" writes") as e:
        archive.load(path)
    assert "\n" not in str(e.value) and daemon["tags"] == [] and daemon["loaded"] == b""


def test_the_archive_is_read_once_and_what_was_checked_is_what_loads(tmp_path, daemon, monkeypatch):
    """The file is replaced after its check (as another user who can write its dir would): the load uses the bytes
    that were hashed, and the record the archive's sha256 as checked (before: opened three times)."""
    image = docker_save(APP)
    path = fake_archive(tmp_path / "x.tar", members={"image.tar.gz": image, "source.tar.gz": b"s"}, image_id=APP_ID)
    checked = hashlib.sha256(path.read_bytes()).hexdigest()

    def swap():
        path.write_bytes(b"another file altogether")
    monkeypatch.setattr(dockerapi, "check_daemon", swap)
    record = archive.load(path)
    assert record["archive_sha256"] == checked and f"{APP_ID[7:]}.json".encode() in daemon["loaded"]
    assert daemon["tags"] == [(APP_ID, "xeontl:latest")]


def test_a_docker_save_manifest_not_a_list_of_entries_is_one_line(tmp_path, daemon):
    bad = io.BytesIO()
    with tarfile.open(fileobj=bad, mode="w") as t:
        info = tarfile.TarInfo("manifest.json")
        info.size = 3
        t.addfile(info, io.BytesIO(b"[1]"))
    path = fake_archive(tmp_path / "x.tar", members={"image.tar.gz": gzip.compress(bad.getvalue()),
                                                     "source.tar.gz": b"s"}, image_id=APP_ID)
    with pytest.raises(UserError, match="is not a `docker save`|manifest.json: field 0: 1 is not of type .object."):
        archive.load(path)
    assert daemon["loaded"] == b""


# issue 39, adversarial review: docker load reads `./manifest.json` as manifest.json, so a decoy `manifest.json` (what
# xeontl rewrote) beside a `./manifest.json` carrying the user's tag moved it. Members are named as docker reads them,
# and what is outside `docker save`'s layout refused. (name, type, linkname) of each member; None: accepted.
H1, H2 = "a" * 64, "b" * 64
SAVE_MEMBERS = [
    ("the docker 20.10 layout", [(f"{H1}.json", "f", ""), (f"{H2}/", "d", ""), (f"{H2}/layer.tar", "f", ""),
                                 (f"{H2}/json", "f", ""), (f"{H2}/VERSION", "f", ""), ("repositories", "f", "")], None),
    ("the docker 25 layout", [("blobs/", "d", ""), ("blobs/sha256/", "d", ""), (f"blobs/sha256/{H1}", "f", ""),
                              ("oci-layout", "f", ""), (f"{H2}/", "d", ""),
                              (f"{H2}/layer.tar", "s", f"../blobs/sha256/{H1}")], None),
    ("a shared layer linked", [(f"{H2}/layer.tar", "s", f"../{H1}/layer.tar")], None),
    ("./manifest.json beside manifest.json", [("./manifest.json", "m", "")], "second copy of manifest.json"),
    ("manifest.json twice", [("manifest.json", "m", "")], "second copy of manifest.json"),
    ("a/../manifest.json", [("a/../manifest.json", "m", "")], "second copy"),
    ("a name outside the layout", [("etc/passwd", "f", "")], "not part of a `docker save`"),
    ("an absolute name", [("/manifest.json", "m", "")], "not a relative path"),
    ("a parent escape", [("../x", "f", "")], "not a relative path"),
    ("a hard link", [(f"{H1}.json", "h", "manifest.json")], "hard link"),
    ("a device", [(f"{H1}.json", "c", "")], "device"),
    ("a symlink out of the save", [(f"{H2}/layer.tar", "s", "/etc/shadow")], "symlink"),
    ("a symlink as the manifest", [(f"{H1}.json", "s", f"{H2}/layer.tar")], "symlink"),
]


def _save(members, tags=("xeontl-test-victim:1",)):
    out = io.BytesIO()
    types = {"f": tarfile.REGTYPE, "m": tarfile.REGTYPE, "d": tarfile.DIRTYPE, "s": tarfile.SYMTYPE,
             "h": tarfile.LNKTYPE, "c": tarfile.CHRTYPE}
    manifest = json.dumps([{"Config": f"{H1}.json", "RepoTags": list(tags), "Layers": []}]).encode()
    with tarfile.open(fileobj=out, mode="w") as t:
        for name, kind, body in [("manifest.json", "m", ""), *members]:
            m = tarfile.TarInfo(name)
            m.type, m.linkname = types[kind], body if kind in "sh" else ""
            data = (manifest if kind == "m" else APP if kind == "f" and name.endswith(".json") else b"{}" if kind == "f"
                    else None)  # <id>.json is an image's config
            m.size = len(data) if data is not None else 0
            t.addfile(m, io.BytesIO(data) if data is not None else None)
    return out.getvalue()


@pytest.mark.parametrize("case,members,refused", SAVE_MEMBERS, ids=[c[0] for c in SAVE_MEMBERS])
def test_a_save_is_read_as_docker_reads_it(case, members, refused):
    stream = _save(members)
    for read in (lambda: archive._saved_images(io.BytesIO(stream)),
                 lambda: archive._untagged(io.BytesIO(stream), io.BytesIO())):
        if refused:
            with pytest.raises(UserError, match=refused.replace("(", r"\(")):
                read()
        else:
            read()
    if not refused:
        out = io.BytesIO()
        archive._untagged(io.BytesIO(stream), out)
        with tarfile.open(fileobj=io.BytesIO(out.getvalue())) as t:
            names = [m.name for m in t.getmembers()]
            assert names.count("manifest.json") == 1 and "repositories" not in names
            assert all(e["RepoTags"] is None for e in json.loads(t.extractfile("manifest.json").read()))


def test_index_json_tag_annotations_are_stripped():
    index = {"schemaVersion": 2, "manifests": [{"mediaType": "m", "digest": "sha256:" + H1, "size": 1, "annotations": {
        "io.containerd.image.name": "docker.io/library/victim:1", "org.opencontainers.image.ref.name": "1",
        "other": "kept"}}], "annotations": {"org.opencontainers.image.ref.name": "1"}}
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        saved = [{"Config": f"{H1}.json", "RepoTags": ["v:1"], "Layers": []}]
        for name, data in (("manifest.json", json.dumps(saved).encode()),
                           ("index.json", json.dumps(index).encode()), ("oci-layout", b"{}")):
            m = tarfile.TarInfo(name)
            m.size = len(data)
            t.addfile(m, io.BytesIO(data))
    loaded = io.BytesIO()
    archive._untagged(io.BytesIO(out.getvalue()), loaded)
    with tarfile.open(fileobj=io.BytesIO(loaded.getvalue())) as t:
        got = json.loads(t.extractfile("index.json").read())
    assert got["manifests"][0]["annotations"] == {"other": "kept"} and got["annotations"] == {}


# issue 39 audit: an image config in the save (`<id>.json`, or the blob manifest.json's Config names) was read with a
# plain json.loads and `"rootfs" in doc`: `5` or `null` was a TypeError, 100k-deep nesting a RecursionError (a
# traceback), and `["rootfs"]` or `"rootfs"` passed for a config. Now through records.parse (bounded size and depth,
# the docker-image-config schema): one line naming the member, nothing loaded.
BAD_CONFIGS = [
    ("a number", b"5"), ("null", b"null"), ("a list naming rootfs", b'["rootfs"]'), ("a string", b'"rootfs"'),
    ("deep nesting", b"[" * 100_000 + b"]" * 100_000), ("deep object", b'{"a":' * 100_000 + b"1" + b"}" * 100_000),
    ("not JSON", b"{rootfs"), ("not UTF-8", b'{"rootfs": "\xff"}'), ("NaN", b'{"rootfs": {}, "x": NaN}'),
    ("rootfs not an object", b'{"rootfs": 5}'), ("no rootfs", b'{"architecture": "amd64"}'),
]


def docker_save_with(config: bytes, name: str) -> bytes:
    """A `docker save` whose one image's config member NAME (as manifest.json names it) holds CONFIG."""
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        body = json.dumps([{"Config": name, "RepoTags": ["victim:latest"], "Layers": []}]).encode()
        for member, data in ((name, config), ("manifest.json", body)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return gzip.compress(out.getvalue())


@pytest.mark.parametrize("layout", ["{}.json", "blobs/sha256/{}"])
@pytest.mark.parametrize("case,config", BAD_CONFIGS, ids=[c[0] for c in BAD_CONFIGS])
def test_a_docker_save_config_not_an_image_config_is_one_line_naming_it(tmp_path, daemon, case, config, layout):
    digest = hashlib.sha256(config).hexdigest()
    name = layout.format(digest)
    path = fake_archive(tmp_path / "x.tar", members={"image.tar.gz": docker_save_with(config, name),
                                                     "source.tar.gz": b"s"}, image_id=f"sha256:{digest}")
    with pytest.raises(UserError) as e:
        archive.load(path)
    assert "\n" not in str(e.value) and name in str(e.value) and "nothing was loaded" in str(e.value), str(e.value)
    assert daemon["loaded"] == b"" and daemon["tags"] == []


def test_build_from_a_save_with_a_bad_config_exits_2_in_one_line(tmp_path, daemon):
    """As `invoke build --from` runs it (tasks.build's guard): `xeontl: error: ...`, exit 2."""
    from invoke import Exit

    tasks = tasks_module()
    name = f"{hashlib.sha256(b'5').hexdigest()}.json"
    path = fake_archive(tmp_path / "x.tar", members={"image.tar.gz": docker_save_with(b"5", name),
                                                     "source.tar.gz": b"s"}, image_id=f"sha256:{name[:64]}")
    with pytest.raises(Exit) as e:
        tasks.build.body(None, from_=str(path), tag="xeontl:latest")
    assert e.value.code == 2 and e.value.message.startswith("xeontl: error: ") and "\n" not in e.value.message
    assert name in e.value.message and daemon["loaded"] == b""


def test_a_layer_blob_not_named_as_a_config_is_no_config_and_no_error(tmp_path, daemon):
    """A docker 25 save's blobs are layers (tars) as well as configs: a blob that is not JSON is no error unless the
    manifest names it as an image's config; the image whose config is valid loads."""
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        info = tarfile.TarInfo("hello")
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    out = io.BytesIO()
    app = f"blobs/sha256/{APP_ID[7:]}"
    with tarfile.open(fileobj=out, mode="w") as t:
        body = json.dumps([{"Config": app, "RepoTags": None, "Layers": []}]).encode()
        for member, data in ((f"blobs/sha256/{hashlib.sha256(layer.getvalue()).hexdigest()}", layer.getvalue()),
                             (f"blobs/sha256/{'c' * 64}", b"5"), (app, APP), (f"{APP_ID[7:]}.json", APP),
                             ("manifest.json", body)):
            info = tarfile.TarInfo(member)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    images = archive._saved_images(io.BytesIO(out.getvalue()))
    assert [i["id"] for i in images] == [APP_ID]
