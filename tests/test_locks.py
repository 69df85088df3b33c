"""The shared CPU lock dir against a hostile second user of the host (issue 39, items 1, 5 and 7): every use of the dir
through one checked descriptor, regular files only, the name re-checked against the locked inode, a holder note shown
sanitized; and the launch paths' control-character guard. Other users are forked children that setuid (we are root:
the shared-host case is a root run and a user); each child is bounded, so a hang fails instead of blocking."""

import ctypes
import json
import os
import random
import select
import signal
import socket
import stat
import sys
import time
from pathlib import Path

import pytest

from conftest import run, scaled
from xeontl.common import sanitize
from xeontl.common.errors import UserError
from xeontl.launch import cpulock, options

ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="needs root (the shared-host case: a root run, a 2nd user)")
NOBODY, OTHER = 65534, 4242  # two users who are not root (OTHER needs no passwd entry: setuid takes any id)


def as_uid(uid: int, fn, timeout: float = 20.0):
    """fn() in a forked child running as UID: ["ok", its value] or ["err", exception type, message]. A child still
    running after TIMEOUT s is killed and the test fails: a lock that blocks is a bug, not a slow machine."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: never back into pytest
        try:
            os.close(r)
            if uid != os.getuid():
                os.setgroups([])
                os.setgid(uid)
                os.setuid(uid)
            try:
                out = ["ok", fn()]
            except BaseException as e:  # noqa: BLE001 - reported to the parent, whatever it is
                out = ["err", type(e).__name__, str(e)]
            os.write(w, json.dumps(out, default=str).encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        if not select.select([r], [], [], timeout)[0]:
            os.kill(pid, signal.SIGKILL)
            pytest.fail(f"the child as uid {uid} hung for {timeout} s")
        data = b""
        while chunk := os.read(r, 65536):
            data += chunk
    finally:
        os.close(r)
        os.waitpid(pid, 0)
    return json.loads(data)


def held(cpus, run_id="run-x", **kw):
    """A child's whole run: hold CPUS, say so, release."""
    def body():
        with cpulock.hold(cpus, run_id, **kw):
            return "held"
    return body


def make_dir(path: Path, owner: int, mode: int) -> Path:
    path.mkdir()
    os.chown(path, owner, owner)
    os.chmod(path, mode)
    return path


def tree(d: Path) -> dict:
    """Every entry under D: type, mode, owner, content (what a test must find unchanged)."""
    out = {}
    for p in sorted(d.rglob("*")):
        st = p.lstat()
        body = p.read_bytes() if stat.S_ISREG(st.st_mode) else os.readlink(p) if p.is_symlink() else None
        out[str(p.relative_to(d))] = (stat.filemode(st.st_mode), st.st_uid, body)
    return out


# ------------------------------------------------------------------------------------------------ the dir itself
DIRS = [
    # what, owner, mode, named by the admin (XEONTL_LOCK_DIR), run as, refused with (None: taken)
    ("root's 1777, root's run", 0, 0o1777, False, 0, None),
    ("root's 1777, a user's run (locks span users)", 0, 0o1777, False, NOBODY, None),
    ("a user's own 1777", NOBODY, 0o1777, False, NOBODY, None),
    ("another user's 1777, root's run", NOBODY, 0o1777, False, 0, "belongs to uid 65534, neither you nor root"),
    ("another user's 1777, a user's run", OTHER, 0o1777, False, NOBODY, "belongs to uid 4242, neither you nor root"),
    ("another user's 1777 named by the admin", NOBODY, 0o1777, True, 0, None),
    ("root's private 0755 dir (swapped in)", 0, 0o755, True, 0, "has mode 755, not 1777"),
    ("root's 0700", 0, 0o700, True, 0, "has mode 700, not 1777"),
    ("0777 without the sticky bit", 0, 0o777, True, 0, "has mode 777, not 1777"),
    ("group-writable without the sticky bit", 0, 0o775, True, 0, "has mode 775, not 1777"),
    ("another user's 0777 named by the admin", NOBODY, 0o777, True, 0, "has mode 777, not 1777"),
    ("root's 1777 as a user's, not writable by all", 0, 0o1755, False, NOBODY, "has mode 1755, not 1777"),
]


@ROOT_ONLY
@pytest.mark.parametrize("what,owner,mode,named,runner,refused", DIRS, ids=[c[0] for c in DIRS])
def test_the_lock_dir_is_checked_on_its_descriptor(shared, monkeypatch, what, owner, mode, named, runner, refused):
    d = make_dir(shared / "L", owner, mode)
    if named:
        monkeypatch.setenv(cpulock.ENV, str(d))
    else:
        monkeypatch.setattr(cpulock, "DEFAULT", str(d))
    before = tree(shared)
    got = as_uid(runner, held([0]))
    if refused is None:
        assert got == ["ok", "held"], got
        assert (d / "cpu-0.lock").stat().st_mode & 0o777 == 0o666  # shareable: the next user's run can lock it
    else:
        assert got[:2] == ["err", "UserError"] and refused in got[2], got
        assert tree(shared) == before  # nothing made, nothing chmodded
    assert stat.S_IMODE(d.stat().st_mode) == mode  # a dir is never chmodded (a path can be swapped)


@ROOT_ONLY
@pytest.mark.parametrize("what,make,refused", [
    ("missing: made 1777 whatever the umask", None, None),
    ("a symlink to a good 1777 dir", lambda L, s: L.symlink_to(make_dir(s / "real", 0, 0o1777)), "is a symbolic link"),
    ("a file", lambda L, s: L.write_text("x"), "is not a directory"),
])
def test_the_lock_dir_is_made_shareable_or_refused_by_name(shared, monkeypatch, what, make, refused):
    d = shared / "L"
    if make:
        make(d, shared)
    monkeypatch.setenv(cpulock.ENV, str(d))
    old = os.umask(0o077)
    try:
        got = as_uid(0, held([0]))
    finally:
        os.umask(old)
    if refused is None:
        assert got == ["ok", "held"] and oct(d.stat().st_mode & 0o7777) == "0o1777", got
    else:
        assert got[:2] == ["err", "UserError"] and refused in got[2], got


# ------------------------------------------------------------------------------------------------ its entries
def _fifo(p: Path, victim: Path):
    os.mkfifo(p, 0o644)


def _hardlink(p: Path, victim: Path):
    mine = p.parent.parent / f"mine-{os.getuid()}"
    mine.write_text("planted")
    os.link(mine, p)


PLANTED = [
    # what, planted by, plant(path, victim), run as, refused with
    ("a symlink to root's file", NOBODY, lambda p, v: p.symlink_to(v), 0, "is a symbolic link: refused"),
    ("a FIFO 0644 by a user (root's run)", NOBODY, _fifo, 0, "is a FIFO: refused"),
    ("a FIFO 0644 by root (a user's run: open(O_RDONLY) hung)", 0, _fifo, NOBODY, "is a FIFO: refused"),
    ("a FIFO 0644 by another user", OTHER, _fifo, NOBODY, "is a FIFO: refused"),
    ("a directory", NOBODY, lambda p, v: p.mkdir(), 0, "is a directory: refused"),
    ("a socket", NOBODY, lambda p, v: socket.socket(socket.AF_UNIX).bind(str(p)), 0, "is a socket: refused"),
    ("a character device", 0, lambda p, v: os.mknod(p, 0o666 | stat.S_IFCHR, os.makedev(1, 3)), NOBODY,
     "is a character device: refused"),
    ("a hard link", NOBODY, _hardlink, 0, "2 links"),
]


@ROOT_ONLY
@pytest.mark.parametrize("what,planter,plant,runner,refused", PLANTED, ids=[c[0] for c in PLANTED])
def test_a_planted_entry_is_refused_in_one_line_never_opened_never_blocking(shared, monkeypatch, what, planter, plant,
                                                                            runner, refused):
    shared.chmod(0o1777)  # like /tmp: the planter may write beside the dir
    d = make_dir(shared / "L", 0, 0o1777)
    victim = make_dir(shared / "root-only", 0, 0o755) / "victim"
    victim.write_text("keep\n")
    victim.chmod(0o600)
    assert as_uid(planter, lambda: plant(d / "cpu-0.lock", victim))[0] == "ok"
    monkeypatch.setenv(cpulock.ENV, str(d))
    before = tree(shared)

    def run_recording_opens():
        real, opened = os.open, []

        def recording(path, *a, **kw):  # the child's os only
            opened.append(str(path))
            return real(path, *a, **kw)
        os.open = recording
        try:
            held([0])()
        except UserError as e:
            return [str(e), opened]
        return ["held", opened]

    t0 = time.monotonic()
    got = as_uid(runner, run_recording_opens, timeout=20)
    assert got[0] == "ok" and refused in got[1][0] and "\n" not in got[1][0], got
    assert "cpu-0.lock" not in got[1][1], got  # looked at (fstatat), refused, never opened: no device opened
    assert time.monotonic() - t0 < 15
    assert tree(shared) == before  # the victim, the planted entry: untouched


SWAPPED = [
    # what is swapped in between the look (a regular file) and the open, run as, refused with
    ("a FIFO 0644, a user's run (O_NONBLOCK: no hang)", _fifo, NOBODY, "is a FIFO: refused"),
    ("a FIFO 0644, root's run", _fifo, 0, "is a FIFO: refused"),
    ("a symlink", lambda p, v: p.symlink_to(v), 0, "is a symbolic link: refused"),
    ("a directory", lambda p, v: p.mkdir(), 0, "is a directory: refused"),
    ("a hard link", _hardlink, 0, "2 links"),
]


@ROOT_ONLY
@pytest.mark.parametrize("what,plant,runner,refused", SWAPPED, ids=[c[0] for c in SWAPPED])
def test_an_entry_swapped_in_after_the_look_is_refused_on_its_descriptor(shared, monkeypatch, what, plant, runner,
                                                                         refused):
    """The look (stat by dir_fd) sees a regular file; the open gets what was swapped in: the checks on the opened
    descriptor (O_NOFOLLOW, O_NONBLOCK, fstat) still refuse it, in one line, at once."""
    d = make_dir(shared / "L", 0, 0o1777)
    victim = make_dir(shared / "root-only", 0, 0o755) / "victim"
    victim.write_text("keep\n")
    victim.chmod(0o600)
    plant(d / "cpu-0.lock", victim)
    regular = os.stat(victim)
    monkeypatch.setenv(cpulock.ENV, str(d))
    before = tree(shared)

    def swapped_after_the_look():
        real, looks = os.stat, []

        def look(name, *a, **kw):  # the child's os only: the first look by dir_fd sees a regular file
            if kw.get("dir_fd") is not None:
                looks.append(name)
                if len(looks) == 1:
                    return regular
            return real(name, *a, **kw)
        os.stat = look
        fds = set(os.listdir("/proc/self/fd"))
        try:
            held([0])()
        except UserError as e:
            return [str(e), sorted(set(os.listdir("/proc/self/fd")) - fds)]
        return "held"

    got = as_uid(runner, swapped_after_the_look, timeout=20)
    assert got[0] == "ok" and refused in got[1][0], got
    assert got[1][1] == [], got  # what was opened and refused is closed
    assert tree(shared) == before


# ------------------------------------------------------------------------------------------------ after flock
@ROOT_ONLY
@pytest.mark.parametrize("replacements,refused", [(1, None), (3, None), (10**6, "was replaced 20 times")])
def test_after_flock_the_name_must_still_name_the_locked_file(shared, monkeypatch, replacements, refused):
    """Another user unlinks the lock file and makes a new one between our open and our flock: the lock we got is on
    an orphan nobody else will open; it is taken again on what the name names now (or refused when it never
    settles). The note lands in the file the name names, and that file is really held."""
    d = make_dir(shared / "L", 0, 0o1777)
    monkeypatch.setenv(cpulock.ENV, str(d))
    real, count = cpulock.fcntl.flock, []

    def flock_after_a_swap(fd, op):
        if len(count) < replacements:
            count.append(1)
            os.unlink(d / "cpu-0.lock")
            (d / "cpu-0.lock").write_text("")
        return real(fd, op)

    monkeypatch.setattr(cpulock.fcntl, "flock", flock_after_a_swap)
    if refused:
        with pytest.raises(UserError, match=refused):
            with cpulock.hold([0], "victim-run"):
                pass
        return
    with cpulock.hold([0], "victim-run"):
        monkeypatch.setattr(cpulock.fcntl, "flock", real)
        assert json.loads((d / "cpu-0.lock").read_text())["run_id"] == "victim-run"
        assert as_uid(NOBODY, held([0]))[:2] == ["err", "UserError"]  # the file the name names is held


@ROOT_ONLY
def test_a_lock_file_its_maker_unlinks_while_root_holds_it_stays_held(shared, monkeypatch):
    """Issue 39 item 5: a user pre-creates cpu-2.lock, root's run holds it, the user unlinks it (theirs, so the sticky
    bit allowed it) and a second run took the same CPU. Root now owns what it holds: the unlink is refused, and a
    second run, root's or the user's, finds CPU 2 held."""
    d = make_dir(shared / "L", 0, 0o1777)
    monkeypatch.setenv(cpulock.ENV, str(d))
    assert as_uid(NOBODY, lambda: (d / "cpu-2.lock").write_text(""))[0] == "ok"
    with cpulock.hold([2], "root-run"):
        unlink = as_uid(NOBODY, lambda: os.unlink(d / "cpu-2.lock"))
        assert unlink[:2] == ["err", "PermissionError"], unlink
        for who in (NOBODY, 0):
            second = as_uid(who, held([2], "second-run"))
            assert second[:2] == ["err", "UserError"] and "CPUs 2 by run root-run" in second[2], (who, second)
    assert as_uid(NOBODY, held([2], "later-run")) == ["ok", "held"]  # released: still shareable


# ------------------------------------------------------------------------------------------------ descriptors
def _busy(d: Path):
    fd = os.open(d / "cpu-1.lock", os.O_RDWR | os.O_CREAT, 0o666)
    cpulock.fcntl.flock(fd, cpulock.fcntl.LOCK_EX)
    return fd


def _fifo_at_2(d: Path):
    os.mkfifo(d / "cpu-2.lock", 0o644)


@ROOT_ONLY
@pytest.mark.parametrize("what,setup,cpus,refused", [
    ("held and released", None, [0, 3], None),
    ("refused: a CPU in use", _busy, [0, 1, 3], "in use"),
    ("refused: a FIFO after a CPU was taken", _fifo_at_2, [0, 2], "is a FIFO"),
    ("refused: the dir itself", lambda d: d.chmod(0o755), [0], "not 1777"),
    ("no CPUs (a multi-host plan): the dir is not even opened", None, [], None),
])
def test_every_descriptor_is_closed_however_the_run_ends(shared, monkeypatch, what, setup, cpus, refused):
    d = make_dir(shared / "L", 0, 0o1777)
    before = sorted(os.listdir("/proc/self/fd"))
    blocker = setup(d) if setup else None
    if not cpus:  # a lock dir that would be refused: not looked at when no CPU is pinned
        d.chmod(0o755)
    monkeypatch.setenv(cpulock.ENV, str(d))
    try:
        if refused:
            with pytest.raises(UserError, match=refused):
                with cpulock.hold(cpus, "run-x"):
                    pass
        else:
            with cpulock.hold(cpus, "run-x"):
                assert len(os.listdir("/proc/self/fd")) >= len(before) + len(cpus) + (1 if cpus else 0)
    finally:
        if blocker is not None:
            os.close(blocker)
    assert sorted(os.listdir("/proc/self/fd")) == before


# ------------------------------------------------------------------------------------------------ the holder's note
NOTES = [
    # what another user's lock file says, what the refusal must show
    ("a forged line and ESC/OSC", json.dumps({"run_id": "x\x1b]0;pwn\x07\nxeontl: done: val accuracy 0.9999",
                                              "pid": "1\x1b[2J"}),
     "run x\\x1b]0;pwn\\x07\\nxeontl: done: val accuracy 0.9999 (pid 1\\x1b[2J)"),
    ("a bidi override", json.dumps({"run_id": "\u202eevil", "pid": 7}), "run \\u202eevil (pid 7)"),
    ("a run id too long to show", json.dumps({"run_id": "r" * 500, "pid": 7}), "run " + "r" * 77 + "... (pid 7)"),
    ("nested past Python's recursion limit", "[" * 4000, "by another run"),
    ("not JSON", "\x1b[31m", "by another run"),
    ("a list", "[1, 2]", "by another run"),
]


@ROOT_ONLY
@pytest.mark.parametrize("what,note,shown", NOTES, ids=[c[0] for c in NOTES])
def test_another_runs_note_is_shown_sanitized(shared, monkeypatch, capsys, what, note, shown):
    d = make_dir(shared / "L", 0, 0o1777)
    monkeypatch.setenv(cpulock.ENV, str(d))
    (d / "cpu-0.lock").write_text(note)
    (d / "cpu-0.lock").chmod(0o666)
    blocker = os.open(d / "cpu-0.lock", os.O_RDONLY)
    cpulock.fcntl.flock(blocker, cpulock.fcntl.LOCK_EX)
    try:
        with pytest.raises(UserError) as e:
            with cpulock.hold([0], "run-x"):
                pass
        assert shown in str(e.value) and not sanitize.has_unsafe(str(e.value)), str(e.value)
        monkeypatch.setattr(cpulock.time, "sleep", lambda s: os.close(blocker))  # the holder ends while we wait
        with cpulock.hold([0], "run-x", wait=True, poll_s=0):
            pass
    finally:
        with pytest.raises(OSError):
            os.close(blocker)  # closed by the wait above
    line = capsys.readouterr().out
    assert line.count("\n") == 1 and shown in line and not sanitize.has_unsafe(line.rstrip("\n")), line


# ------------------------------------------------------------------------------------------------ the race
RENAME_EXCHANGE = 2
ATTACKS = [
    # what the attacker (owner of the named lock dir and of its parent) flips, with what
    ("its own 1777 lock dir <-> root's private dir holding cpu-0.lock", "dir"),
    ("its own 1777 lock dir <-> a symlink to root's private dir", "link"),
    ("cpu-0.lock <-> a symlink to root's 0600 file", "entry-link"),
    ("cpu-0.lock <-> a FIFO 0644", "entry-fifo"),
]


@ROOT_ONLY
@pytest.mark.parametrize("what,decoy", ATTACKS, ids=[c[0] for c in ATTACKS])
def test_a_lock_dir_flipped_while_root_locks_never_gets_a_file_written_outside_it(shared, monkeypatch, what, decoy):
    """Issue 39 item 1, as two processes: an attacker exchanges the lock dir, or a lock file in it, with a decoy
    (renameat2 RENAME_EXCHANGE, atomically, in a loop) while root takes and releases 4 CPUs until 20 runs held.
    Every attempt holds its CPUs in the real lock dir or is refused in one line; root's private dir and its 0600 file
    never change and no file appears anywhere outside the lock dir."""
    libc = ctypes.CDLL(None, use_errno=True)
    if not hasattr(libc, "renameat2"):
        pytest.skip("no renameat2 in this libc")
    # the attacker's dir (it may rename what is in it) for a dir flip: every run is refused then (its parent is
    # another user's); root's dir for an entry flip (the lock dir, NOBODY's and named, is where the entries flip)
    flips_dir = not decoy.startswith("entry")
    parent = make_dir(shared / "attacker", NOBODY if flips_dir else 0, 0o755)
    locks = make_dir(parent / "locks", NOBODY, 0o1777)  # named by the admin: accepted though not root's
    private = make_dir(parent / "root-private", 0, 0o755)
    (private / "cpu-0.lock").write_text("root's data\n")
    (private / "cpu-0.lock").chmod(0o600)
    this, other = locks, private if decoy == "dir" else parent / "link"
    if decoy == "link":
        os.symlink(private, other)
    if decoy.startswith("entry"):
        this, other = locks / "cpu-0.lock", locks / "evil"

        def plant():
            this.write_text("")
            this.chmod(0o666)
            other.symlink_to(private / "cpu-0.lock") if decoy == "entry-link" else os.mkfifo(other, 0o644)
        assert as_uid(NOBODY, plant)[0] == "ok"
    monkeypatch.setenv(cpulock.ENV, str(locks))
    outside = {k: v for k, v in tree(shared).items() if not k.startswith("attacker/locks")}

    r, w = os.pipe()
    flipper = os.fork()
    if flipper == 0:
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            a, b = str(this).encode(), str(other).encode()
            flips = 0
            while True:
                if libc.renameat2(-100, a, -100, b, RENAME_EXCHANGE) == 0:
                    flips += 1
                    if flips == 1:
                        os.write(w, b"x")
                for _ in range(random.randrange(3000)):  # a while in each state: the victim meets both
                    pass
        finally:
            os._exit(1)
    os.close(w)
    held_n = refused_n = 0
    try:
        assert select.select([r], [], [], 20)[0], "the attacker could not flip the dir"
        for i in range(200 if flips_dir else 5000):  # until 20 runs held (the path walk favours one state: ~5 %)
            if held_n >= 20:
                break
            try:
                with cpulock.hold([0, 1, 2, 3], f"victim-{i}"):
                    held_n += 1
            except UserError as e:
                assert "\n" not in str(e) and "CPU lock" in str(e), str(e)
                refused_n += 1
    finally:
        os.kill(flipper, signal.SIGKILL)
        os.waitpid(flipper, 0)
        os.close(r)
    if this == locks and os.lstat(locks).st_uid != NOBODY:  # the attacker stopped mid-flip: put the dirs back
        libc.renameat2(-100, str(locks).encode(), -100, str(other).encode(), RENAME_EXCHANGE)
    now = tree(shared)
    assert {k: v for k, v in now.items() if not k.startswith("attacker/locks")} == outside
    assert (private / "cpu-0.lock").read_text() == "root's data\n"
    if flips_dir:  # a lock dir whose parent another user owns is refused, flipped or not
        assert (held_n, refused_n) == (0, 200), (held_n, refused_n)
        return
    assert held_n == 20 and refused_n > 0, (held_n, refused_n)  # the flips hit, and runs held all the same
    assert {k for k in now if k.startswith("attacker/locks/")} == {f"attacker/locks/{n}" for n in (
        "cpu-0.lock", "cpu-1.lock", "cpu-2.lock", "cpu-3.lock", *(("evil",) if this != locks else ()))}


# ------------------------------------------------------------------------------------------------ launch paths
BAD_PATHS = ["r\nx", "r\rx", "r\x1b[2Jx", "r\x00x", "r\x7fx", "r\tx", "r\x9bx", "r\u2028x", "r\u202ex"]
PATH_FLAGS = [("results_dir", "--results-dir"), ("resume", "--resume"), ("topology_file", "--topology")]


@pytest.mark.parametrize("field,flag", PATH_FLAGS)
@pytest.mark.parametrize("bad", BAD_PATHS, ids=[sanitize.text(b) for b in BAD_PATHS])
def test_a_launch_path_with_a_control_character_is_refused(field, flag, bad):
    """options.check, which every CLI (invoke's and python -m xeontl's) goes through: one line naming the flag."""
    opts = options.Options(**{field: Path(bad) if field != "topology_file" else bad})
    with pytest.raises(UserError, match=f"^{flag} .*must be a path without control characters") as e:
        options.check(opts)
    assert not sanitize.has_unsafe(str(e.value))
    options.check(options.Options(**{field: Path("r x") if field != "topology_file" else "r x"}))  # kept: a space


@pytest.mark.parametrize("field,flag", PATH_FLAGS)
def test_a_launch_path_with_a_control_character_is_one_line_from_the_cli(tmp_path, field, flag):
    r = run([sys.executable, "-m", "xeontl", "reproduce", flag, str(tmp_path / "r\x1b]0;t\x07\nx")],
        timeout=scaled(120),
            cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.count("\n") == 1, r.stderr
    assert r.stderr.startswith(f"xeontl: error: {flag} ") and "\x1b" not in r.stderr, r.stderr
    assert list(tmp_path.iterdir()) == []
