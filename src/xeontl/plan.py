"""Topology + sockets + options -> the exact plan: which CPUs and memory nodes each worker gets, its threads and env,
and the command lines that run it. Pure: no I/O, so every decision is unit-tested on recorded topologies.

The paper's runs, on its 2x56-core SPR host with HT:
  1 socket : numactl -C 0-55,112-167 -m 0 python train.py       inter = intra = OMP_NUM_THREADS = 56
  2 sockets: horovodrun -np 2, one worker per socket            intra = cores - 2 = 54
             numactl -C 0-55,112-167 -m 0  /  numactl -C 56-111,168-223 -m 1
"""

from __future__ import annotations

import dataclasses
import shlex

from xeontl.errors import UserError
from xeontl.topology import Core, Topology, cpulist

# The paper's OpenMP settings, for every worker.
PAPER_KMP_ENV = {"KMP_SETTINGS": "1", "KMP_BLOCKTIME": "1", "KMP_AFFINITY": "granularity=fine,compact,1,0"}

# Launcher defaults that are not in the paper (they change speed, not the experiment); each says why.
MPI_ENV = {
    # An idle MPI rank busy-polls its progress engine; pinned to its socket it steals the cores TF needs.
    # Two 1-core ranks on the CI machine (`invoke bench`, medians of 3): scaling efficiency 0.67 busy-polling,
    # 0.953 yielding.
    "OMPI_MCA_mpi_yield_when_idle": "1",
    # Shared-memory transport without CMA/ptrace, so containers need no SYS_PTRACE.
    "OMPI_MCA_btl_vader_single_copy_mechanism": "none",
}

CONTAINER_RESULTS = "/results"
CONTAINER_RESUME = "/resume"  # `--resume RUN`: the interrupted run dir, mounted read-only


@dataclasses.dataclass(frozen=True)
class Worker:
    rank: int
    socket: int  # the socket (or emulated socket) it is pinned to
    cpus: tuple[int, ...]  # physical cores + siblings
    nodes: tuple[int, ...]
    cores: int  # physical cores
    intra: int
    inter: int
    # Multi-node: CPUs/nodes as positions in each host's own cpuset (numactl's '+' syntax), so one plan fits
    # hosts whose cpusets number CPUs differently; on a whole host the positions equal the CPU numbers.
    relative: tuple[tuple[int, ...], tuple[int, ...]] | None = None

    @property
    def numactl(self) -> list[str]:
        if self.relative:
            cpus, nodes = self.relative
            return ["numactl", "-C", "+" + cpulist(cpus), "-m", "+" + ",".join(map(str, nodes))]
        return ["numactl", "-C", cpulist(self.cpus), "-m", ",".join(map(str, self.nodes))]

    @property
    def env(self) -> dict[str, str]:
        return {"OMP_NUM_THREADS": str(self.intra), **PAPER_KMP_ENV,
                "XEONTL_INTRA_THREADS": str(self.intra), "XEONTL_INTER_THREADS": str(self.inter)}


@dataclasses.dataclass(frozen=True)
class Plan:
    sockets: int
    workers: tuple[Worker, ...]
    emulated: bool
    topology_source: str
    controller: str  # mpi | gloo
    notes: tuple[str, ...]
    hosts: tuple[str, ...] = ()  # multi-node: "host:slots", every host running this same per-socket layout

    @property
    def total_workers(self) -> int:
        return len(self.workers) * max(1, len(self.hosts))

    @property
    def horovod(self) -> bool:
        return self.total_workers > 1

    @property
    def cpus(self) -> list[int]:
        return sorted(c for w in self.workers for c in w.cpus)

    @property
    def nodes(self) -> list[int]:
        return sorted({n for w in self.workers for n in w.nodes})

    @property
    def env(self) -> dict[str, str]:
        """Env common to every worker (threads are the same on every socket)."""
        env = dict(self.workers[0].env)
        if self.horovod and self.controller == "mpi":
            env.update(MPI_ENV)
        if self.emulated:
            env["XEONTL_EMULATED_SOCKETS"] = str(self.sockets)
        return env

    def describe(self) -> str:
        lines = [f"plan: {self.sockets} socket(s), {len(self.workers)} worker(s) per host, topology {self.topology_source}"]
        if self.hosts:
            lines.append(f"hosts: {', '.join(self.hosts)} ({self.total_workers} workers; every host pinned as below)")
        if self.emulated:
            lines.append(f"EMULATED SOCKETS: {self.sockets} groups of {self.workers[0].cores} core(s) carved from "
                         f"fewer real sockets; figures are not comparable with the paper's")
        for w in self.workers:
            lines.append(f"  rank {w.rank}: socket {w.socket}, {w.cores} cores, {shlex.join(w.numactl)}, "
                         f"intra {w.intra}, inter {w.inter}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"sockets": self.sockets, "emulated": self.emulated, "hosts": list(self.hosts),
                "total_workers": self.total_workers, "topology_source": self.topology_source,
                "controller": self.controller, "horovod": self.horovod, "notes": list(self.notes),
                "env": self.env, "workers": [{**dataclasses.asdict(w), "numactl": shlex.join(w.numactl)}
                                             for w in self.workers]}


def _socket_groups(topo: Topology, sockets: int, emulate: bool) -> tuple[list[tuple[int, list[Core]]], bool]:
    real = topo.sockets()
    if not real:
        raise UserError("no usable CPU: the affinity mask / cgroup cpuset is empty")
    if sockets <= len(real):
        return [(s.id, list(s.cores)) for s in real[:sockets]], False
    if not emulate:
        raise UserError(f"--sockets {sockets} asked, but this host has {len(real)} usable socket(s) "
                        f"({topo.summary()['usable_cpus']}): use --sockets {len(real)}, or --emulate-sockets to split "
                        f"the usable cores into {sockets} equal groups")
    cores = [c for s in real for c in s.cores]
    per = len(cores) // sockets
    if per == 0:
        raise UserError(f"--emulate-sockets {sockets} needs at least {sockets} usable physical cores, "
                        f"found {len(cores)}")
    return [(i, cores[i * per:(i + 1) * per]) for i in range(sockets)], True


def parse_hosts(hosts: str, sockets: int) -> tuple[str, ...]:
    """'node1:1,node2:1' -> ('node1:1', 'node2:1'); each host's slots must equal the sockets used per host."""
    out = []
    for h in filter(None, hosts.split(",")):
        name, _, slots = h.partition(":")
        if not name or not slots.isdigit() or int(slots) != sockets:
            raise UserError(f"--hosts entry '{h}': expected HOST:{sockets} (one slot per socket used on each host)")
        out.append(f"{name}:{slots}")
    if not out:
        raise UserError("--hosts is empty: give HOST:SLOTS,HOST:SLOTS")
    return tuple(out)


def make_plan(topo: Topology, sockets: int, emulate: bool = False, cores_per_socket: int = 0,
              controller: str = "mpi", hosts: str = "") -> Plan:
    if sockets < 1:
        raise UserError(f"--sockets {sockets}: must be 1 or more (the paper ran 1 and 2)")
    if cores_per_socket < 0:
        raise UserError(f"--cores-per-socket {cores_per_socket}: must be >= 1 (or 0 for all)")
    if controller not in ("mpi", "gloo"):
        raise UserError(f"--controller {controller}: must be mpi (the paper's OpenMPI) or gloo")
    host_list = parse_hosts(hosts, sockets) if hosts else ()
    distributed = sockets * max(1, len(host_list)) > 1
    groups, emulated = _socket_groups(topo, sockets, emulate)
    notes = []
    workers = []
    for rank, (sock, cores) in enumerate(groups):
        if cores_per_socket:
            if cores_per_socket > len(cores):
                raise UserError(f"--cores-per-socket {cores_per_socket}: socket {sock} has only {len(cores)} usable cores")
            cores = cores[:cores_per_socket]
        n = len(cores)
        if not distributed:
            intra = inter = n  # the paper: inter = intra = OMP_NUM_THREADS = physical cores of the socket
        else:
            # The paper: intra = cores - 2, leaving two cores per socket for Horovod's and MPI's threads.
            intra, inter = max(n - 2, 1), n
            if n - 2 < 1 and rank == 0:
                notes.append(f"intra-op threads = cores - 2 would be {n - 2} on {n}-core sockets: clamped to 1")
        cpus, nodes = tuple(sorted(c for core in cores for c in core.cpus)), tuple(sorted({core.node for core in cores}))
        relative = None
        if host_list:
            usable = sorted(topo.allowed)
            usable_nodes = sorted({c.node for c in topo.cpus if c.cpu in topo.allowed})
            relative = (tuple(usable.index(c) for c in cpus), tuple(usable_nodes.index(n) for n in nodes))
        workers.append(Worker(rank, sock, cpus, nodes, n, intra, inter, relative))
    sizes = {w.cores for w in workers}
    if len(sizes) > 1:
        notes.append(f"sockets have unequal usable cores {[w.cores for w in workers]}: weak scaling is uneven")
    if distributed and controller == "mpi":
        notes.append("OMPI_MCA_mpi_yield_when_idle=1: idle MPI ranks yield their core instead of busy-polling "
                     "(launcher default, not in the paper)")
    return Plan(sockets, tuple(workers), emulated, topo.source, controller, tuple(notes), host_list)


def check_fits(plan: Plan, allowed: frozenset[int]) -> None:
    """The plan's CPUs must all be usable here (a container's cpuset may be smaller than the host)."""
    missing = sorted(set(plan.cpus) - set(allowed))
    if missing:
        raise UserError(f"the plan needs CPUs {cpulist(missing)} that this process may not use (usable: "
                        f"{cpulist(allowed)}): widen the cpuset, or plan for this machine without --topology")


# ------------------------------------------------------------------------------------------------------- commands
def train_command(train_args: list[str]) -> list[str]:
    return ["python", "-m", "xeontl", "train", *train_args]


def rank_wrapper(plan: Plan, command: list[str]) -> list[str]:
    """Each rank execs its own socket's numactl, picked by its local rank (MPI's or Gloo's variable)."""
    cases = " ".join(f"{w.rank}) exec {shlex.join(w.numactl)} \"$@\";;" for w in plan.workers)
    script = (f'case "${{OMPI_COMM_WORLD_LOCAL_RANK:-$HOROVOD_LOCAL_RANK}}" in {cases} '
              f'*) echo "xeontl: no CPUs planned for local rank" >&2; exit 1;; esac')
    return ["sh", "-c", script, "xeontl-rank", *command]


def launch_command(plan: Plan, train_args: list[str]) -> list[str]:
    """The command that runs the whole job on this host, or across the plan's hosts (multi-node layout)."""
    cmd = train_command(train_args)
    if not plan.horovod:
        return [*plan.workers[0].numactl, *cmd]
    n = plan.total_workers
    hosts = ",".join(plan.hosts) or f"localhost:{n}"
    return ["horovodrun", "-np", str(n), "-H", hosts, f"--{plan.controller}",
            # horovodrun's default MPI binding, stated: no MPI binding, so it cannot fight numactl's.
            *(["--binding-args=-bind-to none -map-by slot"] if plan.controller == "mpi" else []),
            *rank_wrapper(plan, cmd)]


def docker_command(plan: Plan, image: str, command: list[str], results_host_dir: str | None, user: str,
                   name: str | None = None, shm_size: str = "2g", resume_host_dir: str | None = None,
                   extra_env: dict | None = None) -> list[str]:
    """docker run with the plan's cpuset and memory nodes; only SYS_NICE (numactl -m needs it), never --privileged."""
    env = {**plan.env, **(extra_env or {})}
    return ["docker", "run", "--rm", *(["--name", name] if name else []),
            f"--cpuset-cpus={cpulist(plan.cpus)}", f"--cpuset-mems={','.join(map(str, plan.nodes))}",
            "--cap-add", "SYS_NICE", f"--shm-size={shm_size}", "--user", user,
            "-e", "HOME=/tmp", *[a for k, v in env.items() for a in ("-e", f"{k}={v}")],
            *(["-v", f"{results_host_dir}:{CONTAINER_RESULTS}"] if results_host_dir else []),
            *(["-v", f"{resume_host_dir}:{CONTAINER_RESUME}:ro"] if resume_host_dir else []), image, *command]


def render_env(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
