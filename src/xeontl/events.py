"""MLPerf-style event log: one JSON object a line ({"key", "value", "time_ms"}), appended and flushed as it happens,
so an interrupted run still leaves its history."""

from __future__ import annotations

import json
import time
from pathlib import Path


class EventLog:
    def __init__(self, path: Path | None):
        self.path = path  # None: this rank does not write (only rank 0 writes results)

    def write(self, key: str, **value) -> None:
        if self.path is None:
            return
        line = json.dumps({"key": key, "value": value, "time_ms": int(time.time() * 1000)}, default=str)
        with open(self.path, "a") as f:
            f.write(line + "\n")


def read(path: Path) -> list[dict]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
