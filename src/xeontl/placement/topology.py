"""The machine's CPU topology: sockets, physical cores, hyper-thread siblings, NUMA nodes, and the CPUs we may use.

Read from the live machine (/sys + the affinity mask, which inside a container is the cgroup cpuset) or from a recorded
`lscpu --parse=CPU,CORE,SOCKET,NODE` file. Nothing assumes how Linux numbers siblings: a physical core is the set of
CPUs sharing a (socket, core) pair, whatever their numbers.
"""

from __future__ import annotations

import dataclasses
import os
import platform
import re
from pathlib import Path

from xeontl.common.errors import UserError


@dataclasses.dataclass(frozen=True)
class Cpu:
    cpu: int
    core: int
    socket: int
    node: int | None  # None: the kernel names no node for it (node offline, or a socket with no local memory)


@dataclasses.dataclass(frozen=True)
class Core:
    """One physical core: its CPUs, lowest number first (that one is the 'primary' thread)."""

    socket: int
    core: int
    cpus: tuple[int, ...]
    node: int | None


@dataclasses.dataclass(frozen=True)
class Socket:
    id: int
    cores: tuple[Core, ...]

    @property
    def cpus(self) -> list[int]:
        """Every CPU of the socket: physical cores then siblings, as numactl -C takes them."""
        return sorted(c for core in self.cores for c in core.cpus)

    @property
    def nodes(self) -> list[int]:
        return sorted({core.node for core in self.cores if core.node is not None})


@dataclasses.dataclass(frozen=True)
class Topology:
    cpus: tuple[Cpu, ...]  # online CPUs
    allowed: frozenset[int]  # CPUs this process may run on (affinity mask / cgroup cpuset)
    source: str  # "live" or the file it was read from
    # NUMA nodes that are online and have memory, and those this process may allocate from (Mems_allowed).
    # None: not known (a recorded lscpu file): every node named by a CPU is taken to have memory.
    memory_nodes: frozenset[int] | None = None
    mems_allowed: frozenset[int] | None = None
    warnings: tuple[str, ...] = ()  # what the reader had to work around (shown in every plan)

    def has_memory(self, node: int) -> bool:
        return self.memory_nodes is None or node in self.memory_nodes

    def sockets(self, usable_only: bool = True) -> list[Socket]:
        """Sockets with their physical cores (only the usable CPUs of each core, and only cores with any)."""
        groups: dict[tuple[int, int], list[Cpu]] = {}
        for c in self.cpus:
            if not usable_only or c.cpu in self.allowed:
                groups.setdefault((c.socket, c.core), []).append(c)
        by_socket: dict[int, list[Core]] = {}
        for (sock, core), cs in sorted(groups.items()):
            ids = tuple(sorted(c.cpu for c in cs))
            node = next((c.node for c in sorted(cs, key=lambda c: c.cpu) if c.node is not None), None)
            by_socket.setdefault(sock, []).append(Core(sock, core, ids, node))
        return [Socket(s, tuple(sorted(cores, key=lambda c: c.cpus[0]))) for s, cores in sorted(by_socket.items())]

    def summary(self) -> dict:
        socks = self.sockets(usable_only=False)
        threads = {len(core.cpus) for s in socks for core in s.cores}
        return {"source": self.source, "sockets": len(socks), "cores_per_socket": [len(s.cores) for s in socks],
                "threads_per_core": max(threads) if threads else 0,
                "numa_nodes": {n: cpulist(c.cpu for c in self.cpus if c.node == n)
                               for n in sorted({c.node for c in self.cpus if c.node is not None})},
                "cpus_without_node": cpulist(c.cpu for c in self.cpus if c.node is None),
                "memory_nodes": None if self.memory_nodes is None else sorted(self.memory_nodes),
                "usable_cpus": cpulist(self.allowed), "warnings": list(self.warnings)}


def cpulist(cpus) -> str:
    """[0,1,2,3,8,9] -> '0-3,8-9' (the kernel's and numactl's list syntax)."""
    xs = sorted(set(cpus))
    out, i = [], 0
    while i < len(xs):
        j = i
        while j + 1 < len(xs) and xs[j + 1] == xs[j] + 1:
            j += 1
        out.append(str(xs[i]) if i == j else f"{xs[i]}-{xs[j]}")
        i = j + 1
    return ",".join(out)


def parse_cpulist(text: str) -> set[int]:
    """'0-3,8-9' -> {0,1,2,3,8,9}; raises ValueError on anything else."""
    out: set[int] = set()
    for part in text.strip().split(","):
        if not part:
            continue
        lo, _, hi = part.partition("-")
        a, b = int(lo), int(hi or lo)
        if b < a:
            raise ValueError(part)
        out.update(range(a, b + 1))
    return out


def parse_lscpu(text: str, source: str = "<text>") -> Topology:
    """Parse `lscpu --parse=CPU,CORE,SOCKET,NODE` (comment lines start with '#').

    A missing NODE *column* (a three-column file, or a kernel without NUMA) means node 0. An empty NODE *field* is
    lscpu saying the kernel names no node for that CPU (node offline, or a socket without local memory): it stays
    None, never node 0, so no plan binds memory to a node that may not exist."""
    cpus = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(",")
        if not re.fullmatch(r"\d+,\d+,\d+(,\d*)?", line):
            raise UserError(f"{source}:{n}: '{line}' is not a CPU,CORE,SOCKET,NODE row: "
                            f"record the topology with `lscpu --parse=CPU,CORE,SOCKET,NODE > FILE`")
        node = (int(fields[3]) if fields[3] else None) if len(fields) > 3 else 0
        cpus.append(Cpu(int(fields[0]), int(fields[1]), int(fields[2]), node))
    if not cpus:
        raise UserError(f"{source}: no CPU rows found: record it with `lscpu --parse=CPU,CORE,SOCKET,NODE > FILE`")
    if len({c.cpu for c in cpus}) != len(cpus):
        raise UserError(f"{source}: a CPU number appears twice: the file is garbled, record it again with lscpu")
    return Topology(tuple(sorted(cpus, key=lambda c: c.cpu)), frozenset(c.cpu for c in cpus), source)


def load_file(path: str | Path) -> Topology:
    from xeontl.common import records

    path = Path(path)
    try:  # a regular file of at most 4 MiB (a 4096-CPU host's rows are ~100 KiB): /dev/zero or a FIFO is refused
        text = records.read_text(path, "topology file", limit=4 << 20)
    except UserError as e:
        raise UserError(f"{e}: give the output of `lscpu --parse=CPU,CORE,SOCKET,NODE`") from None
    return parse_lscpu(text, str(path))


def _read_int(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def _node_has_memory(node_dir: Path) -> bool:
    meminfo = node_dir / "meminfo"
    m = re.search(r"MemTotal:\s+(\d+)", meminfo.read_text()) if meminfo.exists() else None
    return m is None or int(m[1]) > 0  # no meminfo to read: assume it has memory, as lscpu does


def live(sysfs: Path = Path("/sys/devices/system"), allowed: frozenset[int] | None = None,
         mems_allowed: frozenset[int] | None = None) -> Topology:
    """This machine, restricted to the CPUs this process may use (in a container: its cgroup cpuset).

    A physical core is the set of CPUs in one `thread_siblings_list`, not a (package, core_id) pair: on multi-die
    packages core_id repeats on every die, and grouping by it merges distinct cores."""
    node_of, memory = {}, set()
    for node_dir in sorted((sysfs / "node").glob("node[0-9]*")):
        node = int(node_dir.name[4:])
        for cpu in parse_cpulist((node_dir / "cpulist").read_text()):
            node_of[cpu] = node
        if _node_has_memory(node_dir):
            memory.add(node)
    has_memory = sysfs / "node" / "has_memory"  # the kernel's own list of nodes with memory, where it exists
    if has_memory.exists():
        memory &= parse_cpulist(has_memory.read_text())
    cpus, warnings = [], []
    dies = set()
    for cpu_dir in sorted((sysfs / "cpu").glob("cpu[0-9]*"), key=lambda d: int(d.name[3:])):
        topo = cpu_dir / "topology"
        if not (topo / "core_id").exists() or _read_int(cpu_dir / "online") == 0:  # offline CPU
            continue
        cpu = int(cpu_dir.name[3:])
        siblings = topo / "thread_siblings_list"
        core = min(parse_cpulist(siblings.read_text())) if siblings.exists() else None
        package = _read_int(topo / "physical_package_id") or 0
        if core is None:  # kernels without thread_siblings_list: (package, die, core_id) is the next best key
            core = (package * 1024 + (_read_int(topo / "die_id") or 0)) * 65536 + (_read_int(topo / "core_id") or 0)
        dies.add((package, _read_int(topo / "die_id")))
        cpus.append(Cpu(cpu, core, package, node_of.get(cpu)))
    by_core_id = {(c.socket, _read_int(sysfs / "cpu" / f"cpu{c.cpu}" / "topology" / "core_id")) for c in cpus}
    by_siblings = {c.core for c in cpus}
    if len(by_core_id) != len(by_siblings):
        warnings.append(f"core_id repeats across dies ({len(by_siblings)} cores by thread siblings, "
                        f"{len(by_core_id)} by package+core_id): cores grouped by thread siblings")
    if node_of:
        missing = [c.cpu for c in cpus if c.node is None]
        if missing:
            warnings.append(f"CPUs {cpulist(missing)} belong to no online NUMA node: their memory is not bound")
    else:  # a kernel without NUMA support: everything is node 0
        cpus = [dataclasses.replace(c, node=0) for c in cpus]
        memory = {0}
    if allowed is None:
        allowed = frozenset(os.sched_getaffinity(0))
    if mems_allowed is None:
        m = re.search(r"Mems_allowed_list:\s*(\S+)", Path("/proc/self/status").read_text())
        mems_allowed = frozenset(parse_cpulist(m[1])) if m else None
    if sysfs == Path("/sys/devices/system"):  # the real machine: lscpu must count the same cores
        warnings += _lscpu_disagrees({c.cpu for c in cpus}, len({c.core for c in cpus}))
    return Topology(tuple(cpus), allowed, "live", frozenset(memory), mems_allowed, tuple(warnings))


def _lscpu_disagrees(online: set[int], cores: int) -> list[str]:
    import shutil
    import subprocess

    if shutil.which("lscpu") is None:
        return []
    try:
        out = subprocess.run(["lscpu", "--parse=CPU,CORE"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    theirs = {line.split(",")[1] for line in out.splitlines()
              if line and not line.startswith("#") and int(line.split(",")[0]) in online}
    if theirs and len(theirs) != cores:
        return [f"lscpu counts {len(theirs)} cores, /sys gives {cores}: check the plan's CPU lists"]
    return []


MEMORY_POLICIES = {0: "default", 1: "preferred", 2: "bind", 3: "interleave", 4: "local", 5: "preferred_many",
                   6: "weighted_interleave"}  # the kernel's MPOL_* modes (include/uapi/linux/mempolicy.h)
_GET_MEMPOLICY = {"x86_64": 239, "aarch64": 236}  # the syscall's number (glibc has no wrapper; libnuma's is one)


def memory_policy() -> dict | None:
    """This process's NUMA memory policy, as get_mempolicy(2) returns it: what `numactl -m` set ("bind" and its
    nodes; Mems_allowed_list is the cpuset's, which numactl never changes), "default" without. None where it cannot
    be read (another architecture; a seccomp profile refusing it without CAP_SYS_NICE, as Docker's default does)."""
    import ctypes

    nr = _GET_MEMPOLICY.get(platform.machine())
    if nr is None:
        return None
    bits, maxnode = 8 * ctypes.sizeof(ctypes.c_ulong), 4096  # more nodes than any kernel's MAX_NUMNODES (1024)
    mode, mask = ctypes.c_int(0), (ctypes.c_ulong * (maxnode // bits))()
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.syscall(ctypes.c_long(nr), ctypes.byref(mode), mask, ctypes.c_ulong(maxnode), None, ctypes.c_ulong(0)):
        return None
    nodes = [i for i in range(maxnode) if mask[i // bits] >> (i % bits) & 1]
    return {"mode": MEMORY_POLICIES.get(mode.value & 0xFF, "unknown"), "nodes": cpulist(nodes) or None}


def kernel_names_nodes(sysfs: Path = Path("/sys/devices/system")) -> bool:
    """Whether the kernel shows its NUMA nodes (live() puts every CPU on node 0 where it does not: a kernel without
    NUMA, or a sandbox hiding /sys, which cannot be told apart)."""
    return any((sysfs / "node").glob("node[0-9]*"))


def cgroup_cpuset(kind: str) -> str | None:
    """The cgroup's cpuset ('cpus' or 'mems'), as seen from inside (v2, then v1); None when not visible."""
    for p in (f"/sys/fs/cgroup/cpuset.{kind}.effective", f"/sys/fs/cgroup/cpuset/cpuset.{kind}"):
        try:
            return Path(p).read_text().strip()
        except OSError:
            continue
    return None
