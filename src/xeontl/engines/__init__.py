"""Engines: what runs a planned job, as Slurm's plugins or Horovod's runner do it. Each engine owns, whole:

- `check()`: the options it cannot honour and the tools it lacks, refused in one line before anything is written;
- `topology()` and `layout()`: the machine(s) the plan pins, and how many of them;
- `commands(job)`: the command lines and files it renders from the plan's per-rank decisions (plan.py: CPUs, memory
  nodes, threads, env, each rank's own command; nothing here decides one of those);
- `preflight(job)`, `hold(job)`, `run(job, staging)`: make ready (image present or converted), hold what it must on
  this host (the plan's CPUs), run / follow / cancel on Ctrl-C, and say how it ended (outcome.Ended);
- `execution()`: its own record for provenance.json (mode, image, capabilities, scheduler record).

launch.py chooses the engine once (`choose`) and never asks which one it has."""

from __future__ import annotations

from xeontl.engines.base import Engine, Job, describe_local  # noqa: F401  (the interface, by its package's name)
from xeontl.launch.options import Options


def choose(opts: Options) -> Engine:
    """The engine for these options; the only place that looks at --engine and --native."""
    from xeontl.engines import docker, native, slurm

    if opts.engine == "slurm":
        return slurm.SlurmEngine(opts)
    if opts.engine != "local":
        from xeontl.common.errors import UserError

        if opts.engine == "k8s":  # applied and watched with the user's kubectl by tasks.py, not by this launcher
            raise UserError("--engine k8s: through `invoke reproduce --engine k8s` (kubectl) or `invoke render`")
        raise UserError(f"--engine {opts.engine}: must be local, slurm or k8s")
    return native.NativeEngine(opts) if opts.native else docker.DockerEngine(opts)
