"""The kubelet's CPU manager (static policy), Topology Manager (single-numa-node) and Memory Manager hints, as
kubernetes/kubernetes writes them (pkg/kubelet/cm/cpumanager/cpu_assignment.go, policy_static.go;
pkg/kubelet/cm/topologymanager/policy.go, policy_single_numa_node.go; pkg/kubelet/cm/memorymanager/policy_static.go),
held to their test tables in tests/fixtures/k8s/ (tests/test_k8s_conformance.py)."""

from __future__ import annotations

import dataclasses
import itertools
import math
from pathlib import Path


class NotEnoughCPUs(Exception):
    """takeByTopology: "not enough cpus available to satisfy request"."""


@dataclasses.dataclass(frozen=True)
class SMTAlignmentError(Exception):
    """policy_static.go: a full-pcpus-only request that is not a multiple of the threads per core."""

    requested: int
    cpus_per_core: int

    def __str__(self) -> str:
        return (f"SMT Alignment Error: requested {self.requested} cpus not multiple cpus per core = "
                f"{self.cpus_per_core}")


@dataclasses.dataclass(frozen=True)
class Topology:
    """topology.CPUTopology: CPU -> (core, socket, NUMA node); num_cores/num_sockets as the kubelet counts them."""

    cpus: dict[int, tuple[int, int, int]]

    @property
    def num_cores(self) -> int:
        return len({(c[1], c[0]) for c in self.cpus.values()})

    @property
    def num_sockets(self) -> int:
        return len({c[1] for c in self.cpus.values()})

    @property
    def num_numa(self) -> int:
        return len({c[2] for c in self.cpus.values()})

    def cpus_per_core(self) -> int:
        return len(self.cpus) // self.num_cores

    def cpus_per_socket(self) -> int:
        return len(self.cpus) // self.num_sockets

    def of(self, level: int, ids, within=None) -> set[int]:
        """CPUs (of WITHIN, default all) whose LEVEL (0 core, 1 socket, 2 NUMA) is in IDS."""
        ids = set(ids)
        return {c for c, t in self.cpus.items() if t[level] in ids and (within is None or c in within)}

    @classmethod
    def from_rows(cls, rows) -> Topology:
        return cls({int(r[0]): (int(r[1]), int(r[2]), int(r[3])) for r in rows})

    @classmethod
    def from_lscpu(cls, path: Path) -> Topology:
        """lscpu --parse=CPU,CORE,SOCKET,NODE; a core is (socket, core) as the kubelet's cadvisor reads it."""
        rows = []
        for line in path.read_text().splitlines():
            if line.strip() and not line.startswith("#"):
                cpu, core, sock, node = (x.strip() for x in line.split(",")[:4])
                rows.append((int(cpu), int(sock) * 100000 + int(core), int(sock), int(node or sock)))
        return cls.from_rows(rows)


class _Accumulator:
    """cpu_assignment.go's cpuAccumulator."""

    def __init__(self, topo: Topology, available: set[int], need: int):
        self.topo, self.avail, self.need, self.result = topo, set(available) & set(topo.cpus), need, set()
        self.numa_first = topo.num_sockets >= topo.num_numa

    def _sorted(self, ids, level: int) -> list[int]:
        return sorted(ids, key=lambda i: (len(self.topo.of(level, [i], self.avail)), i))

    def numas(self) -> list[int]:
        if self.numa_first:
            return self._sorted({self.topo.cpus[c][2] for c in self.avail}, 2)
        return [n for s in self.sockets() for n in self._sorted({self.topo.cpus[c][2] for c in
                                                                  self.topo.of(1, [s], self.avail)}, 2)]

    def sockets(self) -> list[int]:
        if not self.numa_first:
            return self._sorted({self.topo.cpus[c][1] for c in self.avail}, 1)
        return [s for n in self.numas() for s in self._sorted({self.topo.cpus[c][1] for c in
                                                                self.topo.of(2, [n], self.avail)}, 1)]

    def cores(self) -> list[int]:
        outer, level = (self.sockets(), 1) if self.numa_first else (self.numas(), 2)
        return [k for o in outer for k in self._sorted({self.topo.cpus[c][0] for c in
                                                         self.topo.of(level, [o], self.avail)}, 0)]

    def take(self, cpus: set[int]) -> None:
        self.result |= cpus
        self.avail -= cpus
        self.need -= len(cpus)

    def take_full(self, level: int) -> None:
        ids = {2: self.numas, 1: self.sockets, 0: self.cores}[level]()
        for i in ids:
            whole = self.topo.of(level, [i])
            if len(self.topo.of(level, [i], self.avail)) == len(whole) and self.need >= len(whole):
                self.take(whole)

    def take_remaining(self) -> None:
        for core in self.cores():
            for cpu in sorted(self.topo.of(0, [core], self.avail)):
                self.take({cpu})
                if self.need < 1:
                    return


def take_by_topology_numa_packed(topo: Topology, available, count: int) -> set[int]:
    """takeByTopologyNUMAPacked: whole NUMA nodes / sockets (the larger first), then whole cores, then threads."""
    acc = _Accumulator(topo, set(available), count)
    if acc.need < 1:
        return set()
    if acc.need > len(acc.avail):
        raise NotEnoughCPUs("not enough cpus available to satisfy request")
    for step in ((2, 1) if acc.numa_first else (1, 2)) + (0,):
        acc.take_full(step)
        if acc.need < 1:
            return acc.result
    acc.take_remaining()
    if acc.need < 1:
        return acc.result
    raise NotEnoughCPUs("failed to allocate cpus")


def _sd(values: dict) -> float:
    """standardDeviation(mapIntInt.Values()) as cpu_assignment.go computes it: Values() makes a slice of len(m) zeros
    and appends the values to it, so the zeros count too (the upstream tables' answers depend on it)."""
    xs = [0] * len(values) + list(values.values())
    m = sum(float(x) for x in xs) / len(xs)
    return math.sqrt(sum((float(x) - m) * (float(x) - m) for x in xs) / len(xs))


def take_by_topology_numa_distributed(topo: Topology, available, count: int, group: int = 1) -> set[int]:
    """takeByTopologyNUMADistributed (KEP-2902, distribute-cpus-across-numa): the fewest NUMA nodes over which the
    request spreads evenly in groups of GROUP CPUs, the remainder where it keeps the nodes' free CPUs most balanced;
    else packed."""
    acc = _Accumulator(topo, set(available), count)
    if acc.need < 1:
        return set()
    if acc.need > len(acc.avail):
        raise NotEnoughCPUs("not enough cpus available to satisfy request")
    numas = acc.numas()
    free = {n: len(topo.of(2, [n], acc.avail)) for n in numas}
    groups_available = (len(acc.avail) - 1) // group + 1
    groups_needed = (count - 1) // group + 1
    per_numa = (groups_available - 1) // len(numas) + 1
    lo, hi = (groups_needed - 1) // per_numa + 1, min(groups_needed, len(numas))
    for k in range(lo, hi + 1):
        best, best_combo, best_rest = math.inf, None, None
        for combo in itertools.combinations(numas, k):
            if best == 0:
                break
            if sum(free[n] for n in combo) < count or sum(free[n] // group for n in combo) * group < count:
                continue
            share = (count // len(combo) // group) * group
            if any(free[n] < share for n in combo):
                continue
            after = {n: free[n] - share for n in combo}
            rest = count - share * len(combo)
            local, local_rest = (_sd(after), None) if rest == 0 else (math.inf, None)
            if rest // group >= 1:
                for subset in itertools.combinations(combo, rest // group):
                    trial = dict(after)
                    for n in subset:
                        trial[n] -= group
                    if _sd(trial) < local:
                        local, local_rest = _sd(trial), subset
            if local < best:
                best, best_combo, best_rest = local, combo, local_rest
        if best_combo is None:
            continue
        share = (count // len(best_combo) // group) * group
        for n in best_combo:
            acc.take(take_by_topology_numa_packed(topo, topo.of(2, [n], acc.avail), share))
        for n in best_rest or ():
            acc.take(take_by_topology_numa_packed(topo, topo.of(2, [n], acc.avail), group))
        assert acc.need == 0, f"accounting error, remaining: {acc.need}"
        return acc.result
    return take_by_topology_numa_packed(topo, available, count)


def reserved_cpus(topo: Topology, num_reserved: int, reserved=()) -> set[int]:
    """NewStaticPolicy: --reserved-cpus as given, else num_reserved taken by topology from every CPU."""
    if reserved:
        assert len(set(reserved)) == num_reserved, "unable to reserve the required amount of CPUs"
        return set(reserved)
    return take_by_topology_numa_packed(topo, set(topo.cpus), num_reserved) if num_reserved else set()


def static_allocate(topo: Topology, default_set, reserved: set[int], cpu_request: str, cpu_limit: str,
                    full_pcpus_only: bool = False, assigned: set[int] | None = None,
                    numa_affinity: set[int] | None = None) -> set[int] | None:
    """staticPolicy.Allocate for one container: None when it gets no exclusive CPUs (not Guaranteed or not an
    integer count), its CPUs, or SMTAlignmentError / NotEnoughCPUs. ASSIGNED: what the state holds for this very
    container already (returned unchanged)."""
    req, lim = _milli(cpu_request), _milli(cpu_limit)
    if req != lim or req % 1000:
        return None
    n = req // 1000
    if full_pcpus_only and n % topo.cpus_per_core():
        raise SMTAlignmentError(n, topo.cpus_per_core())
    if assigned:
        return set(assigned)
    allocatable = set(default_set) - set(reserved)
    result = set()
    if numa_affinity is not None:
        aligned = topo.of(2, numa_affinity, allocatable)
        result = take_by_topology_numa_packed(topo, aligned, min(n, len(aligned)))
    return result | take_by_topology_numa_packed(topo, allocatable - result, n - len(result))


def _milli(q: str) -> int:
    """A CPU quantity ("500m", "2", "1.5") in millicores."""
    q = str(q)
    return int(q[:-1]) if q.endswith("m") else round(float(q) * 1000)


# ---------------------------------------------------------------------------------------- the Topology Manager
Hint = tuple  # (frozenset of NUMA nodes or None, preferred)


def filter_providers_hints(providers: list[dict | None]) -> list[list[Hint]]:
    """policy.go filterProvidersHints: a provider with no hints: don't care; a resource with nil hints: don't care;
    with an empty list: no possible alignment."""
    out = []
    for hints in providers:
        if not hints:
            out.append([(None, True)])
            continue
        for resource in hints:
            if hints[resource] is None:
                out.append([(None, True)])
            elif len(hints[resource]) == 0:
                out.append([(None, False)])
            else:
                out.append(list(hints[resource]))
    return out


def filter_single_numa_hints(resources: list[list[Hint]]) -> list[list[Hint]]:
    """policy_single_numa_node.go filterSingleNumaHints: preferred hints of one NUMA node (or none at all)."""
    return [[h for h in r if h[1] and (h[0] is None or len(h[0]) == 1)] for r in resources]


def merge_filtered_hints(numa_nodes: list[int], resources: list[list[Hint]]) -> Hint:
    """policy.go mergeFilteredHints: every combination of one hint per resource, ANDed; preferred beats not, then
    the narrower, then the lower."""
    default = frozenset(numa_nodes)
    best = (default, False)
    for perm in itertools.product(*resources):
        mask = default.intersection(*[h[0] if h[0] is not None else default for h in perm])
        merged = (frozenset(mask), all(h[1] for h in perm))
        if not merged[0]:
            continue
        if merged[1] and not best[1]:
            best = merged
            continue
        if not merged[1] and best[1]:
            continue
        if _narrower(merged[0], best[0]):
            best = merged
    return best


def _narrower(a: frozenset, b: frozenset) -> bool:
    if len(a) != len(b):
        return len(a) < len(b)
    return sorted(a) < sorted(b)


def single_numa_node_merge(numa_nodes: list[int], providers: list[dict | None]) -> tuple[Hint, bool]:
    """singleNumaNodePolicy.Merge: the best single-NUMA hint (the any-NUMA mask reported as None) and admit."""
    best = merge_filtered_hints(numa_nodes, filter_single_numa_hints(filter_providers_hints(providers)))
    if best[0] == frozenset(numa_nodes):
        best = (None, best[1])
    return best, single_numa_node_admit(best)


def numa_hints(capacity: dict[int, int], free: dict[int, int], request: int) -> list[Hint]:
    """A hint provider's hints (cpumanager topology_hints.go, memorymanager policy_static.go): every NUMA mask whose
    FREE amount holds the request, preferred where the mask is as small as the smallest whose CAPACITY could."""
    nodes = sorted(capacity)
    masks = [frozenset(m) for k in range(1, len(nodes) + 1) for m in itertools.combinations(nodes, k)]
    fits = [m for m in masks if sum(capacity[n] for n in m) >= request]
    if not fits:
        return []
    smallest = min(len(m) for m in fits)
    return [(m, len(m) == smallest) for m in fits if sum(free[n] for n in m) >= request]


def single_numa_node_admit(hint: Hint) -> bool:
    """singleNumaNodePolicy.canAdmitPodResult: admitted only on a preferred hint (else TopologyAffinityError)."""
    return bool(hint[1])


def validate_reserved_memory(numa_nodes, allocatable_reservation: dict, reserved: list[dict]) -> str | None:
    """memorymanager validateReservedMemory: the error the kubelet stops on, or None. RESERVED: [{numa, limits:
    {type: amount}}] (--reserved-memory); ALLOCATABLE_RESERVATION: {type: amount} (kube-reserved + system-reserved +
    the hard eviction threshold, per memory type)."""
    total: dict[str, float] = {}
    for r in reserved:
        if r["numa"] not in set(numa_nodes):
            return (f"the reserved memory configuration references a NUMA node {r['numa']} that does not exist on "
                    "this machine")
        for kind, amount in r["limits"].items():
            total[kind] = total.get(kind, 0) + amount
    kinds = set(total) | {k for k in allocatable_reservation if k == "memory" or k.startswith("hugepages-")}
    for kind in sorted(kinds):
        want, got = allocatable_reservation.get(kind, 0), total.get(kind, 0)
        if want != got:
            return (f'the total amount "{got:g}" of type "{kind}" is not equal to the value "{want:g}" determined by '
                    "Node Allocatable feature")
    return None


# ------------------------------------------------------------------------------ a node as its kubelet holds it
@dataclasses.dataclass
class Node:
    """A node as its kubelet holds it, with the settings `render` prints: the static CPU manager (full-pcpus-only
    unless told otherwise) with --reserved-cpus, the Topology Manager at single-numa-node (container scope), the
    Memory Manager Static when MEMORY_GIB (GiB per NUMA node) is given (else None: no memory hints); its labels and
    taints for the scheduler; the machine CPU each of its CPUs runs on here (PHYSICAL)."""

    name: str
    numa: dict[int, int]  # CPU -> NUMA node
    reserved: set[int]
    physical: list[int]
    held: dict[str, set[int]] = dataclasses.field(default_factory=dict)
    pods: list[str] = dataclasses.field(default_factory=list)
    topology: Topology | None = None  # cores and sockets; default: every CPU its own core, socket = NUMA node
    full_pcpus_only: bool = True
    labels: dict = dataclasses.field(default_factory=dict)
    taints: list = dataclasses.field(default_factory=list)
    memory_gib: dict[int, float] | None = None
    reserved_memory_gib: dict[int, float] = dataclasses.field(default_factory=dict)
    memory_reservation_gib: float | None = None  # kube-reserved + system-reserved + eviction-hard memory
    held_memory: dict[str, dict[int, float]] = dataclasses.field(default_factory=dict)
    pod_labels: dict[str, dict] = dataclasses.field(default_factory=dict)

    def __post_init__(self):
        from k8s_model import Refused

        if not self.reserved:
            raise Refused(f"kubelet on {self.name} does not start: the static CPU manager needs reserved CPUs "
                          "(--reserved-cpus or kube-reserved/system-reserved cpu)")
        if self.topology is None:
            self.topology = Topology.from_rows([(c, c, n, n) for c, n in self.numa.items()])
        if self.memory_gib is not None and sum(self.memory_gib.values()) - sum(self.reserved_memory_gib.values()) <= 0:
            raise Refused(f"kubelet on {self.name} does not start: the Memory Manager has no memory to give")
        if self.memory_gib is not None and self.memory_reservation_gib is not None:
            why = validate_reserved_memory(sorted(set(self.numa.values())), {"memory": self.memory_reservation_gib},
                                           [{"numa": n, "limits": {"memory": v}} for n, v in
                                            self.reserved_memory_gib.items()])
            if why:
                raise Refused(f"kubelet on {self.name} does not start: {why} (GiB)")
        # the labels every kubelet sets on its Node (pkg/kubelet/kubelet_node_status.go, initialNode)
        self.labels = {"kubernetes.io/hostname": self.name, "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux",
                       **self.labels}
        self.machine = {cpu: self.physical[i % len(self.physical)] for i, cpu in enumerate(sorted(self.numa))}

    def free(self) -> list[int]:
        taken = set().union(*self.held.values()) if self.held else set()
        return sorted(set(self.numa) - self.reserved - taken)

    def allocatable(self) -> int:
        return len(self.numa) - len(self.reserved)

    def cpu_left(self) -> int:
        return self.allocatable() - sum(len(c) for c in self.held.values())

    def admit(self, pod: str, cpus: int, memory_gib: float = 0) -> tuple[list[int], int]:
        """A Guaranteed pod's admission: full-pcpus-only (SMTAlignmentError), the CPU and memory hints merged by
        single-numa-node (TopologyAffinityError), then the static policy's CPUs on the chosen NUMA node."""
        from k8s_model import Refused

        topo, nodes = self.topology, sorted(set(self.numa.values()))
        if self.full_pcpus_only and cpus % topo.cpus_per_core():
            raise Refused(f"pod {pod} on {self.name}: Failed: {SMTAlignmentError(cpus, topo.cpus_per_core())}")
        free = set(self.free())
        cap = {n: len(topo.of(2, [n])) for n in nodes}
        providers = [{"cpu": numa_hints(cap, {n: len(topo.of(2, [n], free)) for n in nodes}, cpus)}]
        if self.memory_gib is not None:
            mcap = {n: self.memory_gib.get(n, 0) - self.reserved_memory_gib.get(n, 0) for n in nodes}
            mfree = {n: mcap[n] - sum(h.get(n, 0) for h in self.held_memory.values()) for n in nodes}
            providers.append({"memory": numa_hints(mcap, mfree, memory_gib)})
        best, ok = single_numa_node_merge(nodes, providers)
        if not ok:
            raise Refused(f"pod {pod} on {self.name}: TopologyAffinityError: no single NUMA node holds {cpus} CPUs"
                          f"{f' and {memory_gib:g} GiB' if self.memory_gib is not None else ''} (free CPUs: "
                          f"{sorted(free)}, reserved: {sorted(self.reserved)})")
        affinity = best[0] if best[0] is not None else frozenset(nodes)
        mine = static_allocate(topo, free | self.reserved, self.reserved,
                               str(cpus), str(cpus), self.full_pcpus_only, numa_affinity=set(affinity))
        self.held[pod] = mine
        if self.memory_gib is not None:
            self.held_memory[pod] = {min(affinity): memory_gib}
        return sorted(mine), min(affinity)
