"""How a run ended, in one place: the status a run dir records from the exit its launch ended with (every engine
returns an `Ended`), the rank that failed and how (from the launcher's log), and the exit code `invoke reproduce`
returns for a status."""

from __future__ import annotations

import dataclasses
import os
import re
import stat
import sys
from pathlib import Path

from xeontl.common.errors import UserError
from xeontl.experiment import events
from xeontl.launch import rundir

STATUSES = ("success", "failed", "aborted")
ABORTED_EXIT = 130  # 128 + SIGINT: what a shell reports for Ctrl-C, and what `invoke reproduce` exits with
# Slurm's final job states: COMPLETED means the job script exited 0 (the trainer's own metrics then say how the run
# ended), CANCELLED is scancel or Ctrl-C on the launcher; every other final state (FAILED, NODE_FAIL, TIMEOUT,
# OUT_OF_MEMORY, ...) is a failed run.
SLURM_STATES = {"COMPLETED": None, "CANCELLED": "aborted"}
LAUNCHER_LOG = "logs-launcher.txt"


@dataclasses.dataclass(frozen=True)
class Ended:
    """What an engine's run returns: the launch's exit code, and the status when the engine knows it (Ctrl-C,
    the scheduler's verdict); None lets the trainer's own metrics decide."""

    rc: int
    status: str | None = None


def status(rc: int, trainer_status: str | None = None) -> str:
    """The run's status from its launch's exit code; when that is 0, the trainer's own word (none: it never wrote)."""
    if rc == 0:
        return trainer_status or "failed"
    return "aborted" if rc == ABORTED_EXIT else "failed"


def exit_code(status_: str) -> int:
    """What `invoke reproduce` exits with for a run's status."""
    return {"success": 0, "aborted": ABORTED_EXIT}.get(status_, 1)


def from_slurm(state: str) -> str | None:
    """A finished Slurm job's state as a status; None where the trainer's metrics decide (COMPLETED)."""
    return SLURM_STATES.get(state, "failed")


# A refusal the job's own check printed before any rank started (engines/slurm.py node_has, supply/needs.py
# lacks_line): the job's failure in its own words. Its srun step's "task N" is a node's, not a rank's.
NODE_REFUSAL = re.compile(r"^xeontl: error: .* a node of this job lacks .*$", re.M)


def failed_rank(log: str) -> dict:
    """The rank that died and how, as the launchers print it; a node the job's check refused, as it said it."""
    refused = NODE_REFUSAL.search(log)
    if refused:
        return {"error": refused[0]}
    # horovodrun / mpirun name the rank that died and how, e.g. "Process 1 exit with status code 137".
    m = re.search(r"[Pp]rocess (\d+) exit with status code (\d+)", log) or re.search(
        r"rank (\d+) .*?exited on signal (\d+)", log)
    # srun: "srun: error: n2: task 1: Killed" or "... task 1: Exited with exit code 17"
    s = re.search(r"srun: error: \S+: task (\d+): (Killed|Exited with exit code (\d+))", log)
    if m:
        code = int(m[2])
        return {"rank": int(m[1]), "exit_code": code,
                "signal": code - 128 if code > 128 else (code if "signal" in m[0] else None)}
    if s:
        return {"rank": int(s[1]), "exit_code": int(s[3]) if s[3] else None, "signal": 9 if s[2] == "Killed" else None}
    return {}


LOG_TAIL = 1 << 20  # the launchers name a dead rank in their last words


def log_tail(path: Path, size: int = LOG_TAIL) -> str:
    """The last SIZE bytes of the launcher's log as text: a regular file opened without following a link or waiting
    on a FIFO; "" when there is none such (what a run's container left is never trusted)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return ""
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            return ""
        os.lseek(fd, max(0, st.st_size - size), os.SEEK_SET)
        return os.read(fd, size).decode(errors="replace")
    except OSError:
        return ""
    finally:
        os.close(fd)


def settle(staging: Path, ended: Ended, explain=None, stopped: dict | None = None) -> tuple[str, dict | None, dict]:
    """The run's final status from the trainer's metrics and the launch's exit, written back so that metrics.json and
    the event log end with it even when a rank died before it could write. EXPLAIN(log) may add what an engine
    knows of a failure the launchers' own words do not name (the Kubernetes launcher: the lost node); STOPPED is what
    an engine that stopped the run itself found (its watchdog), and names the failure. Returns (status, failure,
    metrics)."""
    try:
        metrics = rundir.read_metrics(staging)
    except UserError as e:  # the trainer's record is not one its schema allows (cut short, a rank's bug): failed,
        # and said so in the run's own record; the run dir is still concluded and renamed whole
        metrics = {"status": "failed", "error": f"the trainer's metrics.json was unreadable: {e}"}
    final = ended.status or status(ended.rc, metrics.get("status"))
    failure = None
    if final != "success":
        log = log_tail(staging / LAUNCHER_LOG)
        failure = {"returncode": ended.rc, **failed_rank(log)}
        if stopped:  # the engine stopped the run itself (its watchdog): its finding, not the stopped ranks' words
            failure = {"returncode": ended.rc, **stopped}
        elif final == "failed" and "rank" not in failure and explain:
            failure.update(explain(log) or {})
    if not metrics or metrics.get("status") != final or (failure and metrics.get("failure") != failure):
        metrics = {**metrics, "status": final, "failure": failure}
        rundir.write_metrics(staging, metrics)
    if events.last_status(staging / events.FILE) != final:
        try:
            events.EventLog(staging / events.FILE).end(final, source="launcher", failure=failure)
        except UserError as e:  # not a file the log can be (what a rank left there): metrics.json still says it
            print(f"xeontl: warning: {e}", file=sys.stderr)
    return final, failure, metrics
