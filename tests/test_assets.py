"""Assets without the internet: an HTTP server on 127.0.0.1 that the tests start serves fixture files (a small
SavedModel with the feature-vector signature, packed as TF-Hub serves it; an archive in the Kather layout) and
misbehaves on request: 404, a truncated body, a server that dies mid-transfer, a silent one, a wrong file. Every
failure ends in one line with nothing half-written under the final name; an interrupted download resumes."""

import hashlib
import http.server
import io
import json
import re
import socket
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import invoke, one_line_error, scaled
from xeontl.common.errors import UserError
from xeontl.experiment import config, data
from xeontl.supply import assets


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True


def handler_for(files: dict[str, bytes], log: list):
    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *a):
            pass

        def do_GET(self):
            mode, _, name = self.path.split("?")[0].strip("/").partition("/")  # TF-Hub adds ?tf-hub-format=
            log.append((mode, name, self.headers.get("Range"), self.headers.get("Authorization")))
            body = files.get(name)
            if mode == "404" or body is None:
                self.send_error(404, "Not Found")
                return
            start = 0
            if self.headers.get("Range") and mode in ("ok", "flaky"):
                start = int(self.headers["Range"].split("=")[1].split("-")[0])
                self.send_response(206)
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            else:
                self.send_response(200)
            self.send_header("Content-Length", str(len(body) - start))
            self.end_headers()
            if mode == "silent":
                time.sleep(5)
                return
            if mode in ("truncated", "die") or (mode == "flaky" and start == 0):
                self.wfile.write(body[start:start + len(body) // 2])
                self.wfile.flush()
                if mode == "die":  # the server process dies: the connection is reset, not closed cleanly
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
                self.connection.close()
                return
            self.wfile.write(body[start:])

    return Handler


@pytest.fixture
def server():
    files, log = {}, []
    srv = Server(("127.0.0.1", 0), handler_for(files, log))
    threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True).start()
    yield f"http://127.0.0.1:{srv.server_address[1]}", files, log
    srv.shutdown()


def kather_zip(path: Path) -> bytes:
    with zipfile.ZipFile(path, "w") as z:
        for ci, folder in enumerate(data.KATHER_FOLDERS):
            for k in range(3):
                img = Image.fromarray(np.full((150, 150, 3), ci * 30 + k, np.uint8))
                f = path.parent / f"{folder}-{k}.tif"
                img.save(f)
                z.write(f, f"Kather_texture_2016_image_tiles_5000/{folder}/{k}.tif")
    return path.read_bytes()


def feature_vector_tgz(tmp: Path) -> bytes:
    """A small SavedModel with the feature-vector contract ([0,1] images -> pooled features) and the v1.5 stride
    placement (stride 2 on a 3x3 conv), packed as TF-Hub serves a compressed model."""
    import tensorflow as tf

    inp = tf.keras.Input((32, 32, 3))
    x = tf.keras.layers.Conv2D(8, 7, strides=2, padding="same")(inp)
    x = tf.keras.layers.Conv2D(8, 1)(x)
    x = tf.keras.layers.Conv2D(8, 3, strides=2, padding="same")(x)
    tf.saved_model.save(tf.keras.Model(inp, tf.keras.layers.GlobalAveragePooling2D()(x)), str(tmp / "sm"))
    with tarfile.open(tmp / "model.tar.gz", "w:gz") as tar:
        for f in sorted((tmp / "sm").rglob("*")):
            tar.add(f, arcname=str(f.relative_to(tmp / "sm")), recursive=False)
    return (tmp / "model.tar.gz").read_bytes()


def sha(b: bytes) -> str:
    return hashlib.sha256(b).hexdigest()


# ---------------------------------------------------------------------------------------------- one file
def test_happy_path_is_verified_and_atomic(server, tmp_path):
    base, files, _ = server
    files["a.zip"] = body = b"x" * 3_000_000
    got = assets.fetch_file(f"{base}/ok/a.zip", tmp_path / "a.zip", sha(body), len(body), progress=False)
    assert got["sha256"] == sha(body) and (tmp_path / "a.zip").read_bytes() == body
    assert not (tmp_path / "a.zip.part").exists()
    again = assets.fetch_file(f"{base}/404/a.zip", tmp_path / "a.zip", sha(body), progress=False)
    assert again["source"] == "already present"  # verified, not downloaded again


@pytest.mark.parametrize("mode,needle", [("404", "HTTP 404"), ("truncated", "truncated"),
                                         ("die", "broke off|truncated"), ("silent", "broke off|timed out|failed")])
def test_each_bad_download_is_one_line_and_leaves_no_final_file(server, tmp_path, mode, needle):
    base, files, _ = server
    files["a.zip"] = body = bytes(range(256)) * 8000
    with pytest.raises(UserError, match=needle) as e:
        assets.fetch_file(f"{base}/{mode}/a.zip", tmp_path / "a.zip", sha(body), len(body), timeout=2,
                          progress=False)
    assert "\n" not in str(e.value) and not (tmp_path / "a.zip").exists()


def test_wrong_hash_removes_the_download(server, tmp_path):
    base, files, _ = server
    files["a.zip"] = b"not the archive"
    with pytest.raises(UserError, match="expected 0+: it was removed"):
        assets.fetch_file(f"{base}/ok/a.zip", tmp_path / "a.zip", "0" * 64, progress=False)
    assert not list(tmp_path.iterdir())


def test_an_interrupted_download_resumes_where_it_stopped(server, tmp_path):
    base, files, log = server
    files["a.zip"] = body = bytes(range(256)) * 8000
    with pytest.raises(UserError, match="truncated"):
        assets.fetch_file(f"{base}/flaky/a.zip", tmp_path / "a.zip", sha(body), progress=False)
    half = (tmp_path / "a.zip.part").stat().st_size
    assert 0 < half < len(body) and not (tmp_path / "a.zip").exists()
    assets.fetch_file(f"{base}/flaky/a.zip", tmp_path / "a.zip", sha(body), progress=False)
    assert (tmp_path / "a.zip").read_bytes() == body
    assert log[-1][2] == f"bytes={half}-"  # the second request asked only for the rest


def test_a_full_disk_is_one_line(server, tmp_path, monkeypatch):
    import errno

    base, files, _ = server
    files["a.zip"] = body = b"y" * 100_000
    real_open = open

    class Full:
        def __init__(self, f):
            self.f = f

        def __enter__(self):
            return self

        def __exit__(self, *a):
            self.f.close()

        def write(self, b):
            raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr("builtins.open", lambda p, m="r", *a, **k: Full(real_open(p, m, *a, **k))
                        if str(p).endswith(".part") else real_open(p, m, *a, **k))
    with pytest.raises(UserError, match="is full after 0 bytes"):
        assets.fetch_file(f"{base}/ok/a.zip", tmp_path / "a.zip", sha(body), progress=False)


# ---------------------------------------------------------------------------------------------- the task
@pytest.mark.slow  # builds and loads a small SavedModel
def test_assets_task_fetches_verifies_exports_and_imports(server, tmp_path):
    base, files, _ = server
    files["Kather.zip"] = archive = kather_zip(tmp_path / "k.zip")
    files["model.tar.gz"] = feature_vector_tgz(tmp_path)
    here = tmp_path / "here"
    here.mkdir()
    sets = ["--set", f"archive_sha256={sha(archive)}", "--set", f"data_dir={here / 'tfds'}",
            "--set", f"weights=savedmodel:{here / 'weights'}"]
    env = {"TFHUB_CACHE_DIR": str(tmp_path / "hub-cache")}
    r = invoke("assets", "--profile", "paper", *sets, "--data-url", f"{base}/ok/Kather.zip",
               "--weights-handle", f"{base}/ok/model.tar.gz", "--manifest", str(here / "manifest.json"),
               "--export", str(tmp_path / "bundle.tar"), env=env, timeout=scaled(600))
    assert r.returncode == 0, r.stdout + r.stderr
    manifest = json.loads((here / "manifest.json").read_text())
    assert manifest["data"]["sha256"] == sha(archive)
    assert (here / "tfds" / "downloads" / "manual" / data.ARCHIVE_NAME).read_bytes() == archive
    # read from the graph, never assumed: this toy graph is none of the reference networks (architectures.json)
    assert manifest["weights"]["architecture"] == "unknown" and not manifest["weights"]["architecture_is_paper"]
    assert manifest["weights"]["stride2_convolutions"] == {"7x7": 1, "3x3": 1}
    assert (here / "weights" / "saved_model.pb").is_file()
    # the air-gapped host: nothing but the bundle
    there = tmp_path / "there"
    there.mkdir()
    sets2 = ["--set", f"archive_sha256={sha(archive)}", "--set", f"data_dir={there / 'tfds'}",
             "--set", f"weights=savedmodel:{there / 'weights'}"]
    r = invoke("assets", "--profile", "paper", *sets2, "--from", str(tmp_path / "bundle.tar"),
               "--manifest", str(there / "manifest.json"), timeout=scaled(600))
    assert r.returncode == 0, r.stdout + r.stderr
    assert (there / "tfds" / "downloads" / "manual" / data.ARCHIVE_NAME).read_bytes() == archive
    theirs = json.loads((there / "manifest.json").read_text())
    assert theirs["weights"]["sha256"] == manifest["weights"]["sha256"]
    # a bundle whose data does not match the pin is refused, and nothing is unpacked
    one_line_error(invoke("assets", "--profile", "paper", "--set", f"data_dir={tmp_path / 'x'}",
                          "--set", f"weights=savedmodel:{tmp_path / 'x' / 'w'}", "--from", str(tmp_path / "bundle.tar"),
                          "--manifest", str(tmp_path / "x.json"),
                              timeout=scaled(600)), "expected " + data.ARCHIVE_SHA256)
    assert not (tmp_path / "x").exists()


def test_assets_task_offline_says_how_to_bring_the_files(tmp_path):
    r = invoke("assets", "--profile", "paper", "--set", f"data_dir={tmp_path}", "--set",
               f"weights=savedmodel:{tmp_path / 'w'}", "--data-url", "http://127.0.0.1:9/none.zip",
               "--manifest", str(tmp_path / "m.json"), timeout=scaled(300))
    one_line_error(r, "--from FILE")
    assert not (tmp_path / "downloads" / "manual" / data.ARCHIVE_NAME).exists()


def test_nothing_to_fetch_for_the_offline_profiles():
    assert assets.needed(config.resolve("demo")) == {}


def test_the_ranks_read_the_same_absolute_paths_wherever_they_run(tmp_path):
    """The paper profile's weights and TFDS data are host paths: the resolved config holds them absolute, and the
    container mounts exactly those paths, read-only (before, a docker run could not see them at all)."""
    from conftest import SPR
    from xeontl.launch import launch
    from xeontl.launch.options import Options

    p = launch.prepare(Options(sockets=2, profile="paper", dry_run=True, topology_file=str(SPR),
                                      overrides={"data_dir": str(tmp_path / "tfds")}, results_dir=tmp_path / "r"))
    weights = p.cfg["weights"].removeprefix("savedmodel:")
    assert Path(weights).is_absolute() and p.cfg["data_dir"] == str(tmp_path / "tfds")
    assert p.cfg["manual_dir"] == str(tmp_path / "tfds" / "downloads" / "manual")
    mounts = [p.command[i + 1] for i, a in enumerate(p.command) if a == "-v"]
    assert f"{weights}:{weights}:ro" in mounts and f"{tmp_path / 'tfds'}:{tmp_path / 'tfds'}:ro" in mounts
    assert len(mounts) == 3  # the run dir, the weights, the data: nothing else of the host


# ---------------------------------------------------------------------------------------------- credentials, bundles
def test_url_credentials_are_sent_as_a_header_and_written_nowhere(server, tmp_path):
    """The issue's reproducer: a URL with user:pass@ raised InvalidURL with the password in its traceback. Now the
    credentials go as Basic auth, and the manifest and every error line show the URL without them."""
    import base64

    base, files, log = server
    files["a.zip"] = body = b"z" * 1000
    url = base.replace("http://", "http://reviewer:s3cr%40t@") + "/ok/a.zip"
    got = assets.fetch_file(url, tmp_path / "a.zip", sha(body), progress=False)
    assert log[-1][3] == "Basic " + base64.b64encode(b"reviewer:s3cr@t").decode()
    assets.record({"data": got}, tmp_path / "manifest.json")
    assert "s3cr" not in (tmp_path / "manifest.json").read_text() and "<redacted>@" in got["source"]
    with pytest.raises(UserError) as e:
        assets.fetch_file(url.replace("/ok/", "/404/"), tmp_path / "b.zip", sha(body), progress=False)
    assert "s3cr" not in str(e.value) and "<redacted>@127.0.0.1" in str(e.value)
    with pytest.raises(UserError) as e:  # a malformed port with credentials before it: still one redacted line
        assets.fetch_file("http://user:pass@127.0.0.1:notaport/x.zip", tmp_path / "c.zip", sha(body), progress=False)
    assert "pass" not in str(e.value).replace("bypass", "")


def bundle_with(path: Path, members: dict, mode: str = "w") -> Path:
    with tarfile.open(path, mode) as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(name)
            if body is None:
                info.type, info.linkname = tarfile.SYMTYPE, "/etc/passwd"
            elif body == "dir":
                info.type, body = tarfile.DIRTYPE, None
            else:
                info.size = len(body)
            tar.addfile(info, None if body is None else io.BytesIO(body))
    return path


def _listing(**entries) -> bytes:
    from xeontl.experiment.model import tree_sha256

    empty = {"data": hashlib.sha256(b"").hexdigest(), "weights": tree_sha256({})}
    return json.dumps({k: {"name": "weights" if k == "weights" else data.ARCHIVE_NAME, "sha256": v or empty[k]}
                       for k, v in entries.items()}).encode()


@pytest.mark.parametrize("members,mode,needle", [
    ({"xeontl-assets.json": b"{}"}, "w:gz", "is not an assets bundle (a plain tar"),
    ({"xeontl-assets.json": b"{}", "/etc/cron.d/x": b"x"}, "w", "member '/etc/cron.d/x' is not one"),
    ({"xeontl-assets.json": b"{}", "weights/../../x": b"x"}, "w", "member 'weights/../../x' is not one"),
    ({"xeontl-assets.json": b"{}", "weights/link": None}, "w", "member 'weights/link' is not one"),
    ({"xeontl-assets.json": json.dumps({"weights": {"name": "/tmp/evil", "sha256": "0" * 64}}).encode()}, "w",
     "its manifest is not one `invoke assets --export` writes"),
    # issue 39 adversarial review: the Kather member a directory (a traceback), weights that are nothing (valid)
    ({"xeontl-assets.json": _listing(data=None), data.ARCHIVE_NAME: "dir"}, "w", "is of the wrong kind"),
    ({"xeontl-assets.json": _listing(weights=None)}, "w", "holds no SavedModel"),
    ({"xeontl-assets.json": _listing(weights=None), "weights": "dir"}, "w", "holds no SavedModel"),
    ({"xeontl-assets.json": _listing(weights=None), "weights": b"x"}, "w", "is of the wrong kind"),
    ({"xeontl-assets.json": _listing(weights=None), "weights": "dir", "weights/saved_model.pb": "dir"}, "w",
     "holds no SavedModel"),
])
def test_a_hostile_bundle_is_refused_before_anything_is_unpacked(tmp_path, members, mode, needle):
    cfg = config.resolve("paper", {"data_dir": str(tmp_path / "tfds"), "weights": f"savedmodel:{tmp_path / 'w'}"})
    bundle = bundle_with(tmp_path / "b.tar", members, mode)
    with pytest.raises(UserError, match=re.escape(needle)):
        assets.import_(cfg, bundle, tmp_path / "manifest.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar"]


def test_an_existing_destination_with_other_content_is_never_replaced(tmp_path):
    body = b"the archive"
    digest = sha(body)
    manifest = json.dumps({"data": {"name": data.ARCHIVE_NAME, "sha256": digest}}).encode()
    bundle = bundle_with(tmp_path / "b.tar", {"xeontl-assets.json": manifest, data.ARCHIVE_NAME: body})
    cfg = config.resolve("paper", {"data_dir": str(tmp_path / "tfds"), "archive_sha256": digest})
    dest = assets.manual_dir(cfg) / data.ARCHIVE_NAME
    dest.parent.mkdir(parents=True)
    dest.write_bytes(b"somebody's own file")
    with pytest.raises(UserError, match="exists with sha256 .* nothing was replaced"):
        assets.import_(cfg, bundle, tmp_path / "manifest.json")
    assert dest.read_bytes() == b"somebody's own file"
    dest.unlink()
    assert assets.import_(cfg, bundle, tmp_path / "manifest.json")["data"]["sha256"] == digest
    assert dest.read_bytes() == body and not list(dest.parent.glob(".xeontl-import-*"))


@pytest.mark.parametrize("data_filter", [True, False], ids=["python with tarfile's data filter", "python 3.11.2"])
def test_an_imported_member_keeps_no_owner_and_no_set_id_bit(tmp_path, monkeypatch, data_filter):
    """A bundle's member as another machine's tar may carry it: mode 4755 (setuid), 2777, owned by uid 1234. It is
    placed owned by the importing user, with no set-id bit and nothing group- or world-writable, on a Python with
    tarfile's "data" filter or without one (Debian 12's 3.11.2: there, as root, extractall kept all of it)."""
    import os
    import stat

    if not data_filter:
        monkeypatch.delattr(tarfile, "data_filter", raising=False)
    body = b"the archive"
    digest = sha(body)
    manifest = json.dumps({"data": {"name": data.ARCHIVE_NAME, "sha256": digest}}).encode()
    with tarfile.open(tmp_path / "b.tar", "w") as tar:
        for name, content, mode in (("xeontl-assets.json", manifest, 0o644), (data.ARCHIVE_NAME, body, 0o6777)):
            info = tarfile.TarInfo(name)
            info.size, info.mode, info.uid, info.gid, info.uname, info.gname = len(content), mode, 1234, 1234, "", ""
            tar.addfile(info, io.BytesIO(content))
    cfg = config.resolve("paper", {"data_dir": str(tmp_path / "tfds"), "archive_sha256": digest})
    assert assets.import_(cfg, tmp_path / "b.tar", tmp_path / "manifest.json")["data"]["sha256"] == digest
    st = (assets.manual_dir(cfg) / data.ARCHIVE_NAME).stat()
    assert st.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX | 0o022) == 0, oct(st.st_mode)
    assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid())


# ---------------------------------------------------------------------------------------------- weights: one digest
def tree(root: Path, files: dict[str, bytes | str]) -> Path:
    """Files under ROOT; a str value makes a symbolic link to that target instead."""
    for rel, body in files.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(body, str):
            p.symlink_to(body)
        else:
            p.write_bytes(body)
    return root


@pytest.mark.parametrize("names", [
    ["a.txt", "a/b"],  # issue 39 item 10: "a.txt" < "a/b" as strings, ("a",) < ("a.txt",) as paths
    ["a-b", "a/b", "a.b/c", "a0", "a/b.c/d"],
    ["saved_model.pb", "variables/variables.index", "variables/variables.data-00000-of-00001", "keras_metadata.pb"],
    ["x"],
])
def test_the_weights_digest_and_the_bundles_stream_digest_are_one(tmp_path, names):
    """weights_sha256 of a directory and what import_ computes from a bundle's streams agree, whatever the names: a
    bundle export() made of these weights is imported, not refused."""
    from xeontl.experiment.model import weights_sha256

    weights = tree(tmp_path / "w", {n: n.encode() * 3 for n in names})
    with tarfile.open(tmp_path / "b.tar", "w") as tar:
        tar.add(weights, arcname="weights")  # as export() packs them
    with tarfile.open(tmp_path / "b.tar") as tar:
        members = assets._bundle_members(tar, tmp_path / "b.tar")
        assert assets._bundle_digest(tar, members, "weights") == weights_sha256(weights)
    # and it is the digest pins were recorded with: each path, NUL, its file's sha256, paths by their components
    h = hashlib.sha256()
    for n in sorted(names, key=lambda n: n.split("/")):
        h.update(n.encode() + b"\0" + hashlib.sha256(n.encode() * 3).digest())
    assert weights_sha256(weights) == h.hexdigest()


# ---------------------------------------------------------------------------------------------- weights: no links
@pytest.mark.parametrize("inside", [
    {"variables": "{elsewhere}"},  # issue 39 item 4: rglob skipped a linked variables/, its files never hashed
    {"variables/variables.index": "{elsewhere}/variables.index"},
    {"saved_model.pb": "{elsewhere}/variables.index"},
    {"variables/gone": "{elsewhere}/no-such-file"},
])
def test_a_link_inside_a_savedmodel_is_refused_pinned_or_not(tmp_path, monkeypatch, inside):
    from xeontl.experiment.model import weights_sha256

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    elsewhere = tree(tmp_path / "elsewhere", {"variables.index": b"swapped", "variables.data": b"swapped"})
    files = {"saved_model.pb": b"graph", "variables/variables.index": b"index"}
    files = {k: v for k, v in files.items() if not any(k == i or k.startswith(i + "/") for i in inside)}
    model = tree(tmp_path / "sm", {**files, **{k: v.format(elsewhere=elsewhere) for k, v in inside.items()}})
    with pytest.raises(UserError, match="is a symbolic link: links inside a SavedModel are refused") as e:
        weights_sha256(model)
    assert "\n" not in str(e.value)
    for pin in ("", "0" * 64):  # first-seen pin and the config's weights_sha256 alike
        cfg = config.resolve("paper", {"weights": f"savedmodel:{model}", "weights_sha256": pin})
        with pytest.raises(UserError, match="symbolic link"):
            assets.pin_weights(cfg)
    assert not (tmp_path / "state").exists()  # nothing recorded


# ---------------------------------------------------------------------------------------------- weights: pins
@pytest.mark.parametrize("name, retarget_to, refused", [
    # issue 39 item 4: retargeting the link the config names was a "first use" of the new target
    ("a link retargeted to other weights", b"weights swapped", True),
    ("a link retargeted to a copy of the same weights", b"weights v1", False),
])
def test_weights_are_pinned_by_content_under_the_name_the_config_gives(tmp_path, monkeypatch, name, retarget_to,
                                                                       refused):
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    (tmp_path / "v1.h5").write_bytes(b"weights v1")
    (tmp_path / "v2.h5").write_bytes(retarget_to)
    link = tmp_path / "link.h5"
    link.symlink_to(tmp_path / "v1.h5")
    cfg = config.resolve("paper", {"weights": f"keras:{link}"})
    assert assets.pin_weights(cfg)["status"].startswith("first use")
    link.unlink()
    link.symlink_to(tmp_path / "v2.h5")
    if refused:
        with pytest.raises(UserError, match="not the .* they had at their first use") as e:
            assets.pin_weights(cfg)
        assert "\n" not in str(e.value)
    else:
        assert assets.pin_weights(cfg)["status"] == "the hash of its first use", name
    # the file the link first named is held too, under its own name
    (tmp_path / "v1.h5").write_bytes(b"v1 rewritten in place")
    with pytest.raises(UserError, match="not the .* they had at their first use"):
        assets.pin_weights(config.resolve("paper", {"weights": f"keras:{tmp_path / 'v1.h5'}"}))


# issue 39 adversarial review: the weights were checked once by the launcher and then loaded by path: swapped after the
# check, the ranks loaded the swap. The pinned digest goes into config.json's weights_sha256 and the ranks' own
# describe_weights (experiment.model) refuses anything else. (case, the config's weights_sha256, the weights swapped
# after the launcher's check, the rank's verdict: None = loads)
WEIGHTS_HANDED_ON = [
    ("first use, kept", "", False, None),
    ("first use, swapped after the check", "", True, "expected"),
    ("pinned by the config, kept", "pin", False, None),
    ("pinned by the config, swapped", "pin", True, "expected"),
]


@pytest.mark.parametrize("case,pinned,swapped,refused", WEIGHTS_HANDED_ON, ids=[c[0] for c in WEIGHTS_HANDED_ON])
def test_the_weights_the_launcher_checked_are_what_the_ranks_load(tmp_path, monkeypatch, case, pinned, swapped,
                                                                  refused):
    from types import SimpleNamespace

    from xeontl.experiment import model
    from xeontl.launch import launch

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"the weights checked")
    cfg = config.resolve("smoke")
    cfg.update(weights=f"keras:{weights}", weights_sha256=model.weights_sha256(weights) if pinned else "")
    job = SimpleNamespace(cfg=cfg, files={})
    launch.pin_weights(job)
    config.save(job.cfg, tmp_path / "config.json")  # what _staged writes: the ranks read this file
    rank_cfg = config.load(tmp_path / "config.json")
    assert rank_cfg["weights_sha256"] == hashlib.sha256(b"the weights checked").hexdigest() or \
        rank_cfg["weights_sha256"] == model.weights_sha256(weights), case
    if swapped:
        weights.write_bytes(b"the weights swapped in")
    if refused:
        with pytest.raises(UserError, match=refused):
            model.describe_weights(rank_cfg)
    else:
        assert model.describe_weights(rank_cfg)["sha256"] == rank_cfg["weights_sha256"], case
