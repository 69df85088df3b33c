"""How a run ended, in one place: the status a run dir records from the exit its launch ended with, and the exit code
`invoke reproduce` returns for a status. The local launcher, the Slurm engine and the settling of a run speak it."""

from __future__ import annotations

STATUSES = ("success", "failed", "aborted")
ABORTED_EXIT = 130  # 128 + SIGINT: what a shell reports for Ctrl-C, and what `invoke reproduce` exits with
# Slurm's final job states: COMPLETED means the job script exited 0 (the trainer's own metrics then say how the run
# ended), CANCELLED is scancel or Ctrl-C on the launcher; every other final state (FAILED, NODE_FAIL, TIMEOUT,
# OUT_OF_MEMORY, ...) is a failed run.
SLURM_STATES = {"COMPLETED": None, "CANCELLED": "aborted"}


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
