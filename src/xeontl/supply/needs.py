"""What a run's ranks need of the CPU they run on, one definition for every place that checks it: the launcher on
this host (stacks.require_cpu, runtime.choose_precision hold the same flags), Slurm's node check in the sbatch script
(engines/slurm.py) and Kubernetes' worker pods (engines/k8s_cpu.py: NFD node affinity and a check at start). The
stack's CPU flags (the paper stack's avx512f) and the precision's (bf16: one of runtime.BF16_FLAGS, oneDNN's BF16
kernels). Light: no TensorFlow."""

from __future__ import annotations

import shlex
from typing import NamedTuple

from xeontl.experiment.runtime import BF16_FLAGS
from xeontl.supply.stacks import Stack


class Need(NamedTuple):
    """One thing a run's ranks need of their CPU: one of FLAGS (as /proc/cpuinfo names them). BY: what needs it (the
    refusal's first words), WHAT: the feature in words, WHY: what happens without it."""
    flags: tuple[str, ...]
    by: str
    what: str
    why: str


def run_needs(stack: Stack, precision: str) -> list[Need]:
    """What a run's ranks need of the CPU they run on, wherever that is (this host, Slurm's nodes, Kubernetes' worker
    pods): each of the stack's CPU flags, and for precision bf16 one of oneDNN's BF16 kernels' flags
    (runtime.BF16_FLAGS; precision auto picks fp32 where there are none, so it needs nothing)."""
    needs = [Need((f,), f"--stack {stack.name}", f, f"without which {stack.versions['tensorflow']} aborts on import")
             for f in stack.cpu]
    if precision == "bf16":
        needs.append(Need(BF16_FLAGS, "precision bf16", f"oneDNN BF16 kernels (none of {', '.join(BF16_FLAGS)})",
                          "without which the first BF16 op of every rank fails"))
    return needs


def lacks_line(need: Need, node: str) -> str:
    """What NODE (a node of Slurm's job, the node of a Kubernetes worker) says when it lacks NEED: one line."""
    advice = " (precision=auto runs fp32 there)" if need.by == "precision bf16" else ""
    return f"xeontl: error: {need.by}: {node} lacks {need.what}, {need.why}; nothing was run{advice}"


def grep_check(need: Need, cpuinfo: str = "/proc/cpuinfo") -> str:
    """The grep that succeeds where CPUINFO has one of NEED's flags (a command: no shell needed to run it)."""
    if len(need.flags) == 1:
        return f"grep -qw {need.flags[0]} {cpuinfo}"
    return f"grep -qwE {shlex.quote('|'.join(need.flags))} {cpuinfo}"
