"""Each rank of a run against its plan and its own CPU, from what the run recorded (metrics.json's ranks, plan.json,
provenance.json): the setup record's `health` dimension (records/setup.py) and what the verdict's health check reads
(records/reference.py). Every rank: its CPUs, memory nodes and threads; ranks sharing a CPU; workers other than
planned; its CPU (on several nodes each rank's own); its math, every convolution on its own CPU's best BF16 unit for a
BF16 run, none on BF16 operands for an FP32 one. Unknown is never healthy."""

from __future__ import annotations

from datetime import datetime, timezone

from xeontl.experiment import runtime
from xeontl.placement import topology
from xeontl.records import onednn


def workers_of(run: dict) -> list[dict]:
    """The plan's workers (every node runs the same layout)."""
    return run["plan"].get("workers") or []


def _node_of(numa_nodes: dict | None) -> dict[int, int] | None:
    """CPU -> its NUMA node, from a record's node -> CPUs map; None where none is recorded."""
    if not numa_nodes:
        return None
    return {c: int(n) for n, cpus in numa_nodes.items() for c in topology.parse_cpulist(cpus)}


def _allowed(r: dict) -> tuple[list[int], list[int] | None, dict[int, int]] | None:
    """What a scheduler's rank's positions index (numactl's '+': the CPUs and memory nodes its shell was allowed) and
    its machine's NUMA nodes, as the rank recorded them (plan.rank_wrapper, provenance.rank_place). None: not recorded
    (unknown). Never rank 0's provenance: its probe ran under rank 0's numactl, on rank 0's node, in rank 0's pod."""
    node_of = _node_of(r.get("numa_nodes"))
    if not r.get("allowed_cpus") or node_of is None:
        return None
    mems = sorted(topology.parse_cpulist(r["allowed_mems"])) if r.get("allowed_mems") else None
    return sorted(topology.parse_cpulist(r["allowed_cpus"])), mems, node_of


def _layouts(run: dict) -> list[str]:
    """One machine has one NUMA layout: the ranks of one machine (by _machine) and the provenance (rank 0's, by its
    boot) agree on its NUMA nodes and nodes with memory, and no CPU is on two nodes; else the record is inconsistent
    (the fifteenth round: a pod's map swapped put two pods "on two nodes" of one)."""
    out, seen = [], {}
    host = run["provenance"].get("host") or {}
    topo = host.get("topology") or {}
    if host.get("boot") and topo.get("numa_nodes"):
        seen[("boot", host["boot"])] = ("the provenance", _layout(topo["numa_nodes"], topo.get("memory_nodes")))
    for r in run["metrics"].get("ranks") or []:
        if not r.get("numa_nodes"):
            continue
        mems = topology.parse_cpulist(r["nodes_with_memory"]) if r.get("nodes_with_memory") else None
        mine = _layout(r["numa_nodes"], mems)
        per_node = [cpus for _, cpus in mine[0]]  # each node's CPUs, parsed once
        if sum(map(len, per_node)) != len(frozenset().union(*per_node)):
            out.append(f"record inconsistent: rank {r['rank']} recorded a CPU on two NUMA nodes")
            continue
        first = seen.setdefault(_machine(r), (f"rank {r['rank']}", mine))
        # the nodes with memory where both recorded them (d361dc1's ranks and some provenances did not: unknown is
        # compared with nothing, the maps still are)
        differ = first[1][0] != mine[0] or None not in (first[1][1], mine[1]) and first[1][1] != mine[1]
        if differ and first[0] != f"rank {r['rank']}":
            out.append(f"record inconsistent: {first[0]} and rank {r['rank']} recorded one machine's NUMA nodes "
                       f"differently")
    return out


def _layout(numa_nodes: dict, memory) -> tuple:
    return (frozenset((str(n), frozenset(topology.parse_cpulist(c))) for n, c in numa_nodes.items()),
            None if memory is None else frozenset(memory))


def _machine(r: dict) -> tuple:
    """Which machine a rank ran on: the boot it recorded (pods and Slurm nodes of one machine share it), else its host
    and Slurm node."""
    boot = (r.get("cpu") or {}).get("boot")
    return ("boot", boot) if boot else ("place", _place(r))


def _placement(r: dict, w: dict, run: dict, held: dict) -> list[str] | None:
    """RANK against its plan WORKER: the CPUs and memory nodes it ran on. An absolute plan (docker, native): its
    CPUs. A scheduler's (Slurm, --hosts): the CPUs its positions name in what its own shell was allowed (_allowed).
    Kubernetes (the kubelet pins, every pod alike): a socket's count of CPUs, on one NUMA node of its machine (by its
    boot: none recorded, unknown), none another rank of that machine holds (HELD: (machine, node) -> rank), its
    cpuset's memory there. Memory bound by numactl -m: _bound. None: not recorded enough to tell."""
    rank, got = r["rank"], set(r.get("affinity") or [])
    if not got:
        return None
    out: list[str] = []
    if w.get("relative") is None:
        if got != set(w.get("cpus") or []):
            out.append(f"rank {rank} ran on CPUs {r.get('affinity')}, its plan gave it {w.get('cpus')}")
        node_of, want = None, set(w.get("nodes") or [])  # the plan names its nodes: remote memory is its layout's
    elif ((run["provenance"].get("execution") or {}).get("mode")) == "kubernetes":
        if r.get("allowed_cpus") or r.get("allowed_mems"):
            return [f"record inconsistent: rank {rank} recorded what a rank wrapper's shell was allowed, on Kubernetes "
                    f"(where its pod runs none)"]
        node_of = _node_of(r.get("numa_nodes"))
        if node_of is None or not (r.get("cpu") or {}).get("boot"):
            return None  # its machine's nodes, or which machine it was (pods have host names of their own): unknown
        if len(got) != len(w.get("cpus") or []):
            out.append(f"rank {rank} ran on {len(got)} CPUs, its pod's plan {len(w.get('cpus') or [])} (a socket's)")
        nodes = {node_of.get(c) for c in got}
        if None in nodes or len(nodes) != 1:
            return out + [f"rank {rank} ran on CPUs of memory nodes {sorted(nodes, key=str)}: not one NUMA node's"]
        node = nodes.pop()
        other = held.setdefault((_machine(r), node), rank)
        if other != rank:
            out.append(f"ranks {other} and {rank} ran on one NUMA node ({node}) of one machine: a worker a socket")
        mems = r.get("memory_nodes")  # the kubelet's Memory Manager sets the pod's cpuset.mems (no numactl)
        if w.get("nodes") and mems is None:
            out.append(f"rank {rank}: memory nodes not recorded")
        elif w.get("nodes") and topology.parse_cpulist(mems) != {node}:
            out.append(f"rank {rank} allocated from memory nodes {mems}, its CPUs' node is {node}")
        return out
    else:
        lists = _allowed(r)
        if lists is None:
            return None
        usable, allowed_mems, node_of = lists
        positions, mem_positions = w["relative"]
        if any(p >= len(usable) for p in positions):
            return [f"rank {rank}: its plan's CPU positions {positions} exceed the {len(usable)} CPUs it was allowed"]
        named = {usable[p] for p in positions}
        if len(got) != len(named):
            out.append(f"rank {rank} ran on {len(got)} CPUs, its plan gave it {len(named)}")
        elif got != named:
            out.append(f"rank {rank} ran on CPUs {topology.cpulist(got)}, its plan's positions name "
                       f"{topology.cpulist(named)}")
        ran, planned = {node_of.get(c) for c in got}, {node_of.get(c) for c in named}
        if w.get("nodes") and None not in ran and len(ran) != len(w["nodes"]):  # a plan for another numbering
            out.append(f"rank {rank} ran on CPUs of {len(ran)} memory nodes, its plan's socket has "
                       f"{len(w['nodes'])}")
        elif None in ran or ran != planned:
            out.append(f"rank {rank} ran on CPUs of memory nodes {sorted(ran, key=str)}, its plan's positions fall "
                       f"on {sorted(planned, key=str)}")
        if w.get("nodes") and allowed_mems is None:
            return None  # its memory nodes' positions cannot be read: unknown
        if any(p >= len(allowed_mems or []) for p in mem_positions):
            return out + [f"rank {rank}: its plan's memory node positions {mem_positions} exceed the "
                          f"{len(allowed_mems or [])} it was allowed"]
        want = {allowed_mems[p] for p in mem_positions}
    if not w.get("nodes"):  # no memory node of its socket's own: nothing bound (the plan says so)
        return out
    # a scheduler's '-m +N' may fall on another node than its CPUs' (a cgroup's mems shifting the positions)
    bound = _bound(r, want, None if node_of is None else {node_of.get(c) for c in got}, _memory_of(r, run))
    return None if bound is None else out + bound


def _bound(r: dict, want: set, cpu_nodes: set | None, memory: set | None) -> list[str] | None:
    """numactl -m: the rank's memory policy binds it to WANT, nodes of the CPUs it ran on (CPU_NODES). A rank that
    recorded no policy (before ranks did; a seccomp profile refusing the call): on a machine with one memory node
    (MEMORY: its nodes with memory) every allocation is on it; anywhere else unknown (None). Its Mems_allowed_list
    (memory_nodes) is its cpuset's, which numactl never changes: not read here."""
    rank, policy = r["rank"], r.get("memory_policy")
    if policy is None:
        return [] if memory is not None and len(memory) == 1 and want == memory else None
    nodes = topology.parse_cpulist(policy.get("nodes") or "")
    if policy.get("mode") != "bind" or nodes != want:
        return [f"rank {rank}'s memory policy is {policy.get('mode')} {policy.get('nodes') or ''}".rstrip()
                + f", its plan bound it to {sorted(want)}"]
    if cpu_nodes is not None and not want <= cpu_nodes:
        return [f"rank {rank}'s memory is bound to nodes {sorted(want)}, its CPUs are on {sorted(cpu_nodes, key=str)} "
                f"(remote memory)"]
    return []


def _memory_of(r: dict, run: dict) -> set | None:
    """The nodes with memory of RANK's machine: its own record's; before ranks recorded them, the provenance's host's
    for a rank on it; None: unknown."""
    if "nodes_with_memory" in r:
        return topology.parse_cpulist(r["nodes_with_memory"]) if r["nodes_with_memory"] else None
    mems = ((run["provenance"].get("host") or {}).get("topology") or {}).get("memory_nodes")
    return set(mems) if mems is not None and on_rank0s_machine(run, r["rank"]) else None


def health(run: dict) -> list[str] | None:
    """What the run's own record says went wrong, every rank against its plan: its CPUs, its memory nodes, its
    threads; ranks sharing a CPU; workers other than planned; BF16 oneDNN did not run natively where the CPU can.
    [] for a healthy run; None when the run recorded no ranks, or a scheduler's rank cannot be checked against its
    plan's positions (unknown)."""
    m, plan, prov = run["metrics"], run["plan"], run["provenance"]
    ranks, workers = m.get("ranks") or [], workers_of(run)
    if not ranks or not workers:
        return None
    out = []
    if m.get("status") != "success":
        out.append(f"status {m.get('status')}")
    if len(m.get("per_epoch") or []) != m.get("epochs_run"):
        out.append(f"record inconsistent: {len(m.get('per_epoch') or [])} per-epoch row(s), epochs_run "
                   f"{m.get('epochs_run')}")
    planned = plan.get("total_workers") or len(workers)
    if len(ranks) != planned:
        out.append(f"{len(ranks)} rank(s) ran, the plan had {planned}")
    if any(type(r.get("rank")) is not int for r in ranks):  # 1.0 passes the schema's "integer"; no writer writes it
        return out + [f"record inconsistent: rank ids {[r.get('rank') for r in ranks]} are not all integers"]
    # machines by the boot each rank recorded (Kubernetes pods have a host name each: the thirteenth round), else by
    # host and Slurm node
    hosts = len({(r.get("cpu") or {}).get("boot") or (r.get("host"), r.get("node")) for r in ranks})
    if hosts > max(plan.get("node_count") or 1, len(plan.get("hosts") or [])):
        out.append(f"the ranks ran on {hosts} nodes, the plan had {plan.get('node_count') or 1}")
    owner: dict[tuple, int] = {}
    held: dict[tuple, int] = {}
    out += _layouts(run)
    ids = [r["rank"] for r in ranks]
    if len(set(ids)) != len(ids):  # one rank's record twice: judged by one of them, the other rank's missing
        out.append(f"record inconsistent: ranks {sorted(ids)} (a rank recorded twice)")
    cpus = rank_cpus(run)
    # one machine has one CPU: the records of one boot, and those of one host and Slurm node (the provenance's: rank
    # 0's), agree on it and its flags, or one of them was not written by the code (a record hiding a unit another
    # shows; a rank on rank 0's host naming another boot, or none: the twelfth round)
    host = host_cpu(run)
    seen: dict = {}
    if host is not None:  # the provenance's machine: its boot, and rank 0's (first record's) host and node
        for where in ([("boot", host["boot"])] if host.get("boot") else []) + [
                ("place", _place(r)) for r in ranks if r["rank"] == 0][:1]:
            seen[where] = ("the provenance", cpu_record(host))
    judged: set[int] = set()
    for r in ranks:
        if r["rank"] in judged:  # a rank recorded twice: said above, not judged twice
            continue
        judged.add(r["rank"])
        cpu = r.get("cpu") if isinstance(r.get("cpu"), dict) else None
        if cpus.get(r["rank"]) is None:
            out.append(f"rank {r['rank']}: its CPU not recorded (the code that wrote the run records every rank's)")
        for where in ([("boot", cpu["boot"])] if cpu and cpu.get("boot") else []) + ([("place", _place(r))] if cpu
                                                                                     else []):
            first = seen.setdefault(where, (f"rank {r['rank']}", cpu_record(cpu)))
            if first[1] != cpu_record(cpu):
                out.append(f"record inconsistent: {first[0]} and rank {r['rank']} recorded one machine ("
                           f"{'boot ' + str(where[1]) if where[0] == 'boot' else 'host ' + str(where[1][0])}) with "
                           f"different CPUs")
                break
        w = workers[r["rank"] % len(workers)] if r["rank"] < planned else None  # every node runs the same layout
        if w is None:
            out.append(f"rank {r['rank']} is not in the plan")
            continue
        said = _placement(r, w, run, held)
        if said is None:
            return None  # where it ran cannot be checked against its plan from what the run recorded: unknown
        out.extend(said)
        threads = r.get("threads") or (m.get("threads") if r["rank"] == 0 else None)
        if threads is None:
            out.append(f"rank {r['rank']}: threads not recorded")
        else:
            for key, want in (("intra_op", w.get("intra")), ("inter_op", w.get("inter")),
                              ("omp_num_threads", str(w.get("intra")))):
                if threads.get(key) != want:
                    out.append(f"rank {r['rank']} ran {key} = {threads.get(key)}, its plan {want}")
        for cpu in r.get("affinity") or []:  # one machine's CPU, by its boot (two Slurm nodes of one machine too)
            where = (_machine(r), cpu)
            if where in owner:
                out.append(f"ranks {owner[where]} and {r['rank']} share CPU {cpu}")
            owner[where] = r["rank"]
    ran = (m.get("precision") or {}).get("precision")
    if ran not in ("bf16", "fp32"):  # unknown is never healthy: whether BF16 ran natively cannot be checked
        out.append(f"precision not recorded ({ran!r}): whether BF16 ran natively cannot be checked")
    host = host or {}
    if cpus.get(0) is not None and cpu_identity(cpus[0]) != cpu_identity(host):
        out.append(f"record inconsistent: rank 0 recorded its CPU as {_cpu_words(cpus[0])}, the run's provenance (rank "
                   f"0's) as {_cpu_words(host)}")
    mp = prov.get("math_path") or {}
    if not tallied(run):  # recorded before runs tallied their own kernels: rank 0's side sample, BF16 runs only
        return out + (_sample_problems(mp, rank_flags(run, 0)) if ran == "bf16" else [])
    out += _math_problems("rank 0's training", mp if from_training(mp) else None, ran, rank_flags(run, 0))
    # every other rank's own kernels, as it tallied them: by name where the run's code keeps them (a rank's summary
    # names them: the same code wrote every rank's), else (recorded before 2026-12-07) the ISA most of them ran on
    keeps = any("convolution_kernels" in (r.get("math_path") or {}) for r in ranks) or started(run) >= KERNELS_SINCE
    # every other rank's summary by its rank, not by its place in the list (the eighth round: a list reversed skipped
    # rank 1); rank 0 by its whole tally above, its summary (a part of it) not read
    for r in ranks:
        if r["rank"] != 0:
            out += _math_problems(f"rank {r['rank']}", r.get("math_path"), ran, rank_flags(run, r["rank"]), keeps)
    return out


# Runs that started from this moment on tally their own kernels (experiment.dispatch, 673078e): a record of such a
# run without its tally is unknown, never judged as a run recorded before (which proved its math with a side sample)
TALLY_SINCE = "2026-12-06T23:00:00+00:00"
# ... and from this one on, every rank's summary names its convolution kernels (c9dc0cc): a later record without them
# is unknown, as one whose ranks' summaries name them while one does not
KERNELS_SINCE = "2026-12-07T06:20:00+00:00"


def from_training(mp: dict | None) -> bool:
    """Whether a math path is the training process's own tally by kind and operand types (experiment.dispatch), not a
    side sample's."""
    return (mp or {}).get("source") == "training" and "convolutions_bf16_share" in (mp or {})


# From this moment on every rank records the CPU it ran on (metrics.json ranks[].cpu, provenance.rank_cpu): a later
# record whose rank has none is unknown; in an earlier one every rank ran on the host its provenance records (every
# run committed before it ran on one machine)
RANK_CPU_SINCE = "2026-12-07T17:30:00+00:00"


def rank_cpus(run: dict) -> dict[int, dict | None]:
    """Each rank's CPU by its rank: its own record's; in a run from before RANK_CPU_SINCE none of whose ranks
    recorded one, the host's (provenance) for the ranks on rank 0's host and node, and no other; None: unknown (a
    record whose model, family or model is not known is no CPU). On several nodes each rank's math is judged by its
    own CPU's units, never by rank 0's node's (the adversary's eleventh round: a rank's record deleted was judged by
    rank 0's CPU)."""
    ranks = run["metrics"].get("ranks") or []
    host, r0 = host_cpu(run), [(r.get("host"), r.get("node")) for r in ranks if r["rank"] == 0]
    old = started(run) < RANK_CPU_SINCE and not any("cpu" in r for r in ranks)
    out = {}
    for r in ranks:
        cpu = r.get("cpu") if "cpu" in r else host if old and [(r.get("host"), r.get("node"))] == r0 else None
        out[r["rank"]] = cpu if cpu and None not in cpu_identity(cpu)[:3] else None
    return out


def host_cpu(run: dict) -> dict | None:
    """The CPU the run's provenance records (rank 0's host), with the boot it was read in; None: not recorded."""
    host = run["provenance"].get("host") or {}
    return {**host["cpu"], "boot": host.get("boot")} if host.get("cpu") else None


def cpu_identity(cpu: dict) -> tuple:
    """Which CPU of which machine: model name, family/model and the boot (a hash of the kernel's boot id)."""
    return cpu.get("model_name"), cpu.get("family"), cpu.get("model"), cpu.get("boot")


def cpu_record(cpu: dict) -> tuple:
    """What one machine's CPU records must agree on: its identity and its flags of note."""
    return (*cpu_identity(cpu), tuple(sorted((cpu.get("flags_of_note") or {}).items())))


def _cpu_words(cpu: dict) -> str:
    return f"{cpu.get('model_name')} (family {cpu.get('family')} model {cpu.get('model')}, boot {cpu.get('boot')})"


def rank_flags(run: dict, rank: int) -> set[str]:
    """The flags of RANK's CPU: its own record's, and where that is the run's host (rank 0's, whose provenance lists
    every flag) the host's too, so that one record edited cannot hide a unit the other shows; none where its CPU is
    unknown (health says so)."""
    cpu = rank_cpus(run).get(rank) or {}
    return _flags_of(cpu) | (cpu_flags(run) if cpu and on_rank0s_machine(run, rank) else set())


def _place(r: dict) -> tuple:
    return r.get("host"), r.get("node")


def on_rank0s_machine(run: dict, rank: int) -> bool:
    """Whether RANK ran on the machine the provenance (rank 0's) records: rank 0 itself, a rank on its host and
    node, or one whose CPU record names its boot (a known one: with no boot read, a rank on another node is another
    machine: the twelfth round)."""
    ranks = run["metrics"].get("ranks") or []
    r0 = [_place(r) for r in ranks if r["rank"] == 0]
    mine = [r for r in ranks if r["rank"] == rank]
    boot = (run["provenance"].get("host") or {}).get("boot")
    return rank == 0 or any(_place(r) in r0 or (boot and (r.get("cpu") or {}).get("boot") == boot) for r in mine)


def all_flags(run: dict) -> set[str]:
    """Every flag any rank's CPU has: a unit one rank's CPU has is the run's to use."""
    return cpu_flags(run).union(*(rank_flags(run, r["rank"]) for r in run["metrics"].get("ranks") or []))


def one_cpu(run: dict) -> bool:
    """Whether every rank ran on one CPU of rank 0's kind: its model, family/model and flags of note (the same model
    with AMX hidden on one node is another kind); False where a rank's is unknown."""
    cpus, host = rank_cpus(run), host_cpu(run) or {}
    return 0 in cpus and all(c is not None and _model_and_flags(c) == _model_and_flags(host) for c in cpus.values())


def _model_and_flags(cpu: dict) -> tuple:
    """A CPU record but its boot (which machine): what makes a kind."""
    return cpu_identity(cpu)[:3] + cpu_record(cpu)[4:]


def hardware_cpu(run: dict) -> str | None:
    """The CPU model the run ran on: the host's where every rank's is its model; each rank's where they differ (by
    model name, family and model: "AMD EPYC" names Zen 3, 4 and 5 alike); None where a rank's is unknown."""
    host = host_cpu(run) or {}
    cpus = rank_cpus(run)
    if any(c is None for c in cpus.values()):
        return None
    ids = {i: cpu_identity(c)[:3] for i, c in sorted(cpus.items())}
    if set(ids.values()) <= {cpu_identity(host)[:3]}:
        return host.get("model_name")
    return "; ".join(f"rank {i}: {n} (family {f} model {m})" for i, (n, f, m) in ids.items())


def cpu_flags(run: dict) -> set[str]:
    """The CPU's flags: a flag either record of them names (the raw list, flags_of_note), so that one record edited
    cannot hide a unit the other shows (the adversary's eighth round: flags_of_note's amx_bf16 set false beside the
    raw list's made 45 % of a rank's convolutions off AMX healthy)."""
    return _flags_of((run["provenance"].get("host") or {}).get("cpu") or {})


def _flags_of(cpu: dict) -> set[str]:
    """A CPU record's flags: its raw list's (the provenance's) and those its flags_of_note sets."""
    return set(cpu.get("flags") or []) | {f for f, on in (cpu.get("flags_of_note") or {}).items() if on}


def started(run: dict) -> str:
    """When the run started, UTC, ISO: the later of its record's start_utc and its run id's stamp (the launcher's UTC
    clock, YYYYMMDD-HHMMSS), so that an edited start_utc alone cannot date a record before a rule (the eighth round:
    moving start_utc before KERNELS_SINCE let a rank's kernels go unchecked); "9" where neither is recorded (later
    than every rule: unknown is judged by the newest)."""
    prov = run["provenance"]
    stamps = [str(t) for t in [(prov.get("timestamps") or {}).get("start_utc")] if t]
    try:  # the stamp launch.py writes (strftime("%Y%m%d-%H%M%S") of UTC), read back by its own format
        stamps.append(datetime.strptime(str(prov.get("run_id"))[:15], "%Y%m%d-%H%M%S")
                      .replace(tzinfo=timezone.utc).isoformat())
    except ValueError:  # a run id the launcher did not write: later than every rule (unknown is judged by the newest)
        if prov.get("run_id"):
            stamps.append("9")
    return max(stamps) if stamps else "9"


def tallied(run: dict) -> bool:
    """Whether the run is of the code whose ranks tally their own kernels (then each rank's record, rank 0's whole
    one in provenance, must be there): its record says so, or it started after they did."""
    prov = run["provenance"]
    return ((prov.get("math_path") or {}).get("source") == "training"
            or any("math_path" in r for r in run["metrics"].get("ranks") or [])
            or started(run) >= TALLY_SINCE)


def _sample_problems(mp: dict, flags: set[str]) -> list[str]:
    """A side sample's record (runs before TALLY_SINCE), for a BF16 run."""
    if not mp or mp.get("error") or not mp.get("isas_dispatched"):
        return [f"math path unknown: the run was to run BF16 and its math sample "
                f"{'failed: ' + str(mp['error']) if mp and mp.get('error') else 'is missing'}"]
    isas = mp["isas_dispatched"]
    if not mp.get("bf16_kernels_seen"):
        return ["ran bf16 but oneDNN dispatched no BF16 kernel"]
    if "amx_bf16" in flags and not mp.get("amx_used"):
        return [f"this CPU has AMX, oneDNN dispatched {isas}"]
    if "avx512_bf16" in flags and not any(i in onednn.BF16_UNIT for i in isas):
        return [f"this CPU has AVX512-BF16, oneDNN dispatched {isas} (BF16 emulated)"]
    return []


def _math_problems(who: str, mp: dict | None, ran: str | None, flags: set[str], keeps_kernels: bool = True
                   ) -> list[str]:
    """What WHO's tally of its convolutions (the backbone's math) says against the precision the run chose and the
    CPU's BF16 units: every convolution on BF16 operands for a BF16 run, none for an FP32 one, on the CPU's BF16 ISA."""
    if not mp or mp.get("error") or not mp.get("convolutions") or mp.get("convolutions_bf16_share") is None:
        why = (f"failed: {mp['error']}" if mp and mp.get("error") else "is missing" if not mp else
               f"names no convolution ({mp.get('unread_lines') or 0} execution line(s) it could not read)")
        return [f"math path unknown: {who}'s oneDNN record {why}"]
    share, isa = mp["convolutions_bf16_share"], mp.get("convolution_isa")
    kernels = onednn.convolution_kernels(mp)
    if kernels and onednn.kernel_isa(kernels) != isa:  # the ISA a summary states is its kernels' (the thirteenth round)
        return [f"record inconsistent: {who}'s convolutions are recorded as on {isa}, its kernels say "
                f"{onednn.kernel_isa(kernels)}"]
    if ran == "fp32":
        return [f"{who} ran fp32 but {share:.1%} of its convolutions ran on BF16 operands"] if share else []
    if share < 1:
        return [f"{who} ran bf16 but {1 - share:.1%} of its convolutions ran on FP32 operands"]
    if "amx_bf16" in flags and isa not in onednn.AMX_BF16:
        return [f"this CPU has AMX, {who}'s convolutions ran on {isa}"]
    if "avx512_bf16" in flags and isa not in onednn.BF16_UNIT:
        return [f"this CPU has AVX512-BF16, {who}'s convolutions ran on {isa} "
                + ("(BF16 emulated)" if isa in onednn.ISA_RANK else
                   "(an ISA not in oneDNN's list: no known BF16 unit)")]
    # every convolution on the CPU's best BF16 unit, not only most of them: on AMX where the CPU has it (a healthy
    # run on an AMX Xeon put all of its 26076 on AMX kernels, every rank: docs/paper-runs.md), on a BF16 unit where
    # it has AVX512-BF16 alone; each kernel by name (rank 0's whole tally in provenance.json, every rank's summary
    # since 2026-12-07)
    unit, unit_name = (onednn.AMX_BF16, "AMX") if "amx_bf16" in flags else (onednn.BF16_UNIT, "a BF16 unit")
    # a depthwise convolution has no AMX kernel: oneDNN runs it on jit_dw (src/cpu/x64/jit_uni_dw_convolution.hpp,
    # JIT_IMPL_NAME_HELPER("jit_dw:", isa, "")), BF16 natively on avx512_core_bf16 (the ninth round: a depthwise
    # backbone read as BF16 emulated on an AMX Xeon); a BF16 unit suffices for it
    off = {k: n for k, n in (kernels or {}).items()
           if onednn.isa_of(k) not in (onednn.BF16_UNIT if k.startswith("jit_dw:") else unit)}
    if kernels is None and keeps_kernels:
        return [f"math path unknown: {who}'s record names no convolution kernel (the code that wrote it records them): "
                f"whether every convolution ran on a BF16 unit cannot be checked"]
    if kernels is not None and sum(kernels.values()) != mp["convolutions"]:
        # the tally counts each execution once, by its kernel: its kernels add up to its convolutions, or it is not
        # a record the code wrote (a kernel left out would go unchecked)
        return [f"record inconsistent: {who}'s convolution kernels add up to {sum(kernels.values())}, its "
                f"convolutions to {mp['convolutions']}"]
    if flags & set(runtime.BF16_NATIVE) and off:
        return [f"this CPU has {unit_name}, {sum(off.values()) / sum(kernels.values()):.1%} of {who}'s convolutions "
                f"ran on kernels not known to use it ({', '.join(sorted(off))}: an ISA without one is BF16 emulated; "
                f"a kernel whose name gives no ISA is not known to be native)"]
    return []
