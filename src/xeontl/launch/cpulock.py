"""One run per CPU: `invoke reproduce` holds an flock on every CPU its plan pins, for the whole run.

Two runs pinned to the same cores would each get half the cores and both report wrong speeds, so a second run that
needs a held CPU stops with a one-line message naming the holder, or queues behind it with `--wait`. The locks are
kernel flocks on files in $XEONTL_LOCK_DIR (default /tmp/xeontl-locks, shared by every user of the host): released by
the kernel when the launcher exits, however it exits, so a crash never leaves a stale lock.

The directory is shared with every other user, so nothing in it is trusted (a root run on CI or a cluster node is
the target: a planted link would have it clobber any file):
  - the directory must be a real directory (not a link), sticky and writable by all (1777, set explicitly: mkdir's
    mode is cut by the umask), so no user can remove or replace another's lock file;
  - a lock file is opened with O_NOFOLLOW (a planted symlink is refused, never followed), must be a regular file with
    one link (a planted hard link is refused), and is made shareable with fchmod on the open descriptor, only by its
    owner;
  - flock needs no write access: a lock file another user owns is locked read-only (its holder note is theirs).
What it does not protect against is in docs/reliability.md ("Security").
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import stat
import time
from pathlib import Path

from xeontl.common.errors import UserError
from xeontl.placement.topology import cpulist

DEFAULT = "/tmp/xeontl-locks"
SHARED = 0o1777  # sticky, rwx for all: every user can lock, none can delete another's file


def lock_dir() -> Path:
    """The lock directory, created shareable if missing, and checked (never followed) if present."""
    d = Path(os.environ.get("XEONTL_LOCK_DIR", DEFAULT))
    try:
        d.parent.mkdir(parents=True, exist_ok=True)
        os.mkdir(d, SHARED)
    except FileExistsError:
        pass
    except OSError as e:
        raise UserError(f"cannot create the CPU lock dir {d} ({e.strerror}): set XEONTL_LOCK_DIR to a dir you can "
                        f"write") from None
    try:
        fd = os.open(d, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError as e:
        why = "a symbolic link" if d.is_symlink() else ("not a directory" if e.errno == errno.ENOTDIR else
                                                         e.strerror)
        raise UserError(f"the CPU lock dir {d} is {why}: refused (someone else's link or file there could turn the "
                        f"lock against a file of yours); remove it, or set XEONTL_LOCK_DIR") from None
    try:
        st = os.fstat(fd)
        if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != SHARED:
            os.fchmod(fd, SHARED)  # ours: made shareable whatever the umask cut from mkdir's mode
        elif st.st_uid != os.getuid() and stat.S_IMODE(st.st_mode) & SHARED != SHARED:
            raise UserError(f"the CPU lock dir {d} belongs to uid {st.st_uid} with mode {stat.S_IMODE(st.st_mode):o}, "
                            f"not 1777: other users could replace its lock files; have its owner remove it (it is "
                            f"made again, shared), or set XEONTL_LOCK_DIR")
    finally:
        os.close(fd)
    return d


def _open(path: Path) -> int:
    """The lock file, opened without following a link, checked to be a plain one-link file."""
    flags = os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC
    try:
        try:
            fd = os.open(path, os.O_RDWR | flags, 0o666)
        except PermissionError:  # another user's lock file: flock needs no write access
            fd = os.open(path, os.O_RDONLY | flags)
    except OSError as e:
        why = "a symbolic link" if e.errno == errno.ELOOP else e.strerror
        raise UserError(f"the CPU lock {path} is {why}: refused, nothing was written (someone planted it?); remove "
                        f"it, or set XEONTL_LOCK_DIR") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise UserError(f"the CPU lock {path} is not a plain file of its own (type {stat.filemode(st.st_mode)}, "
                        f"{st.st_nlink} links): refused, nothing was written; remove it, or set XEONTL_LOCK_DIR")
    if st.st_uid == os.getuid() and stat.S_IMODE(st.st_mode) != 0o666:
        os.fchmod(fd, 0o666)  # other users' runs must be able to take the lock too
    return fd


def _holder(fd: int) -> str:
    try:
        h = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError):
        return "another run"
    return f"run {h.get('run_id', '?')} (pid {h.get('pid', '?')})" if isinstance(h, dict) else "another run"


@contextlib.contextmanager
def hold(cpus: list[int], run_id: str, wait: bool = False, poll_s: float = 2.0):
    """Lock every CPU (in ascending order, so two waiters never deadlock) or raise UserError naming the holder."""
    fds, busy = [], {}
    try:
        for cpu in sorted(set(cpus)):
            fd = _open(lock_dir() / f"cpu-{cpu}.lock")
            fds.append(fd)
            announced = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        busy.setdefault(_holder(fd), []).append(cpu)
                        break
                    if not announced:
                        print(f"xeontl: CPU {cpu} is in use by {_holder(fd)}: waiting (--wait)", flush=True)
                        announced = True
                    time.sleep(poll_s)
        if busy:
            who = "; ".join(f"CPUs {cpulist(c)} by {h}" for h, c in busy.items())
            raise UserError(f"the cores this plan pins are in use ({who}): wait for that run to finish, "
                            f"or add --wait to queue behind it")
        note = json.dumps({"run_id": run_id, "pid": os.getpid(), "uid": os.getuid(), "since": time.time()}).encode()
        for fd in fds:
            with contextlib.suppress(OSError):  # a read-only lock (another user's file) keeps its old note
                os.ftruncate(fd, 0)
                os.pwrite(fd, note, 0)
        yield
    finally:
        for fd in fds:
            os.close(fd)  # closing the descriptor releases its flock
