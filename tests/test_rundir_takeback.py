"""A run dir the container's user wrote is taken back before the launcher touches it (issue 39, adversarial review:
a root-run docker engine wrote metrics.json through a link the image's uid planted in the staging dir). Table
driven: what the container leaves, then the engine's own finish (DockerEngine.finished) and the launcher's settle
(outcome.settle, what conclude runs first); the file outside the run dir must come out untouched, the planted entry
removed, the run settled."""

import os
import socket
import stat
from pathlib import Path

import pytest

from xeontl.common.errors import UserError
from xeontl.engines import docker as dockerengine
from xeontl.launch import outcome, rundir


def _symlink(st: Path, outside: Path, name: str) -> None:
    os.symlink(outside, st / name)


def _hardlink(st: Path, outside: Path, name: str) -> None:
    os.link(outside, st / name)


def _fifo(st: Path, outside: Path, name: str) -> None:
    os.mkfifo(st / name)


def _socket(st: Path, outside: Path, name: str) -> None:
    s = socket.socket(socket.AF_UNIX)
    s.bind(str(st / name))
    s.close()


def _dirlink(st: Path, outside: Path, name: str) -> None:
    os.symlink(outside.parent, st / name)


def _nested(st: Path, outside: Path, name: str) -> None:
    (st / "checkpoints").mkdir()
    os.symlink(outside, st / "checkpoints" / name)


# (case, how it is planted, the name planted, what take_back must report removed)
PLANTED = [
    ("symlink at the metrics temp name", _symlink, ".metrics.json.tmp", ".metrics.json.tmp"),
    ("symlink as metrics.json", _symlink, "metrics.json", "metrics.json"),
    ("symlink as the event log", _symlink, "mllog.txt", "mllog.txt"),
    ("symlink as report.md", _symlink, "report.md", "report.md"),
    ("symlink as provenance.json", _symlink, "provenance.json", "provenance.json"),
    ("hard link as the event log", _hardlink, "mllog.txt", "mllog.txt"),
    ("FIFO as the event log", _fifo, "mllog.txt", "mllog.txt"),
    ("FIFO as the launcher's log", _fifo, "logs-launcher.txt", "logs-launcher.txt"),
    ("socket as curves.png", _socket, "curves.png", "curves.png"),
    ("symlink to a directory", _dirlink, "checkpoints", "checkpoints"),
    ("symlink in a subdirectory", _nested, "state.json", "checkpoints/state.json"),
]


@pytest.mark.parametrize("case,plant,name,want", PLANTED, ids=[c[0] for c in PLANTED])
def test_take_back_removes_what_the_container_planted(tmp_path, case, plant, name, want):
    outside = tmp_path / "root-only" / "bashrc"
    outside.parent.mkdir()
    outside.write_text("# root's own\n")
    st = tmp_path / ".staging-x"
    st.mkdir()
    rundir.write_metrics(st, rundir.PLACEHOLDER)
    (st / name).unlink(missing_ok=True)
    plant(st, outside, name)
    os.chmod(st, 0o777)
    dockerengine.DockerEngine.finished(object.__new__(dockerengine.DockerEngine), st)
    for p in [st, *st.rglob("*")]:  # what is left: plain directories and files with one link, not group/other-writable
        m = os.lstat(p)
        assert stat.S_ISDIR(m.st_mode) or (stat.S_ISREG(m.st_mode) and m.st_nlink == 1), (case, p)
        assert not m.st_mode & 0o022, (case, p)
        assert m.st_uid == os.getuid(), (case, p)
    final, _, _ = outcome.settle(st, outcome.Ended(1))  # what conclude does next: rewrites metrics, appends the log
    assert final == "failed"
    assert outside.read_text() == "# root's own\n", case
    assert not (st / want).is_symlink()


def test_take_back_reports_what_it_removed(tmp_path):
    st = tmp_path / "run"
    (st / "a").mkdir(parents=True)
    os.symlink("/etc/passwd", st / "a" / "l")
    (st / "f").write_text("kept")
    assert rundir.take_back(st, os.getuid(), os.getgid()) == ["a/l"]
    assert (st / "f").read_text() == "kept"


def test_metrics_written_never_through_a_fixed_name(tmp_path):
    # every name the writer could use, planted: the write goes to a fresh random name and renames over metrics.json
    outside = tmp_path / "outside"
    outside.write_text("x")
    st = tmp_path / "run"
    st.mkdir()
    os.symlink(outside, st / ".metrics.json.tmp")
    os.symlink(outside, st / "metrics.json")
    rundir.write_metrics(st, rundir.PLACEHOLDER)
    assert outside.read_text() == "x"
    assert not (st / "metrics.json").is_symlink()


@pytest.mark.parametrize("plant", [_symlink, _hardlink, _fifo], ids=["symlink", "hardlink", "fifo"])
def test_launcher_log_opened_never_through_what_was_planted(tmp_path, plant):
    outside = tmp_path / "outside"
    outside.write_text("x")
    st = tmp_path / "run"
    st.mkdir()
    plant(st, outside, outcome.LAUNCHER_LOG)
    with pytest.raises(UserError):
        dockerengine.open_log(st / outcome.LAUNCHER_LOG)
    assert outside.read_text() == "x"
