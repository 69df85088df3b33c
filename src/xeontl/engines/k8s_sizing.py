"""How the Kubernetes engine sizes a worker pod for a node (engines/kubernetes.render): the kubelet's reserved CPUs,
whole cores per pod that every socket's (NUMA node's) allocatable share holds, room for the launcher and the node's
DaemonSets, and a pod per NUMA node on SNC nodes."""

from __future__ import annotations

from xeontl.common.errors import UserError
from xeontl.placement.topology import cpulist


def default_reserved(topo) -> list[int]:
    """The kubelet's reserved CPUs when none are given: the first core of the first socket, with its siblings (the
    static policy needs at least one; whole cores keep full-pcpus-only possible)."""
    return list(topo.sockets(usable_only=False)[0].cores[0].cpus)


def pod_cores(topo, reserved: list[int], wanted: int = 0) -> tuple[int, int]:
    """(whole cores per worker pod, CPUs it requests): the most whole cores every socket still has free once the
    reserved CPUs are taken out (a pod of one socket must fit the smallest share), or WANTED if that fits. One line
    when it cannot: such a pod would stay Pending, or fail the Topology Manager's admission, for ever."""
    socks = topo.sockets(usable_only=False)
    threads = max(len(c.cpus) for s in socks for c in s.cores)
    free = {s.id: sum(1 for c in s.cores if not set(c.cpus) & set(reserved)) for s in socks}
    fits = min(free.values())
    if fits == 0:
        raise UserError(f"reserved CPUs {cpulist(reserved)} leave socket(s) "
                        f"{', '.join(str(k) for k, v in free.items() if v == 0)} no whole core: a pod per socket "
                        f"cannot fit; reserve fewer CPUs (--reserved-cpus)")
    if wanted and wanted > fits:
        raise UserError(f"--cores-per-socket {wanted}: a worker pod would request {wanted * threads} CPUs, but with "
                        f"the kubelet's reserved CPUs {cpulist(reserved)} the smallest socket's allocatable share is "
                        f"{fits} whole cores ({fits * threads} CPUs): the pod would stay Pending (or fail "
                        f"single-numa-node admission); use --cores-per-socket {fits} or fewer")
    cores = wanted or fits
    return cores, cores * threads


def cpu_quantity(flag: str, text) -> float:
    """A CPU quantity as Kubernetes writes one (2, 1.5, 500m) in CPUs, non-negative and finite, or one line."""
    import math

    t = str(text).strip()
    try:
        value = float(t[:-1]) / 1000 if t.endswith("m") else float(t)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value < 0:
        raise UserError(f"{flag} {text!r}: must be a CPU quantity like 500m, 1 or 1.5")
    return value


LAUNCHER_CPUS = 0.5  # LAUNCHER_RESOURCES' request, counted on every node (the launcher may go to any)


def headroom_cores(topo, reserved: list[int], pods: int, cores: int, threads: int, daemonset: float,
                   given: int) -> tuple[int, float]:
    """(whole cores per worker pod, CPUs then left on a node) so that a node's allocatable CPUs (all of them less the
    reserved: the kubelet's --reserved-cpus) hold its PODS workers, the launcher's request and DAEMONSET CPUs of
    DaemonSet requests (the scheduler sums every pod's requests against allocatable: workers sized to the whole share
    would leave a DaemonSet's pod, or the workers, Pending). Fewer cores when the count was not GIVEN; else one line."""
    allocatable = len(topo.cpus) - len(reserved)

    def left(c):
        return allocatable - pods * c * threads - LAUNCHER_CPUS

    fit = cores
    while fit > 0 and left(fit) < daemonset:
        fit -= 1
    if fit == cores:
        return cores, left(cores)
    if given or fit == 0:
        raise UserError(f"{pods} worker pods of {cores * threads} CPUs leave {left(cores):g} of the node's "
                        f"{allocatable} allocatable CPUs once the launcher's {LAUNCHER_CPUS:g} is counted, less than "
                        f"--daemonset-cpus {daemonset:g} for its DaemonSets: "
                        + (f"use --cores-per-socket {fit} or fewer, or a smaller --daemonset-cpus" if fit
                           else "a smaller --daemonset-cpus or fewer --reserved-cpus"))
    return fit, left(fit)


def numa_split(topo) -> tuple[object, int, str | None]:
    """(the topology with each NUMA node as a "socket", NUMA nodes per socket, the layout in words) when a socket
    has several NUMA nodes (SNC-2, SNC-4: single-numa-node admits a pod only if one NUMA node holds it, so a pod per
    NUMA node); else (TOPO, 1, None)."""
    import dataclasses

    socks = topo.sockets(usable_only=False)
    per = {len({c.node for c in s.cores if c.node is not None}) for s in socks}
    if per <= {0, 1}:
        return topo, 1, None
    if len(per) > 1 or any(c.node is None for c in topo.cpus):
        raise UserError(f"the node ({topo.source}) has sockets of unequal NUMA layouts ({topology_words(topo)}): a "
                        f"pod per NUMA node cannot be sized alike; render for nodes of one layout")
    split = dataclasses.replace(topo, cpus=tuple(dataclasses.replace(c, socket=c.node) for c in topo.cpus))
    return split, per.pop(), topology_words(topo)


def topology_words(topo) -> str:
    nodes = topo.summary()["numa_nodes"]
    return (f"{len(topo.sockets(usable_only=False))} sockets, NUMA nodes "
            + "; ".join(f"{n}: CPUs {cpus}" for n, cpus in nodes.items()))
