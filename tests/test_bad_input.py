"""Launcher bad input beyond the plan's: each one clear line, nothing launched, nothing written."""

import collections

import pytest

from conftest import SPR, docker_ok, invoke, one_line_error
from xeontl import launch
from xeontl.errors import UserError


def test_results_dir_that_cannot_be_created(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    r = invoke("reproduce", "--sockets", "1", "--native", "--results-dir", str(blocker / "results"), timeout=120)
    one_line_error(r, "cannot create results dir")


def test_nearly_full_disk_is_refused(tmp_path, monkeypatch):
    usage = collections.namedtuple("usage", "total used free")
    monkeypatch.setattr(launch.shutil, "disk_usage", lambda p: usage(10 << 30, (10 << 30) - (5 << 20), 5 << 20))
    with pytest.raises(UserError, match="only 5 MiB free"):
        launch.check_results_dir(tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(not docker_ok(), reason="needs the docker CLI")
def test_docker_daemon_down(tmp_path):
    r = invoke("reproduce", "--sockets", "1", "--results-dir", str(tmp_path / "res"), timeout=120,
               env={"DOCKER_HOST": "unix:///nonexistent/docker.sock"})
    one_line_error(r, "Docker daemon is not reachable")
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


def test_recorded_topology_that_does_not_fit_this_host_is_not_run(tmp_path):
    r = invoke("reproduce", "--sockets", "2", "--topology", str(SPR), "--native", "--results-dir", str(tmp_path),
               timeout=120)
    one_line_error(r, "may not use")
