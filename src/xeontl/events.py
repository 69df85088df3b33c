"""The run's event log in MLPerf's logging format, so MLPerf's own tools (mlperf_logging) read it.

One line per event, appended and flushed as it happens (an interrupted run still leaves its history):

    :::MLLOG {"namespace": "", "time_ms": 1732550000000, "event_type": "POINT_IN_TIME", "key": "eval_accuracy",
              "value": 0.93, "metadata": {"file": "train.py", "lineno": 0, "epoch_num": 3}}

Keys are MLPerf's standard ones (init_start/stop, run_start/stop, epoch_start/stop, eval_accuracy, global_batch_size,
opt_base_learning_rate, ...); run_stop carries the status. Only rank 0 writes.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

FILE = "mllog.txt"
PREFIX = ":::MLLOG "
# MLPerf's interval keys: *_start opens, *_stop closes; everything else is a point in time.
INTERVALS = {"init", "run", "epoch", "block", "eval"}


def _event_type(key: str) -> str:
    stem, _, edge = key.rpartition("_")
    if stem in INTERVALS and edge in ("start", "stop"):
        return "INTERVAL_START" if edge == "start" else "INTERVAL_END"
    return "POINT_IN_TIME"


class EventLog:
    def __init__(self, path: Path | None, source: str = "train.py"):
        self.path, self.source = path, source  # path None: this rank does not write (only rank 0 writes results)

    def write(self, key: str, value=None, **metadata) -> None:
        if self.path is None:
            return
        event = {"namespace": "", "time_ms": int(time.time() * 1000), "event_type": _event_type(key), "key": key,
                 "value": value, "metadata": {"file": self.source, "lineno": 0, **metadata}}
        with open(self.path, "a") as f:
            f.write(PREFIX + json.dumps(event, default=str) + "\n")

    def end(self, status: str, **metadata) -> None:
        """run_stop with MLPerf's status vocabulary kept as ours: success | failed | aborted."""
        self.write("run_stop", None, status=status, **metadata)


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line[len(PREFIX):]) for line in path.read_text().splitlines() if line.startswith(PREFIX)]


def last_status(path: Path) -> str | None:
    ev = read(path)
    return ev[-1]["metadata"].get("status") if ev and ev[-1]["key"] == "run_stop" else None
