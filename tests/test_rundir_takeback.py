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


# What a run's ranks leave for the launcher to read back (issue 39 adversarial review, item 5): each is at most a bad
# line skipped or a failed status, never a traceback or a wait. Settled directly (no take-back first): the readers
# hold on their own.
def _big_log(st: Path) -> None:
    with open(st / outcome.LAUNCHER_LOG, "wb") as f:
        f.seek(200 << 20)
        f.write(b"\nProcess 1 exit with status code 137\n")


READ_BACK = [
    ("a symlinked event log", lambda st, out: os.symlink(out, st / "mllog.txt"), None),
    ("run_stop with metadata not an object",
     lambda st, out: (st / "mllog.txt").write_text(':::MLLOG {"key": "run_stop", "metadata": 1}\n'), None),
    ("a line that is not JSON", lambda st, out: (st / "mllog.txt").write_text(":::MLLOG {oops\n"), None),
    ("a NaN in an event", lambda st, out: (st / "mllog.txt").write_text(
        ':::MLLOG {"key": "run_stop", "metadata": {"status": NaN}}\n'), None),
    ("a FIFO as the event log", lambda st, out: os.mkfifo(st / "mllog.txt"), None),
    ("a FIFO as the launcher's log", lambda st, out: os.mkfifo(st / outcome.LAUNCHER_LOG), None),
    ("a symlinked launcher's log", lambda st, out: os.symlink(out, st / outcome.LAUNCHER_LOG), None),
    ("a 200 MiB launcher's log", lambda st, out: _big_log(st), {"rank": 1, "exit_code": 137, "signal": 9}),
]


@pytest.mark.parametrize("case,plant,rank", READ_BACK, ids=[c[0] for c in READ_BACK])
def test_what_the_ranks_left_is_read_back_bounded(tmp_path, case, plant, rank):
    import signal

    outside = tmp_path / "outside"
    outside.write_text("Process 0 exit with status code 9\n")
    st = tmp_path / "run"
    st.mkdir()
    plant(st, outside)
    signal.signal(signal.SIGALRM, lambda *a: (_ for _ in ()).throw(TimeoutError(case)))
    signal.alarm(20)
    try:
        final, failure, _ = outcome.settle(st, outcome.Ended(1))
    finally:
        signal.alarm(0)
    assert final == "failed", case
    assert {k: v for k, v in failure.items() if k != "returncode"} == (rank or {}), case
    assert outside.read_text() == "Process 0 exit with status code 9\n", case


def test_the_weights_pin_is_read_bounded_and_never_through_a_link(tmp_path):
    from xeontl.records import provenance

    outside = tmp_path / "outside.json"
    outside.write_text('{"sha256": "forged"}')
    for plant in (lambda p: os.symlink(outside, p), os.mkfifo, lambda p: p.write_text('{"a": NaN}'),
                  lambda p: p.write_text("[1]")):
        p = tmp_path / f"weights-pin-{secrets_token()}.json"
        plant(p)
        assert provenance._read_json(p) is None
    good = tmp_path / "good.json"
    good.write_text('{"sha256": "ab"}')
    assert provenance._read_json(good) == {"sha256": "ab"}


def secrets_token() -> str:
    import secrets

    return secrets.token_hex(4)
