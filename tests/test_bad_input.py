"""Launcher bad input beyond the plan's: each one clear line, nothing launched, nothing written."""

import collections
import dataclasses
import os
import subprocess

import pytest

from conftest import ROOT, SPR, docker_ok, invoke, one_line_error, scaled
from xeontl.common.errors import UserError
from xeontl.launch import launch


def test_results_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = invoke("reproduce", "--sockets", "1", "--native", "--results-dir", str(blocker / "results"),
               timeout=scaled(120))
    one_line_error(r, "cannot create results dir")


def test_nearly_full_disk_is_refused(tmp_path, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(launch.shutil, "disk_usage", lambda p: usage(10 << 30, (10 << 30) - (5 << 20), 5 << 20))
    with pytest.raises(UserError, match="only 5 MiB free"):
        launch.check_results_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not docker_ok(), reason="needs the docker CLI")
def test_docker_daemon_down(tmp_path):
    r = invoke("reproduce", "--sockets", "1", "--results-dir", str(tmp_path / "res"), timeout=scaled(120),
               env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    one_line_error(r, "Docker daemon is not reachable")
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


def test_recorded_topology_that_does_not_fit_this_host_is_not_run(tmp_path):
    r = invoke("reproduce", "--sockets", "2", "--topology", str(SPR), "--native", "--results-dir", str(tmp_path),
               timeout=scaled(120))
    one_line_error(r, "offline or absent on this host")


@pytest.mark.slow
def test_wheelhouse_hash_mismatch_is_one_clear_error(tmp_path, monkeypatch):
    """A lock file whose hash does not match what the index serves (a tampered or re-published file): the build
    stops at the wheelhouse step, says so, and the wheelhouse holds no unverified file."""
    from xeontl.supply import image

    lock = tmp_path / "lock.txt"
    lock.write_text("six==1.16.0 --hash=sha256:" + "0" * 64 + "\n")
    monkeypatch.setattr(image, "HOROVOD_LOCK", lock)
    stack = dataclasses.replace(image.DEFAULT, lock=str(lock), wheels=str(tmp_path / "wheelhouse"))
    with pytest.raises(UserError, match=r"wheelhouse failed \(hash mismatch for six==1.16.0 .*invoke lock") as e:
        image.wheelhouse(stack)
    assert "\n" not in str(e.value)
    assert not any((tmp_path / "wheelhouse").glob("six-*"))


def test_offline_build_without_debootstrap_says_what_to_install(monkeypatch):
    from xeontl.supply import image

    monkeypatch.setattr(image.dockerapi, "inspect", lambda tag: None)
    monkeypatch.setattr(image.shutil, "which", lambda name: None)
    with pytest.raises(UserError, match="debootstrap is not installed: apt-get install debootstrap"):
        image.build_base("runtime")


def test_an_image_built_from_other_sources_is_refused(monkeypatch, tmp_path):
    """A stale image would run other code than the checkout's (and config.json could differ from what ran)."""
    from xeontl.supply import dockerapi, image

    def check_image(ref):
        return dockerapi.require_image(ref, image.checkout_inputs_hash())

    info = {"Id": "sha256:x", "Config": {"Labels": {dockerapi.INPUTS_LABEL: "0123456789ab"}}}
    monkeypatch.setattr(dockerapi, "inspect", lambda ref: info)
    here = image.checkout_inputs_hash()
    assert here and here != "0123456789ab"
    with pytest.raises(UserError, match=r"built from inputs 0123456789ab, this checkout is inputs .*invoke build"):
        check_image("xeontl:latest")
    info["Config"]["Labels"][dockerapi.INPUTS_LABEL] = here
    assert check_image("xeontl:latest") is info
    del info["Config"]["Labels"][dockerapi.INPUTS_LABEL]
    with pytest.raises(UserError, match="sources this checkout cannot identify"):
        check_image("xeontl:latest")


def test_invoke_keys_makes_a_pair_once(tmp_path):
    assert invoke("keys", "--dir", str(tmp_path)).returncode == 0
    assert (tmp_path / "id_ed25519").stat().st_mode & 0o077 == 0  # a private key ssh accepts
    assert (tmp_path / "id_ed25519.pub").read_text().startswith("ssh-ed25519 ")
    one_line_error(invoke("keys", "--dir", str(tmp_path)), "exists")


def test_compose_file_needs_nothing_but_compose_env(tmp_path, compose):
    """compose interpolates every service whatever the profile: `invoke compose-env` alone must satisfy it (a `:?`
    in a service of another profile once broke the two-node layout)."""
    from xeontl.engines import compose as composelib

    env = composelib.env(tmp_path, keys_dir=tmp_path / "keys")
    empty = tmp_path / "empty.env"
    empty.write_text("")
    r = subprocess.run([*compose, "-f", str(ROOT / "compose.yaml"), "--env-file", str(empty), "config", "-q"],
                       capture_output=True, text=True, env={"PATH": os.environ["PATH"], **env}, timeout=scaled(120))
    assert r.returncode == 0, r.stderr


def test_build_contexts_hold_only_what_each_image_copies():
    """The app image's context is a few hundred KB (the legacy builder would send the 358 MB wheelhouse on every
    build); a source change leaves the deps image's hash, and so the deps image, as it is."""
    import tarfile

    from xeontl.supply import image

    with image._context(image.APP_INPUTS) as ctx:
        names = tarfile.open(fileobj=ctx).getnames()
        ctx.seek(0, 2)
        size = ctx.tell()
    assert "docker/Dockerfile" in names and "src/xeontl/placement/plan.py" in names
    assert "src/xeontl/configs/demo.toml" in names
    assert not any(n.startswith(("docker/wheelhouse", "requirements", "tests", "results")) for n in names)
    assert size < 5 << 20, size
    assert set(image.DEPS_INPUTS).isdisjoint(image.APP_INPUTS) and "src" not in image.DEPS_INPUTS
    assert image.deps_tag() == f"xeontl-deps:{image.inputs_hash(image.DEPS_INPUTS)}"


def test_compose_services_drop_every_capability_and_read_the_references_only(tmp_path, compose):
    """As compose resolves compose.yaml: every service but SYS_NICE dropped, no new privileges, the committed
    references mounted read-only over the results dir."""
    import yaml

    from xeontl.engines import compose as composelib
    from xeontl.records.reference import REFERENCE_DIR

    env = composelib.env(REFERENCE_DIR.parent, keys_dir=tmp_path / "keys")  # the checkout's results/, as by default
    assert composelib.env(tmp_path, keys_dir=tmp_path / "keys")["XEONTL_REFERENCE_AT"] == "/opt/xeontl/reference"
    empty = tmp_path / "empty.env"
    empty.write_text("")
    r = subprocess.run([*compose, "-f", str(ROOT / "compose.yaml"), "--env-file", str(empty), "--profile",
                        "one-socket", "--profile", "two-socket", "--profile", "two-node", "--profile", "two-host",
                        "config"], capture_output=True, text=True, env={"PATH": os.environ["PATH"], **env},
                       timeout=scaled(120))
    assert r.returncode == 0, r.stderr
    services = yaml.safe_load(r.stdout)["services"]
    assert len(services) == 6
    for name, svc in services.items():
        assert svc["cap_drop"] == ["ALL"] and svc["cap_add"] == ["SYS_NICE"], name
        assert any("no-new-privileges" in o for o in svc["security_opt"]), name
        refs = [v for v in svc["volumes"] if (v["target"] if isinstance(v, dict) else v.split(":")[1]) ==
                "/results/reference"]
        assert len(refs) == 1, (name, svc["volumes"])
        ref = refs[0]
        assert (ref.get("read_only") if isinstance(ref, dict) else ref.endswith(":ro")), (name, ref)
