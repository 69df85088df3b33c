"""The files of a run dir that more than one party writes, read and written here only: metrics.json (the trainer
writes it, the launcher settles its status when a rank died first, the report adds the reference verdict)."""

from __future__ import annotations

import json
import os
import secrets
import stat
import sys
from pathlib import Path

from xeontl.common import records

METRICS = "metrics.json"


# What a staged run dir's metrics.json says until the trainer writes its own: a run whose disk fills, or whose ranks
# never start, is still marked failed (the trainer and the launcher's settle replace it).
PLACEHOLDER = {"status": "failed", "error": "the run has not finished: the launcher's record until the trainer's own"}


def validate_metrics(metrics: dict) -> None:
    """metrics.json against what the code can write (schemas/metrics.schema.json); raises jsonschema's
    ValidationError naming the field."""
    records.validate(json.loads(json.dumps(metrics, default=str)), "metrics")


def read_metrics(run: Path) -> dict:
    """The run's metrics.json as its schema allows it ({} before anything wrote one), or one line naming the field."""
    return records.read_record(Path(run) / METRICS, "metrics", missing={})


def write_metrics(run: Path, metrics: dict) -> None:
    """metrics.json, whole or not at all (written beside, then renamed: a reader never sees half a file)."""
    try:
        validate_metrics(metrics)
    except Exception as e:  # a bug of the writer, not the user's: the run's record is still kept whole
        print(f"xeontl: warning: metrics.json departs from its schema ({type(e).__name__}: "
              f"{str(e).splitlines()[0]})", file=sys.stderr)
    write_new(Path(run) / METRICS, json.dumps(metrics, indent=1, default=str).encode())


def write_new(path: Path, data: bytes) -> None:
    """DATA as PATH, whole or not at all: written to a new file of a random name beside it (O_EXCL|O_NOFOLLOW: never
    through a link or into a file someone else made), then renamed over PATH (a rename replaces a link, never follows
    it)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(8)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0), 0o644)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def update_metrics(run: Path, **fields) -> dict:
    metrics = {**read_metrics(run), **fields}
    write_metrics(run, metrics)
    return metrics


# What take_back removes: anything in a run dir that is not a plain directory or a regular file with one link. A
# symlink, a hard link to a file elsewhere, a FIFO, a device or a socket is what the container's user (a real host user
# when the image's uid is one) plants so that the launcher, writing metrics.json or report.md by path as root, writes
# through it.
_KEEP = (stat.S_ISDIR, stat.S_ISREG)


def take_back(run: Path, uid: int, gid: int) -> list[str]:
    """Take RUN back from whoever wrote it (the container's user) before the launcher reads or writes anything there:
    every directory and file chowned to UID:GID and made unwritable by group and others, each directory before its
    entries are listed (so its former owner can no longer add one), walked by descriptor without following a link;
    every entry that is not a directory or a regular file with one link removed. Returns what was removed (relative
    paths), for the caller to say."""
    removed: list[str] = []
    flags = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    top = os.open(run, flags)
    try:
        _take_dir(top, "", uid, gid, removed)
    finally:
        os.close(top)
    return removed


def _take_dir(fd: int, rel: str, uid: int, gid: int, removed: list[str]) -> None:
    os.fchown(fd, uid, gid)
    os.fchmod(fd, stat.S_IMODE(os.fstat(fd).st_mode) & 0o755 | 0o700)
    for name in os.listdir(fd):
        path = f"{rel}{name}"
        st = os.stat(name, dir_fd=fd, follow_symlinks=False)
        if stat.S_ISDIR(st.st_mode):
            try:
                sub = os.open(name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0),
                              dir_fd=fd)
            except OSError:  # swapped for a link since the stat: removed below as one
                st = os.stat(name, dir_fd=fd, follow_symlinks=False)
            else:
                try:
                    _take_dir(sub, path + "/", uid, gid, removed)
                finally:
                    os.close(sub)
                continue
        if stat.S_ISREG(st.st_mode):
            try:  # O_NONBLOCK: a FIFO swapped in since the stat is not waited on; checked again on the descriptor
                f = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0),
                            dir_fd=fd)
            except OSError:
                f = None
            if f is not None:
                try:
                    fst = os.fstat(f)
                    if stat.S_ISREG(fst.st_mode) and fst.st_nlink == 1:
                        os.fchown(f, uid, gid)
                        os.fchmod(f, stat.S_IMODE(fst.st_mode) & 0o755)  # no setuid, no group/other write
                        continue
                finally:
                    os.close(f)
        _remove(fd, name)
        removed.append(path)


def _remove(fd: int, name: str) -> None:
    st = os.stat(name, dir_fd=fd, follow_symlinks=False)
    if stat.S_ISDIR(st.st_mode):
        import shutil

        shutil.rmtree(name, dir_fd=fd)  # rmtree with dir_fd never follows a link
    else:
        os.unlink(name, dir_fd=fd)
