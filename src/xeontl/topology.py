"""The machine's CPU topology: sockets, physical cores, hyper-thread siblings, NUMA nodes, and the CPUs we may use.

Read from the live machine (/sys + the affinity mask, which inside a container is the cgroup cpuset) or from a recorded
`lscpu --parse=CPU,CORE,SOCKET,NODE` file. Nothing assumes how Linux numbers siblings: a physical core is the set of
CPUs sharing a (socket, core) pair, whatever their numbers.
"""

from __future__ import annotations

import dataclasses
import os
import re
from pathlib import Path

from xeontl.errors import UserError


@dataclasses.dataclass(frozen=True)
class Cpu:
    cpu: int
    core: int
    socket: int
    node: int


@dataclasses.dataclass(frozen=True)
class Core:
    """One physical core: its CPUs, lowest number first (that one is the 'primary' thread)."""

    socket: int
    core: int
    cpus: tuple[int, ...]
    node: int


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
        return sorted({core.node for core in self.cores})


@dataclasses.dataclass(frozen=True)
class Topology:
    cpus: tuple[Cpu, ...]
    allowed: frozenset[int]  # CPUs this process may run on (affinity mask / cgroup cpuset)
    source: str  # "live" or the file it was read from

    def sockets(self, usable_only: bool = True) -> list[Socket]:
        """Sockets with their physical cores (only the usable CPUs of each core, and only cores with any)."""
        groups: dict[tuple[int, int], list[Cpu]] = {}
        for c in self.cpus:
            if not usable_only or c.cpu in self.allowed:
                groups.setdefault((c.socket, c.core), []).append(c)
        by_socket: dict[int, list[Core]] = {}
        for (sock, core), cs in sorted(groups.items()):
            ids = tuple(sorted(c.cpu for c in cs))
            by_socket.setdefault(sock, []).append(Core(sock, core, ids, min(cs, key=lambda c: c.cpu).node))
        return [Socket(s, tuple(sorted(cores, key=lambda c: c.cpus[0]))) for s, cores in sorted(by_socket.items())]

    def summary(self) -> dict:
        socks = self.sockets(usable_only=False)
        threads = {len(core.cpus) for s in socks for core in s.cores}
        return {"source": self.source, "sockets": len(socks), "cores_per_socket": [len(s.cores) for s in socks],
                "threads_per_core": max(threads) if threads else 0,
                "numa_nodes": {n: cpulist(c.cpu for c in self.cpus if c.node == n)
                               for n in sorted({c.node for c in self.cpus})},
                "usable_cpus": cpulist(self.allowed)}


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
    """Parse `lscpu --parse=CPU,CORE,SOCKET,NODE` (comment lines start with '#'). A missing NODE column means node 0."""
    cpus = []
    for n, line in enumerate(text.splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        fields = line.split(",")
        if not re.fullmatch(r"\d+,\d+,\d+(,\d*)?", line):
            raise UserError(f"{source}:{n}: '{line}' is not a CPU,CORE,SOCKET,NODE row: "
                            f"record the topology with `lscpu --parse=CPU,CORE,SOCKET,NODE > FILE`")
        node = int(fields[3]) if len(fields) > 3 and fields[3] else 0
        cpus.append(Cpu(int(fields[0]), int(fields[1]), int(fields[2]), node))
    if not cpus:
        raise UserError(f"{source}: no CPU rows found: record it with `lscpu --parse=CPU,CORE,SOCKET,NODE > FILE`")
    if len({c.cpu for c in cpus}) != len(cpus):
        raise UserError(f"{source}: a CPU number appears twice: the file is garbled, record it again with lscpu")
    return Topology(tuple(sorted(cpus, key=lambda c: c.cpu)), frozenset(c.cpu for c in cpus), source)


def load_file(path: str | Path) -> Topology:
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"cannot read topology file {path} ({e.__class__.__name__}): give the output of "
                        f"`lscpu --parse=CPU,CORE,SOCKET,NODE`") from None
    return parse_lscpu(text, str(path))


def live(sysfs: Path = Path("/sys/devices/system")) -> Topology:
    """This machine, restricted to the CPUs this process may use (in a container: its cgroup cpuset)."""
    node_of = {}
    for node_dir in sorted((sysfs / "node").glob("node[0-9]*")):
        for cpu in parse_cpulist((node_dir / "cpulist").read_text()):
            node_of[cpu] = int(node_dir.name[4:])
    cpus = []
    for cpu_dir in sorted((sysfs / "cpu").glob("cpu[0-9]*")):
        topo = cpu_dir / "topology"
        if not (topo / "core_id").exists():  # offline CPU
            continue
        cpu = int(cpu_dir.name[3:])
        cpus.append(Cpu(cpu, int((topo / "core_id").read_text()), int((topo / "physical_package_id").read_text()),
                        node_of.get(cpu, 0)))
    return Topology(tuple(cpus), frozenset(os.sched_getaffinity(0)), "live")


def cgroup_cpuset(kind: str) -> str | None:
    """The cgroup's cpuset ('cpus' or 'mems'), as seen from inside (v2, then v1); None when not visible."""
    for p in (f"/sys/fs/cgroup/cpuset.{kind}.effective", f"/sys/fs/cgroup/cpuset/cpuset.{kind}"):
        try:
            return Path(p).read_text().strip()
        except OSError:
            continue
    return None
