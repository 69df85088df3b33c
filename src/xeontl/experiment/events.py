"""The run's event log in MLPerf's logging format, written by MLPerf's own writer (`mlperf_logging.mllog`), so
MLPerf's tools read it and its compliance checker checks it (with the bundle's rules: mllog_rules.yaml).

One line per event, appended and flushed as it happens (an interrupted run still leaves its history):

    :::MLLOG {"namespace": "", "time_ms": 1732550000000, "event_type": "POINT_IN_TIME", "key": "eval_accuracy",
              "value": 0.93, "metadata": {"file": "xeontl/experiment/train.py", "lineno": 126, "epoch_num": 3}}

Keys are MLPerf's standard ones (init_start/stop, run_start/stop, epoch_start/stop, eval_accuracy, global_batch_size,
opt_base_learning_rate, ...); run_stop carries the status. Only rank 0 writes (and the launcher, when it settles a
run whose ranks died before they could).
"""

from __future__ import annotations

import logging
import os
from importlib import resources
from pathlib import Path

FILE = "mllog.txt"
PREFIX = ":::MLLOG "
# MLPerf's interval keys: *_start opens, *_stop closes; everything else is a point in time.
INTERVALS = {"init", "run", "epoch", "block", "eval"}
SRC = str(Path(__file__).resolve().parents[2])  # call sites are named relative to it: xeontl/experiment/train.py
RULES = "mllog_rules.yaml"  # the bundle's compliance rules for the checker (tests run it on every run they make)


def rules_file() -> Path:
    return Path(str(resources.files("xeontl").joinpath(RULES)))


class EventLog:
    def __init__(self, path: Path | None, source: str | None = None):
        # path None: this rank does not write (only rank 0 writes results)
        self.path, self.source = path, source

    def write(self, key: str, value=None, _frames: int = 0, **metadata) -> None:
        if self.path is None:
            return
        from mlperf_logging.mllog import mllog

        logger = logging.getLogger(f"xeontl.mllog.{self.path}")
        logger.propagate, logger.level = False, logging.INFO
        handler = logging.StreamHandler(_append(self.path))  # opened per event: flushed and closed as it happens
        logger.handlers = [handler]
        try:
            # stack offset 2: the call site named in the event is our caller's (train.py), not this method
            writer = mllog.MLLogger(logger=logger, default_stack_offset=2 + _frames, root_dir=SRC)
            meta = {**({"source": self.source} if self.source else {}), **metadata}
            stem, _, edge = key.rpartition("_")
            log = (writer.start if edge == "start" else writer.end) if stem in INTERVALS and edge in (
                "start", "stop") else writer.event
            log(key=key, value=value, metadata=meta)
        finally:
            logger.handlers = []
            handler.stream.close()

    def end(self, status: str, **metadata) -> None:
        """run_stop with MLPerf's status vocabulary kept as ours: success | failed | aborted."""
        self.write("run_stop", None, _frames=1, status=status, **metadata)


def _append(path: Path):
    """PATH opened for appending, never through a link nor waiting on a FIFO: a regular file, or one UserError line."""
    import stat

    from xeontl.common.errors import UserError

    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        raise UserError(f"cannot append to the event log {path} ({e.strerror})") from None
    if not stat.S_ISREG(os.fstat(fd).st_mode):
        os.close(fd)
        raise UserError(f"cannot append to the event log {path}: not a regular file")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "a", encoding="utf-8")


MAX_BYTES = 64 << 20  # far above any run's log (a line per event: a few KiB an epoch)


def read(path: Path) -> list[dict]:
    """The log's events: read as a run's container left it (a regular file, no link, at most MAX_BYTES, else a
    UserError line); a line that is not an event (not JSON, not an object with a key and metadata) is skipped."""
    from xeontl.common import records

    if not os.path.lexists(path):
        return []
    events = []
    for line in records.read_bytes(path, "the event log", MAX_BYTES, follow=False).decode(errors="replace") \
            .splitlines():
        if not line.startswith(PREFIX):
            continue
        try:
            event = records.loads(line[len(PREFIX):])
        except (ValueError, RecursionError):
            continue
        if isinstance(event, dict) and isinstance(event.get("key"), str) and isinstance(event.get("metadata"), dict):
            events.append(event)
    return events


def last_status(path: Path) -> str | None:
    """run_stop's status when the log ends with one; None otherwise (an unreadable log too: settle then ends it)."""
    from xeontl.common.errors import UserError

    try:
        ev = read(path)
    except UserError:
        return None
    status = ev[-1]["metadata"].get("status") if ev and ev[-1]["key"] == "run_stop" else None
    return status if isinstance(status, str) else None


def check(path: Path) -> list[str]:
    """MLPerf's compliance checker on a run's log with the bundle's rules, read by the newest log parser the installed
    package has: [] when it complies, else its messages. (The checker and its parser come with mlperf-logging's full
    install: the host's test tools.)"""
    import pkgutil

    from mlperf_logging.compliance_checker import mlp_compliance, mlp_parser

    newest = max((m.name for m in pkgutil.iter_modules(mlp_parser.__path__) if m.name.startswith("ruleset_")),
                 key=lambda n: tuple(int(c) for c in n.removeprefix("ruleset_")))
    # werror: the checker only warns when a key meant to occur once repeats with the same value (a second run_stop)
    checker = mlp_compliance.make_checker("training", ".".join(newest.removeprefix("ruleset_")), quiet=True,
                                          werror=True)
    ok = checker.check_file(str(path), str(rules_file()))
    return [] if ok else [*checker.overwritable.values(), *checker.not_overwritable]
