"""One archive to carry: `invoke archive` -> `invoke build --from`. Bad archives (truncated, altered, another
commit's, not an archive) are one line with nothing loaded; a full disk while archiving leaves nothing; and for real,
the image goes through an archive and back with its id, and a run records the archive it came from."""

import hashlib
import io
import json
import os
import secrets
import subprocess
import tarfile

import pytest

from conftest import ROOT, invoke
from xeontl import archive, dockercli
from xeontl import image as imagelib
from xeontl.errors import UserError


def fake_archive(path, inputs=None, commit="c0ffee" * 6 + "beef", members=None, alter=None):
    """An archive as `invoke archive` lays it out, with small stand-in members."""
    members = members or {"image.tar.gz": b"image bytes", "source.tar.gz": b"source bytes"}
    sums = {n: hashlib.sha256(b).hexdigest() for n, b in members.items()}
    manifest = {"commit": commit, "image": {"id": "sha256:" + "1" * 64, "inputs": inputs or
                                            imagelib.checkout_inputs_hash()},
                "members": {n: {"bytes": len(b), "sha256": sums[n]} for n, b in members.items()}}
    files = {"manifest.json": json.dumps(manifest).encode(),
             "SHA256SUMS": "".join(f"{sums[n]}  {n}\n" for n in members).encode(), **members}
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
])
def test_a_bad_archive_is_one_line_and_nothing_is_loaded(tmp_path, monkeypatch, spoil, needle):
    path = tmp_path / "a.tar"
    spoil(path)
    loaded = []
    monkeypatch.setattr(dockercli, "check_daemon", lambda: loaded.append("daemon"))
    monkeypatch.setattr(subprocess, "Popen", lambda *a, **k: loaded.append(a) or pytest.fail("docker ran"))
    with pytest.raises(UserError, match=needle) as e:
        archive.load(path)
    assert "\n" not in str(e.value) and loaded == []


def test_build_from_a_bad_archive_says_so_in_one_line(tmp_path):
    r = invoke("build", "--from", str(fake_archive(tmp_path / "a.tar", alter="source.tar.gz")))
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "altered or damaged" in r.stderr


def test_archive_refuses_an_uncommitted_checkout_and_an_existing_file(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "_git", lambda *a: "abc" if a[0] == "rev-parse" else " M src/xeontl/plan.py")
    with pytest.raises(UserError, match="uncommitted changes: commit them first"):
        archive.make(tmp_path / "x.tar")
    monkeypatch.setattr(archive, "_git", lambda *a: "abc" if a[0] == "rev-parse" else "")
    monkeypatch.setattr(dockercli, "require_image", lambda ref, inputs: {"Id": "sha256:1"})
    (tmp_path / "x.tar").write_text("mine")
    with pytest.raises(UserError, match="exists: choose another --output"):
        archive.make(tmp_path / "x.tar")
    assert (tmp_path / "x.tar").read_text() == "mine"


def test_a_full_disk_while_archiving_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    monkeypatch.setattr(archive, "_git", lambda *a: "abc" if a[0] == "rev-parse" else "")
    monkeypatch.setattr(dockercli, "require_image", lambda ref, inputs: {"Id": "sha256:1", "Size": 1})
    monkeypatch.setattr(dockercli, "inspect", lambda ref: {"Id": "sha256:2"})
    monkeypatch.setattr(archive, "_pipe", lambda first, second, out, what: out.write_bytes(b"x" * 100))
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
    from xeontl.options import Options

    env = {**os.environ, "XEONTL_CACHE_DIR": str(tmp_path / "cache")}
    out = tmp_path / "x.tar"
    r = invoke("archive", "--output", str(out), timeout=1800, env=env)
    assert r.returncode == 0, r.stderr
    manifest = archive.verify(out)
    assert manifest["image"]["id"] == dockercli.inspect("xeontl:latest")["Id"]
    assert set(manifest["members"]) == {"image.tar.gz", "source.tar.gz"}
    assert manifest["deps_image"] == {"ref": imagelib.deps_tag(), "id": dockercli.inspect(imagelib.deps_tag())["Id"]}
    with tarfile.open(out) as tar:
        src = tarfile.open(fileobj=tar.extractfile(f"{archive.ROOT}/source.tar.gz"))
        names = src.getnames()
    assert "xeontl/src/xeontl/plan.py" in names and any(n.startswith("xeontl/results/reference/") for n in names)
    tag = f"xeontl:from-archive-{secrets.token_hex(3)}"
    try:
        r = invoke("build", "--from", str(out), "--tag", tag, timeout=1800, env=env)
        assert r.returncode == 0, r.stderr
        assert dockercli.inspect(tag)["Id"] == manifest["image"]["id"]
        assert dockercli.inspect(imagelib.deps_tag())["Id"] == manifest["deps_image"]["id"]  # rebuilds stay cheap
        monkeypatch.setenv("XEONTL_CACHE_DIR", str(tmp_path / "cache"))
        engine = docker.DockerEngine(Options(image=tag, build=False))
        engine.preflight(None)
        record = engine.execution()["image"]["archive"]
        assert record["archive"] == str(out) and record["commit"] == manifest["commit"]
        assert record["archive_sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True)
