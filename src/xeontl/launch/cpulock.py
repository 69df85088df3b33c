"""One run per CPU: `invoke reproduce` holds an flock on every CPU its plan pins, for the whole run.

Two runs pinned to the same cores would each get half the cores and both report wrong speeds, so a second run that
needs a held CPU stops with a one-line message naming the holder, or queues behind it with `--wait`. The locks are
kernel flocks on files in $XEONTL_LOCK_DIR (default /tmp/xeontl-locks, shared by every user of the host): released by
the kernel when the launcher exits, however it exits, so a crash never leaves a stale lock.

The directory is shared with every other user, so nothing in it is trusted (a root run on CI or a cluster node is
the target: a planted link, or the directory swapped for another, would have it clobber or chmod any file). Every use
of it goes through one descriptor, checked once and kept:
  - the directory is reached from / one name at a time, each opened O_NOFOLLOW|O_DIRECTORY relative to the last
    (a link anywhere in the name is refused; a missing dir is made there, by mkdir(dir_fd=)), every dir on the way
    owned by root or the user and sticky if others can write it; the lock dir is checked on its descriptor (fstat):
    owned by the user or by root, or by anyone when the admin named it in $XEONTL_LOCK_DIR; mode 1777, sticky and
    writable by all (made so by mkdir under a zero umask, never by a chmod of a path), so no user can remove or
    replace another's lock file, and a private directory swapped in for it is refused;
  - every lock file is looked at, opened and created relative to that descriptor (`dir_fd=`), never by path, with
    O_NOFOLLOW|O_NONBLOCK|O_NOCTTY|O_CLOEXEC: a symlink, FIFO, device, socket or directory is refused in one line
    before it is opened (and again by fstat after, if swapped in between): nothing blocks, nothing is followed;
  - an existing file is opened without O_CREAT (as fs.protected_regular wants), a missing one created with O_EXCL;
    it must be a regular file with one link (a planted hard link is refused); only a file this call made is
    fchmodded 0666, and only an empty file or a holder note is written over (root's own file renamed in keeps both);
  - flock needs no write access: a lock file another user owns is locked read-only (its holder note is theirs);
  - after flock, the name must still name the locked inode (stat by dir_fd == fstat of the lock), else the lock is
    taken again on what the name names now: a lock file unlinked before it was locked locks nothing;
  - root takes over (fchown, POSIX ACL removed, 0666) a lock file it locked BEFORE it re-checks the name, so the
    user who made it cannot unlink it during the run (the sticky bit) and let a second run hold the same CPU.
Another run's holder note is foreign text: shown only through common/sanitize.py. What this does not protect against
is in docs/reliability.md ("Security").
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

from xeontl.common import sanitize
from xeontl.common.errors import UserError
from xeontl.placement.topology import cpulist

DEFAULT = "/tmp/xeontl-locks"
ENV = "XEONTL_LOCK_DIR"  # the admin's name for the lock dir: its owner is then trusted, whoever it is
SHARED = 0o1777  # sticky, rwx for all: every user can lock, none can delete another's file
OPEN = os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC
RETRIES = 20  # a lock file replaced this many times while being taken: someone is swapping it, refused
KINDS = ((stat.S_ISLNK, "a symbolic link"), (stat.S_ISFIFO, "a FIFO"), (stat.S_ISDIR, "a directory"),
         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"), (stat.S_ISSOCK, "a socket"))


def _kind(mode: int) -> str:
    return next((what for test, what in KINDS if test(mode)), f"not a regular file ({stat.filemode(mode)})")


def _safe_parent(fd: int, shown: str) -> None:
    """Refuse a directory on the way to the lock dir that another user could swap an entry of: one owned by neither
    the user nor root, or writable by others without the sticky bit."""
    st = os.fstat(fd)
    if st.st_uid not in (os.getuid(), 0):
        raise UserError(f"the CPU lock dir's parent {shown} belongs to uid {st.st_uid}, neither you nor root: refused "
                        f"(its owner could swap the lock dir for another); set {ENV} to a dir under root's or yours")
    if st.st_mode & 0o022 and not st.st_mode & stat.S_ISVTX:
        raise UserError(f"the CPU lock dir's parent {shown} has mode {stat.S_IMODE(st.st_mode):o}, writable by others "
                        f"without the sticky bit: refused (anyone could swap the lock dir); set {ENV} elsewhere")


def _walk(d: Path) -> int:
    """The lock dir D opened by walking from / one name at a time, each relative to the last one's descriptor with
    O_NOFOLLOW (a symbolic link anywhere on the way is refused, never followed), every dir on the way checked by
    _safe_parent, the missing ones made there (`mkdir(dir_fd=)`, the lock dir itself 1777 under a zero umask)."""
    parts = d.parts[1:]
    fd = os.open("/", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for i, part in enumerate(parts):
            here = Path("/", *parts[:i])
            _safe_parent(fd, str(here))
            last = i == len(parts) - 1
            try:
                old = os.umask(0) if last else None  # mkdir's own mode is 1777 then: never a chmod by path
                try:
                    os.mkdir(part, SHARED if last else 0o755, dir_fd=fd)
                finally:
                    if old is not None:
                        os.umask(old)
            except FileExistsError:
                pass
            except OSError as e:
                raise UserError(f"cannot create the CPU lock dir {d} ({e.strerror} at {here / part}): set {ENV} to "
                                f"a dir you can write") from None
            try:
                nfd = os.open(part, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=fd)
            except OSError as e:
                try:
                    link = stat.S_ISLNK(os.stat(part, dir_fd=fd, follow_symlinks=False).st_mode)
                except OSError:
                    link = False
                why = ("a symbolic link" if link else "not a directory" if e.errno == errno.ENOTDIR else
                       f"not to be opened ({e.strerror})")
                at = "" if last else f" (at {here / part})"
                raise UserError(f"the CPU lock dir {d} is {why}{at}: refused (someone else's link or file there "
                                f"could turn the lock against a file of yours); remove it, name the real path, or "
                                f"set {ENV}") from None
            os.close(fd)
            fd = nfd
    except BaseException:
        os.close(fd)
        raise
    return fd


def lock_dir() -> tuple[int, Path]:
    """The lock directory's descriptor (the caller closes it) and its name (for messages only): created shareable if
    missing, reached without following a link through dirs only root or the user can change, checked on the
    descriptor."""
    named = os.environ.get(ENV)
    d = Path(os.path.abspath(named or DEFAULT))
    fd = _walk(d)
    try:
        st = os.fstat(fd)
        mode = stat.S_IMODE(st.st_mode)
        if st.st_uid not in (os.getuid(), 0) and not named:
            raise UserError(f"the CPU lock dir {d} belongs to uid {st.st_uid}, neither you nor root: refused (its "
                            f"owner can swap any lock file in it; any user can make it first: a denial, never a "
                            f"write); have its owner remove it (it is made again), or have root make it (mkdir -m "
                            f"1777 {d}) or set {ENV} to a root-owned 1777 dir")
        if mode != SHARED:
            raise UserError(f"the CPU lock dir {d} has mode {mode:o}, not 1777 (sticky, writable by all): refused "
                            f"(writable by others without the sticky bit, anyone could replace its lock files; not "
                            f"writable by all, it is not a shared lock dir); have its owner chmod 1777 it, or set "
                            f"{ENV}")
    except BaseException:
        os.close(fd)
        raise
    return fd, d


def _refuse(where: str, what: str) -> UserError:
    return UserError(f"the CPU lock {where} {what}: refused, it was not written to (someone planted it?); remove it, "
                     f"or set {ENV}")


def _plain(st: os.stat_result, where: str) -> None:
    """Refuse anything but a regular file with one link (a planted hard link has two)."""
    if not stat.S_ISREG(st.st_mode):
        raise _refuse(where, f"is {_kind(st.st_mode)}")
    if st.st_nlink != 1:
        raise _refuse(where, f"is not a plain file of its own (type {stat.filemode(st.st_mode)}, {st.st_nlink} "
                             f"links)")


def _look(dfd: int, name: str) -> os.stat_result | None:
    """What NAME in the lock dir is now, without following a link; None when missing."""
    try:
        return os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return None


def _open(dfd: int, name: str, where: str) -> int:
    """The lock file NAME in the lock dir DFD: looked at and opened relative to DFD without following a link or
    blocking, an existing one without O_CREAT, a missing one created with O_EXCL; checked to be a one-link regular
    file on its own descriptor. Only a file this call created is chmodded (0666, for other users' runs): an existing
    one is never chmodded, whoever owns it (root's own file planted here keeps its mode)."""
    for _ in range(RETRIES):
        seen = _look(dfd, name)
        if seen is not None:
            _plain(seen, where)  # a FIFO or a device is never even opened
        try:
            if seen is None:
                fd = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL | OPEN, 0o666, dir_fd=dfd)
            else:
                try:
                    fd = os.open(name, os.O_RDWR | OPEN, dir_fd=dfd)
                except PermissionError:  # another user's lock file: flock needs no write access
                    fd = os.open(name, os.O_RDONLY | OPEN, dir_fd=dfd)
        except (FileExistsError, FileNotFoundError):
            continue  # made or removed between the look and the open: look again
        except OSError as e:
            what = {errno.ELOOP: "is a symbolic link", errno.EISDIR: "is a directory"}.get(
                e.errno, f"cannot be opened ({e.strerror})")
            raise _refuse(where, what) from None
        st = os.fstat(fd)
        if st.st_nlink == 0:  # unlinked between the open and now: it locks nothing, look again
            os.close(fd)
            continue
        try:
            _plain(st, where)  # again on what was opened: something may have been swapped in since the look
        except UserError:
            os.close(fd)
            raise
        if seen is None and stat.S_IMODE(st.st_mode) != 0o666:
            os.fchmod(fd, 0o666)  # made by this call (O_EXCL): other users' runs must be able to take the lock too
        return fd
    raise UserError(f"the CPU lock {where} kept appearing and vanishing while it was opened: refused (someone is "
                    f"swapping it); set {ENV} to a dir only trusted users write")


def _take_over(fd: int) -> None:
    """Root makes another user's lock file its own: fchown (its maker can no longer unlink it, the dir is sticky), its
    POSIX ACL removed (an ACL would keep granting or denying what its maker chose), mode 0666 (shareable again)."""
    os.fchown(fd, 0, 0)
    try:
        os.removexattr(fd, "system.posix_acl_access")
    except OSError as e:
        if e.errno not in (errno.ENODATA, errno.ENOTSUP, errno.EOPNOTSUPP):
            raise
    os.fchmod(fd, 0o666)


def _names(dfd: int, name: str, fd: int) -> bool:
    """Whether NAME in the lock dir still names the file FD is open on (not unlinked, not replaced)."""
    try:
        now = os.stat(name, dir_fd=dfd, follow_symlinks=False)
    except FileNotFoundError:
        return False
    held = os.fstat(fd)
    return (now.st_dev, now.st_ino) == (held.st_dev, held.st_ino)


NOTE_KEYS = frozenset({"run_id", "pid", "uid", "since"})


def _a_note(fd: int) -> bool:
    """Whether the lock file FD is empty or holds a holder note (the only content a lock file is rewritten over)."""
    try:
        if os.fstat(fd).st_size > 4096:
            return False
        raw = os.pread(fd, 4097, 0)
        return not raw or (isinstance(h := json.loads(raw), dict) and set(h) <= NOTE_KEYS)
    except (OSError, ValueError, RecursionError):
        return False


def _holder(fd: int) -> str:
    """Who holds the lock FD, from its note: another user's text, so sanitized and cut short."""
    try:
        h = json.loads(os.pread(fd, 4096, 0) or b"{}")
    except (OSError, ValueError, RecursionError):
        return "another run"
    if not isinstance(h, dict):
        return "another run"
    return f"run {sanitize.text(h.get('run_id', '?'), 80)} (pid {sanitize.text(h.get('pid', '?'), 20)})"


def _take(dfd: int, name: str, where: str, cpu: int, wait: bool, poll_s: float) -> tuple[int, str | None]:
    """The lock file NAME, opened and flocked: (fd, None) when held, (fd, holder) when another run holds it."""
    announced = False
    for _ in range(RETRIES):
        fd = _open(dfd, name, where)
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not wait:
                    return fd, _holder(fd)
                if not announced:
                    print(f"xeontl: CPU {cpu} is in use by {_holder(fd)}: waiting (--wait)", flush=True)
                    announced = True
                time.sleep(poll_s)
        if os.getuid() == 0 and os.fstat(fd).st_uid != 0:
            _take_over(fd)  # BEFORE the name check: once root owns it, its maker can no longer unlink it under us
        if _names(dfd, name, fd):
            return fd, None
        os.close(fd)  # unlinked or replaced while we locked it: it locks nothing; take what the name names now
    raise UserError(f"the CPU lock {where} was replaced {RETRIES} times while it was taken: refused (someone is "
                    f"swapping it); set {ENV} to a dir only trusted users write")


@contextlib.contextmanager
def hold(cpus: list[int], run_id: str, wait: bool = False, poll_s: float = 2.0):
    """Lock every CPU (in ascending order, so two waiters never deadlock) or raise UserError naming the holder."""
    fds, busy, dfd = [], {}, None
    try:
        if cpus:
            dfd, d = lock_dir()
        for cpu in sorted(set(cpus)):
            name = f"cpu-{cpu}.lock"
            fd, holder = _take(dfd, name, f"{d}/{name}", cpu, wait, poll_s)
            fds.append(fd)
            if holder is not None:
                busy.setdefault(holder, []).append(cpu)
        if busy:
            who = "; ".join(f"CPUs {cpulist(c)} by {h}" for h, c in busy.items())
            raise UserError(f"the cores this plan pins are in use ({who}): wait for that run to finish, "
                            f"or add --wait to queue behind it")
        note = json.dumps({"run_id": run_id, "pid": os.getpid(), "uid": os.getuid(), "since": time.time()}).encode()
        for fd in fds:
            if _a_note(fd):  # only a note is overwritten: a file that holds anything else keeps it
                with contextlib.suppress(OSError):  # a read-only lock (another user's file) keeps its old note
                    os.ftruncate(fd, 0)
                    os.pwrite(fd, note, 0)
        yield
    finally:
        for fd in fds:
            os.close(fd)  # closing the descriptor releases its flock
        if dfd is not None:
            os.close(dfd)
