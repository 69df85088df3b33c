"""What every engine shares: the Job a launch is decided into, the Engine interface, and the launch record of an
engine that runs its launch line itself. The engines (docker, native, slurm, kubernetes) build on this module;
xeontl.engines chooses among them."""

from __future__ import annotations

import contextlib
import dataclasses
import shlex
from pathlib import Path

from xeontl.launch import outcome
from xeontl.launch.options import Options
from xeontl.placement import plan as planlib
from xeontl.placement import topology


@dataclasses.dataclass
class Job:
    """One launch, decided: the resolved config, the plan, and the engine's rendered commands."""

    opts: Options
    cfg: dict
    topo: topology.Topology
    plan: planlib.Plan
    run_id: str
    staging: Path  # where the run dir is made; renamed to results/<run-id> whole when the run has ended
    command: list[str] = dataclasses.field(default_factory=list)  # what runs on this host
    inner: list[str] = dataclasses.field(default_factory=list)  # the launch line itself (in the image when one is)
    ranks: list[list[str]] = dataclasses.field(default_factory=list)  # each local rank's own command
    files: dict[str, str] = dataclasses.field(default_factory=dict)  # files the engine adds to the run dir
    read_only: tuple[str, ...] = ()  # host paths the config reads (weights, data): mounted read-only, same path
    engine: Engine | None = None  # what runs it (engines.choose, once)

    @property
    def final(self) -> Path:
        return self.staging.with_name(self.run_id)


class Engine:
    """The interface; every engine implements it whole (the defaults are those of an engine on this host)."""

    mode: str  # what provenance.json's execution.mode says
    in_image = True  # the ranks see the run dir at plan.CONTAINER_RESULTS (else at its host path)
    # The ranks see this host's cache (~/.cache/xeontl): the synthetic set is made once here and read by every run.
    # Not so for Slurm's nodes (nor can Charliecloud bind a path the image lacks): there the ranks make it themselves.
    sees_host_cache = True

    def __init__(self, opts: Options):
        self.opts = opts

    def check(self) -> None:
        """Refuse, in one line, the options this engine cannot honour."""

    def topology(self) -> topology.Topology:
        return topology.load_file(self.opts.topology_file) if self.opts.topology_file else topology.live()

    def layout(self) -> dict:
        """make_plan's node keywords: how many nodes, and whether CPUs are positions in each node's cpuset."""
        return {"node_count": 1, "relative": False}

    def fits(self, plan: planlib.Plan) -> None:
        """Refuse a plan this engine's machines cannot run (a recorded topology may be printed, not run)."""

    def rank_paths(self, job: Job) -> tuple[str, str | None]:
        """(the run dir, the interrupted run) as the ranks see them."""
        resume = self.opts.resume and (planlib.CONTAINER_RESUME if self.in_image else str(self.opts.resume))
        return (planlib.CONTAINER_RESULTS if self.in_image else str(job.staging)), resume or None

    def rank_args(self, job: Job):
        out, resume = self.rank_paths(job)
        return lambda w: planlib.train_args(w, f"{out}/config.json", out, resume, self.opts.fault_after_epoch)

    def commands(self, job: Job) -> None:
        """Fill job.command / inner / ranks / files from the plan."""
        raise NotImplementedError

    def describe(self, job: Job) -> str:
        """The human-readable launch record (command.txt, and what --dry-run prints)."""
        raise NotImplementedError

    def preflight(self, job: Job) -> None:
        """Make ready to run (image present and current, tools installed), or refuse in one line."""

    def hold(self, job: Job) -> contextlib.AbstractContextManager:
        """What the run holds on this host while it runs (the local engines: the plan's CPUs)."""
        return contextlib.nullcontext()

    def staged(self, staging: Path) -> None:
        """The run dir is written (before the run); the engine may hand it to the user the ranks run as."""

    def finished(self, staging: Path) -> None:
        """The run has ended: hand the run dir back to the invoking user where the engine changed it."""

    def run(self, job: Job, staging: Path) -> outcome.Ended:
        raise NotImplementedError

    def execution(self) -> dict:
        """This engine's record in provenance.json's `execution`: its mode, image, capabilities, own record."""
        raise NotImplementedError

    def explain(self, log: str) -> dict | None:
        """What this engine knows of a failure the launchers' own words do not name (e.g. the node that was lost)."""
        return None

    def stopped(self) -> dict | None:
        """Why this engine itself stopped the run, if it did (a watchdog's finding): it names the failure, whatever
        the launchers printed as they were stopped."""
        return None


def describe_local(job: Job, where: str, host_command: bool) -> str:
    """The launch record of an engine that runs the launch line itself: the env, every rank's command, the launch."""
    per_host = " on every host" if job.plan.hosts else ""
    return "\n".join([
        job.plan.describe(),
        "",
        "# environment of every worker (each rank's own OMP_NUM_THREADS is in its command below)",
        planlib.render_env({**job.plan.env, **job.opts.extra_env}),
        "",
        *[line for w, cmd in zip(job.plan.workers, job.ranks)
          for line in (f"# rank {w.rank}{per_host} ({where})", shlex.join(cmd))],
        "",
        f"# launch ({where})",
        shlex.join(job.inner),
        *(["", "# on the host", shlex.join(job.command)] if host_command else []),
        "",
    ])
