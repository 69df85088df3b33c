"""The ranks' progress as a launcher sees it: heartbeat/rank-N in the run dir, touched by each rank as its batches
complete (experiment.callbacks.Heartbeat, on when XEONTL_HEARTBEAT is set). A launcher that waits on something that
never closes a connection (mpirun over ssh, a Slurm job) asks `Beats.stalled()` and ends the run instead of hanging."""

from __future__ import annotations

import math
import os
import time
from pathlib import Path

from xeontl.common.errors import UserError

STALL_ENV, FIRST_BEAT_ENV = "XEONTL_STALL_SECONDS", "XEONTL_FIRST_BEAT_SECONDS"
# a run no rank progresses in; the wait for a first beat (hvd.init, the model build, the data's first load)
STALL_SECONDS, FIRST_BEAT_SECONDS = 600, 1200


def bounds(env=None) -> tuple[float, float]:
    """(stall, first) from the environment (XEONTL_STALL_SECONDS, XEONTL_FIRST_BEAT_SECONDS) or the defaults: each a
    finite number of seconds > 0, else one line (nan or inf would never fire, 0 or less at once)."""
    env = os.environ if env is None else env
    out = []
    for name, default in ((STALL_ENV, STALL_SECONDS), (FIRST_BEAT_ENV, FIRST_BEAT_SECONDS)):
        raw = env.get(name)
        try:
            value = float(default if raw is None else raw)
        except ValueError:
            value = math.nan
        if not (math.isfinite(value) and value > 0):
            raise UserError(f"{name}={raw!r}: must be a number of seconds > 0 (default {default})")
        out.append(value)
    return out[0], out[1]


class Beats:
    """Whether the run still moves: a rank's beat newer than the one first seen, within STALL seconds; before any
    rank's first progress, FIRST seconds from this object's start (hvd.init, the model build's allgather and the first
    step's graph come before it, and a rank stuck there must end the run too). Beats older than the start (a retried
    launcher continuing an old staging dir) are not this attempt's: ignored."""

    def __init__(self, staging: Path, stall: float, first: float | None = None, clock=None):
        self.staging, self.stall = Path(staging), stall
        self.first = stall if first is None else first
        self.clock = clock or time.time
        self.started = self.clock()
        self.seen: dict[str, float] = {}  # each rank's beat as first seen
        self.progressed = False

    def last_beat(self) -> float | None:
        """The newest of this attempt's beats once a rank has progressed (a beat file's mtime moved on from the one
        first seen: Heartbeat touches its file when made, before the first batch's graph is even built), else None."""
        beats = {}
        for p in (self.staging / "heartbeat").glob("rank-*"):
            try:
                b = p.stat(follow_symlinks=False).st_mtime
            except OSError:  # gone between the listing and the stat
                continue
            if b >= self.started:
                beats[p.name] = b
        for name, b in beats.items():
            if b > self.seen.setdefault(name, b):
                self.progressed = True
        return max(beats.values()) if beats and self.progressed else None

    def stalled(self) -> bool:
        beat = self.last_beat()
        if beat is None:
            return self.clock() - self.started >= self.first
        return self.clock() - beat >= self.stall

    def why(self) -> str:
        return (f"no rank progressed for {self.stall:.0f} s" if self.progressed else
                f"no rank made its first step in {self.first:.0f} s")
