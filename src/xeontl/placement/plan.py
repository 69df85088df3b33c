"""Topology + sockets + options -> the exact plan: which CPUs and memory nodes each worker gets, its threads and env,
and each rank's own command. Pure: no I/O, so every decision is unit-tested on recorded topologies. The engines
(xeontl.engines) render their launch lines (docker run, mpirun or horovodrun, sbatch, the MPIJob's mpirun) around these.

The paper's runs, on its 2x56-core SPR host with HT:
  1 socket : numactl -C 0-55,112-167 -m 0 python train.py       inter = intra = OMP_NUM_THREADS = 56
  2 sockets: Horovod, mpirun -np 2, one worker per socket       intra = cores - 2 = 54
             numactl -C 0-55,112-167 -m 0  /  numactl -C 56-111,168-223 -m 1
"""

from __future__ import annotations

import dataclasses
import shlex

from xeontl.common.errors import UserError
from xeontl.placement.topology import Core, Topology, cpulist

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
    # A rank forks (the math-path sample, TFDS): Debian 11's libfabric, which OpenMPI 4.1.0 loads in the paper stack's
    # image, then aborts a non-root rank ("the libfabric EFA provider is operating in a condition that could result in
    # memory corruption ... set RDMAV_FORK_SAFE"; measured: signal 6 in every run as uid 1000, with or without
    # `-mca mtl ^ofi`, `btl ^ofi` or FI_PROVIDER=^efa). What it costs is slower RDMA memory registration, which
    # these ranks (shared memory, TCP) never do. Debian 12's libfabric does not abort; the variable is harmless there.
    "RDMAV_FORK_SAFE": "1",
}

# What a rank needs beyond a container's defaults: numactl -m sets a memory policy (set_mempolicy), which needs
# SYS_NICE. Nothing else, never privileged: every engine that runs the image adds these and only these.
CAPABILITIES = ("SYS_NICE",)

# The OpenMPI arguments of every Horovod launch, as horovodrun 0.28.1 renders them (horovod/runner/mpi_run.py): no MPI
# binding, so it cannot fight numactl's; the ob1 messaging layer, no InfiniBand verbs.
MPI_ARGS = ("-bind-to", "none", "-map-by", "slot", "-mca", "pml", "ob1", "-mca", "btl", "^openib")

# Every environment name the plan itself sets (Plan.env, Worker.env): the only names a launch's extra_env may set
# (a bench variant's), so a launch.json read back by --resume cannot export LD_PRELOAD, PATH or PYTHON* to the ranks.
ENV_NAMES = frozenset({*PAPER_KMP_ENV, *MPI_ENV, "XEONTL_EMULATED_SOCKETS", "OMP_NUM_THREADS"})

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
        """numactl for this rank; no -m when its socket has no memory node of its own (the kernel allocates)."""
        cpus, nodes, plus = (*self.relative, "+") if self.relative else (self.cpus, self.nodes, "")
        return ["numactl", "-C", plus + cpulist(cpus), *(["-m", plus + ",".join(map(str, nodes))] if nodes else [])]

    @property
    def env(self) -> dict[str, str]:
        """This rank's own env: its OpenMP pool is its own intra-op thread count (sockets may differ)."""
        return {"OMP_NUM_THREADS": str(self.intra)}


@dataclasses.dataclass(frozen=True)
class Plan:
    sockets: int
    workers: tuple[Worker, ...]
    emulated: bool
    topology_source: str
    controller: str  # mpi | gloo
    notes: tuple[str, ...]
    hosts: tuple[str, ...] = ()  # multi-node: "host:slots", every host running this same per-socket layout
    node_count: int = 1  # nodes a scheduler (Slurm, Kubernetes) gives the job, each running this same layout

    @property
    def total_workers(self) -> int:
        return len(self.workers) * max(1, len(self.hosts), self.node_count)

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
        """Env common to every worker; each rank's thread count is in its own command line (Worker.env)."""
        env = dict(PAPER_KMP_ENV)
        if self.horovod and self.controller == "mpi":
            env.update(MPI_ENV)
        if self.emulated:
            env["XEONTL_EMULATED_SOCKETS"] = str(self.sockets)
        return env

    def describe(self) -> str:
        lines = [f"plan: {self.sockets} socket(s), {len(self.workers)} worker(s) per host, "
                 f"topology {self.topology_source}"]
        if self.hosts:
            lines.append(f"hosts: {', '.join(self.hosts)} ({self.total_workers} workers; every host pinned as below)")
        if self.node_count > 1:
            lines.append(f"nodes: {self.node_count} ({self.total_workers} workers; every node pinned as below, by "
                         f"position in the node's cpuset)")
        if self.emulated:
            lines.append(f"EMULATED SOCKETS: {self.sockets} groups of {self.workers[0].cores} core(s) carved from "
                         f"fewer real sockets; figures are not comparable with the paper's")
        for w in self.workers:
            lines.append(f"  rank {w.rank}: socket {w.socket}, {w.cores} cores, CPUs {cpulist(w.cpus)}, memory nodes "
                         f"{','.join(map(str, w.nodes)) or 'none (local allocation)'}, OMP_NUM_THREADS {w.intra}, "
                         f"intra {w.intra}, inter {w.inter}: {shlex.join(w.numactl)}")
        lines += [f"  note: {n}" for n in self.notes]
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"sockets": self.sockets, "emulated": self.emulated, "hosts": list(self.hosts),
                "node_count": self.node_count,
                "total_workers": self.total_workers, "topology_source": self.topology_source,
                "controller": self.controller, "horovod": self.horovod, "notes": list(self.notes),
                "env": self.env, "workers": [{**dataclasses.asdict(w), "numactl": shlex.join(w.numactl)}
                                             for w in self.workers]}


def _socket_groups(topo: Topology, sockets: int, emulate: bool | str) -> tuple[list[tuple[int, list[Core]]], bool]:
    real = topo.sockets()
    if not real:
        raise UserError("no usable CPU: the affinity mask / cgroup cpuset is empty")
    if emulate == "auto":  # emulate only where the host has too few sockets
        emulate = sockets > len(real)
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


def make_plan(topo: Topology, sockets: int, emulate: bool | str = False, cores_per_socket: int = 0,
              controller: str = "mpi", hosts: str = "", node_count: int = 1, relative: bool = False) -> Plan:
    """emulate: True, False, or "auto" (split the cores into `sockets` groups only if the host has fewer).
    node_count / relative: a scheduler's job (Slurm, Kubernetes) on nodes like `topo`; CPUs and memory nodes are then
    positions in the cpuset the job gets on each node (numactl's '+' syntax), as for --hosts."""
    if node_count < 1:
        raise UserError(f"--nodes {node_count}: must be 1 or more")
    if sockets < 1:
        raise UserError(f"--sockets {sockets}: must be 1 or more (the paper ran 1 and 2)")
    if cores_per_socket < 0:
        raise UserError(f"--cores-per-socket {cores_per_socket}: must be >= 1 (or 0 for all)")
    if controller not in ("mpi", "gloo"):
        raise UserError(f"--controller {controller}: must be mpi (the paper's OpenMPI) or gloo")
    host_list = parse_hosts(hosts, sockets) if hosts else ()
    distributed = sockets * max(1, len(host_list), node_count) > 1
    groups, emulated = _socket_groups(topo, sockets, emulate)
    notes = list(topo.warnings)
    workers = []
    for rank, (sock, cores) in enumerate(groups):
        if cores_per_socket:
            if cores_per_socket > len(cores):
                raise UserError(f"--cores-per-socket {cores_per_socket}: socket {sock} has only {len(cores)} usable "
                                f"cores")
            cores = cores[:cores_per_socket]
        n = len(cores)
        if not distributed:
            intra = inter = n  # the paper: inter = intra = OMP_NUM_THREADS = physical cores of the socket
        else:
            # The paper: intra = cores - 2, leaving two cores per socket for Horovod's and MPI's threads.
            intra, inter = max(n - 2, 1), n
            if n - 2 < 1 and rank == 0:
                notes.append(f"intra-op threads = cores - 2 would be {n - 2} on {n}-core sockets: clamped to 1")
        cpus = tuple(sorted(c for core in cores for c in core.cpus))
        # The socket's own memory: the nodes of its cores that have memory. None of them (memory-less socket, or
        # no node named for its CPUs): no -m at all rather than a guessed node.
        nodes = tuple(sorted({core.node for core in cores if core.node is not None and topo.has_memory(core.node)}))
        if not nodes:
            notes.append(f"rank {rank}: socket {sock} has no memory node of its own: memory is not bound "
                         f"(no numactl -m; the kernel allocates from the nearest node)")
        positions = None
        if host_list or relative or node_count > 1:
            usable = sorted(topo.allowed)
            usable_nodes = sorted({c.node for c in topo.cpus if c.cpu in topo.allowed and c.node is not None})
            positions = (tuple(usable.index(c) for c in cpus), tuple(usable_nodes.index(n) for n in nodes))
        workers.append(Worker(rank, sock, cpus, nodes, n, intra, inter, positions))
    sizes = {w.cores for w in workers}
    if len(sizes) > 1:
        notes.append(f"sockets have unequal usable cores {[w.cores for w in workers]}: weak scaling is uneven")
    if distributed and controller == "mpi":
        notes.append("OMPI_MCA_mpi_yield_when_idle=1: idle MPI ranks yield their core instead of busy-polling "
                     "(launcher default, not in the paper)")
    return Plan(sockets, tuple(workers), emulated, topo.source, controller, tuple(notes), host_list, node_count)


def check_fits(plan: Plan, here: Topology) -> None:
    """Before anything is written or launched: every planned CPU online and usable by this process (a container's
    cpuset may be smaller than the host), every planned memory node online, with memory, and allowed."""
    online = {c.cpu for c in here.cpus}
    offline = sorted(set(plan.cpus) - online)
    if offline:
        raise UserError(f"the plan needs CPUs {cpulist(offline)}, which are offline or absent on this host (online: "
                        f"{cpulist(online)}): plan for this machine without --topology, or bring them online")
    missing = sorted(set(plan.cpus) - set(here.allowed))
    if missing:
        raise UserError(f"the plan needs CPUs {cpulist(missing)} that this process may not use (usable: "
                        f"{cpulist(here.allowed)}): widen the cpuset, or plan for this machine without --topology")
    named = {c.node for c in here.cpus if c.node is not None}
    for node in plan.nodes:
        if here.memory_nodes is not None and node not in here.memory_nodes:
            why = "has no memory" if node in named else "is offline or absent"
            raise UserError(f"the plan binds memory to NUMA node {node}, which {why} on this host (nodes with "
                            f"memory: {cpulist(here.memory_nodes) or 'none'}): plan for this machine without "
                            f"--topology")
        if here.mems_allowed is not None and node not in here.mems_allowed:
            raise UserError(f"the plan binds memory to NUMA node {node}, which this process may not use (allowed: "
                            f"{cpulist(here.mems_allowed)}): widen the cgroup's cpuset.mems, or plan without "
                            f"--topology")


# ------------------------------------------------------------------------------------------------------- commands
# Every command that runs in a worker's environment (the rank's own) is assembled here, and only here.
LOCAL_RANK = "${OMPI_COMM_WORLD_LOCAL_RANK:-${HOROVOD_LOCAL_RANK:-$SLURM_LOCALID}}"  # mpirun, gloo, srun


def worker_command(worker: Worker, args: list[str]) -> list[str]:
    """`python -m xeontl ARGS` as this worker: its OMP_NUM_THREADS, its CPUs and memory nodes."""
    return ["env", *[f"{k}={v}" for k, v in worker.env.items()], *worker.numactl, "python", "-m", "xeontl", *args]


def train_args(worker: Worker, config: str, output: str, resume_from: str | None = None,
               fault_after_epoch: int = 0) -> list[str]:
    """The rank's `train` arguments: the run's resolved config file (never re-resolved) and the plan's threads."""
    return ["train", "--config", config, "--output", output,
            "--intra-threads", str(worker.intra), "--inter-threads", str(worker.inter),
            *(["--resume-from", resume_from] if resume_from else []),
            *(["--fault-after-epoch", str(fault_after_epoch)] if fault_after_epoch else [])]


def measure_command(worker: Worker, what: str, precision: str, size: int, batch: int, repeats: int,
                    fold: bool = True) -> list[str]:
    """`xeontl measure` (the bench's compute probes) on one worker's cores with its thread count."""
    return worker_command(worker, ["measure", what, "--precision", precision, "--size", str(size),
                                   "--batch", str(batch), "--repeats", str(repeats), "--threads", str(worker.intra)]
                          + ["--no-fold"] * (not fold))


# The CPUs and memory nodes the rank's shell may use before numactl narrows them: what numactl's '+' positions index
# (libnuma reads them from the process's own status), recorded by the rank (metrics.json ranks[].allowed_cpus) so that
# each rank's positions are judged through its own node's and cgroup's lists, never rank 0's (records/ranks.py)
# (with the shell's PID, which the rank keeps through its execs: a value inherited by any other process is not its)
ALLOWED_ENV = {"Cpus_allowed_list:": "XEONTL_ALLOWED_CPUS", "Mems_allowed_list:": "XEONTL_ALLOWED_MEMS"}
ALLOWED_PID_ENV = "XEONTL_ALLOWED_PID"
_READ_ALLOWED = (" ".join(f"{v}=" for v in ALLOWED_ENV.values()) + "; while read -r k v; do case \"$k\" in "
                 + " ".join(f"{k}) {v}=$v;;" for k, v in ALLOWED_ENV.items())
                 + f" esac; done < /proc/self/status; {ALLOWED_PID_ENV}=$$; "
                 + f"export {' '.join(ALLOWED_ENV.values())} {ALLOWED_PID_ENV}; ")


def rank_wrapper(plan: Plan, rank_args) -> list[str]:
    """Each rank execs its own socket's command (CPUs, memory nodes, threads), picked by its local rank, with the CPUs
    and memory nodes its shell was allowed (ALLOWED_ENV) in its env. rank_args(worker) -> that rank's arguments."""
    if not plan.horovod:  # one plain process: no local rank to pick its command by
        only = plan.workers[0]
        return ["sh", "-c", f"{_READ_ALLOWED}exec {shlex.join(worker_command(only, rank_args(only)))}", "xeontl-rank"]
    cases = " ".join(f"{w.rank}) exec {shlex.join(worker_command(w, rank_args(w)))};;" for w in plan.workers)
    script = (f'{_READ_ALLOWED}case "{LOCAL_RANK}" in {cases} *) echo "xeontl: no CPUs planned for local rank" >&2; '
              f'exit 1;; esac')
    return ["sh", "-c", script, "xeontl-rank"]


def render_env(env: dict[str, str]) -> str:
    return "\n".join(f"export {k}={shlex.quote(v)}" for k, v in env.items())
