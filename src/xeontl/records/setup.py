"""One record of a run's setup, read from what ran (plan.json, provenance.json, metrics.json, and config.json as the
file every rank read), and the one comparison every verdict rests on.

`of_run(run)` reads each dimension of the setup: the data's identity, the weights' identity, every recipe field
(config.Field.recipe), the precision the training ran at, the worker layout (nodes, workers, sockets, cores and
threads per worker, memory nodes per rank), the CPU, its topology and the math path oneDNN dispatched, the software
stack, container or bare metal, the run's health (every rank against its plan) and whether it was resumed. A value it
cannot read is None: unknown.

`expected(protocol, role)` is the same record for the paper's (or Intel's kit's) run of that role, written once as
data in claims.toml ([setup.*], each value with the words it rests on); `compare(got, want, ignore)` lists every
dimension whose values are not equal, except the ones IGNORE names. Unknown is never equal. The report's "differs
from the paper" list and every claim's "not comparable" are both this list: one source."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

from xeontl.experiment import config, runtime
from xeontl.placement import topology
from xeontl.records import onednn

ROLES = ("1s", "2s", "1s_fp32", "2s_fp32")
# The order dimensions are read, compared and listed in (recipe.<field> for every recipe field but precision).
HEAD = ("data", "weights")
TAIL = ("precision", "resumed", "layout.nodes", "layout.workers", "layout.sockets", "layout.cores_per_worker",
        "layout.threads_per_worker", "layout.memory_nodes", "hardware.cpu", "hardware.topology", "hardware.math_path",
        "software", "execution", "health")


def recipe_fields() -> list[str]:
    return [k for k, f in config.FIELDS.items() if f.recipe and k != "precision"]


def dimensions() -> list[str]:
    return [*HEAD, *(f"recipe.{k}" for k in recipe_fields()), *TAIL]


# ------------------------------------------------------------------------------------------------ reading a run
def _short(h: str | None) -> str:
    return f"{h[:12]}…" if h else "none"


def _pinned_contents(pins: dict) -> list[str]:
    c = pins.get("content_sha256") or []
    return [c] if isinstance(c, str) else list(c)


def data(run: dict, pins: dict) -> dict | None:
    """The data's identity: examples per class, tile shape, the archive behind them (by its checked sha256, or
    recognised by a content digest pinned in [paper_data]) and how they were split into training and validation."""
    d = run["metrics"].get("dataset") or {}
    if d.get("name") == "synthetic":
        return {"source": "synthetic (generated tiles)", "generator": d.get("generator_version"),
                "train": d.get("train_size"), "val": d.get("val_size")}
    ident = d.get("identity")
    if not ident:
        return None
    archive = ident.get("archive_sha256")
    if not archive and ident.get("content_sha256") in _pinned_contents(pins):
        archive = pins["archive_sha256"]  # recognised by the content of its decoded tiles
    # the order the split fields (recipe) cut, as the loader checked and recorded it (data.load_tfds, load_folder)
    split = d.get("split") or "unrecorded"
    return {"examples_per_class": ident.get("examples_per_class"), "tile_shape": ident.get("tile_shape"),
            "archive": archive or f"none checked (content {_short(ident.get('content_sha256'))}, not a pinned one"
                                  f"{': ' + ident['archive_unchecked'] if ident.get('archive_unchecked') else ''})",
            "split": split}


NOT_VERIFIED = "ImageNet training not verified (no pinned digest)"


def weights(run: dict, pins: dict) -> dict | None:
    """Pretrained on ImageNet (True only for a digest [paper_weights] sha256 pins; a saved file's kind without a pin:
    NOT_VERIFIED; random: False), and the architecture read from the weights themselves (provenance's field)."""
    w = run["provenance"].get("weights") or run["metrics"].get("weights") or {}
    if not w.get("kind"):
        return None
    pinned = pins.get("sha256") or []
    pinned = [pinned] if isinstance(pinned, str) else list(pinned)
    if w["kind"] not in pins["pretrained_kinds"]:
        pretrained: Any = False
    elif w.get("sha256") and w["sha256"] in pinned:
        pretrained = True
    else:  # deny by default: a file's kind is not its training ([paper_weights] sha256)
        pretrained = NOT_VERIFIED
    return {"pretrained": pretrained, "architecture": w.get("architecture")}


def recipe_value(run: dict, key: str) -> Any:
    """A recipe field as the run's config.json (the file every rank read) has it; a field recorded before it existed
    ran at its default."""
    cfg = run["config"]
    if not cfg:
        return None
    try:
        return config.coerce(key, cfg.get(key, config.FIELDS[key].default))
    except Exception:  # a value the config's own checks refuse: recorded as written, never equal to a checked one
        return cfg.get(key)


def _workers(run: dict) -> list[dict]:
    return run["plan"].get("workers") or []


def math_path(prov: dict) -> str | None:
    """The ISA of the run's math: the one its convolutions ran on (the training's tally), or for a run recorded
    before, the best one its side sample dispatched."""
    mp = prov.get("math_path") or {}
    if not mp or mp.get("error"):
        return None
    if mp.get("source") == "training":
        return mp.get("convolution_isa") if from_training(mp) else None
    isas = mp.get("isas_dispatched") or []
    return min(isas, key=lambda i: (onednn.isa_rank(i), i), default=None)


def software(prov: dict) -> str | None:
    s = prov.get("software") or {}
    dist = s.get("tensorflow_distribution") or {}
    if dist.get("name") and dist.get("version"):
        return f"{dist['name']} {dist['version']}"
    if s.get("intel_tensorflow"):  # recorded before the distribution was
        return f"intel-tensorflow {s['intel_tensorflow']}"
    return f"tensorflow {s['tensorflow']}" if s.get("tensorflow") else None


def execution(prov: dict) -> str | None:
    inside = (prov.get("execution") or {}).get("inside")
    if not inside:
        return None
    return f"container ({inside.get('container_runtime')})" if inside.get("in_container") else "bare metal"


def _memory_nodes(run: dict) -> list | None:
    ws = _workers(run)
    return [sorted(w.get("nodes") or []) for w in ws] if ws else None


def _node_of(topo: dict) -> dict[int, str] | None:
    nodes = topo.get("numa_nodes")
    if not nodes:
        return None
    return {c: n for n, cpus in nodes.items() for c in topology.parse_cpulist(cpus)}


def _relative_cpus(r: dict, w: dict, prov: dict) -> list[str] | None:
    """A scheduler's rank (plan positions in its host's cpuset) against what it ran on: the CPU count, and the memory
    nodes (sockets) its affinity falls on against the positions mapped through the host's recorded usable CPUs and
    NUMA nodes. None: the run did not record enough of its host to check (unknown, never healthy)."""
    topo = (prov.get("host") or {}).get("topology") or {}
    node_of = _node_of(topo)
    if not topo.get("usable_cpus") or node_of is None or not r.get("affinity"):
        return None
    usable = sorted(topology.parse_cpulist(topo["usable_cpus"]))
    positions = w["relative"][0]
    if any(p >= len(usable) for p in positions):
        return [f"rank {r['rank']}: its plan's CPU positions {positions} exceed the host's {len(usable)} usable CPUs"]
    out = []
    if len(r["affinity"]) != len(positions):
        out.append(f"rank {r['rank']} ran on {len(r['affinity'])} CPUs, its plan gave it {len(positions)}")
    got = {node_of.get(c) for c in r["affinity"]}
    want = {node_of.get(usable[p]) for p in positions}
    if None in got or got != want:
        out.append(f"rank {r['rank']} ran on CPUs of memory nodes {sorted(got, key=str)}, its plan's positions "
                   f"fall on {sorted(want, key=str)}")
    return out


def health(run: dict) -> list[str] | None:
    """What the run's own record says went wrong, every rank against its plan: its CPUs, its memory nodes, its
    threads; ranks sharing a CPU; workers other than planned; BF16 oneDNN did not run natively where the CPU can.
    [] for a healthy run; None when the run recorded no ranks, or a scheduler's rank cannot be checked against its
    plan's positions (unknown)."""
    m, plan, prov = run["metrics"], run["plan"], run["provenance"]
    ranks, workers = m.get("ranks") or [], _workers(run)
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
    hosts = len({(r.get("host"), r.get("node")) for r in ranks})
    if hosts > max(plan.get("node_count") or 1, len(plan.get("hosts") or [])):
        out.append(f"the ranks ran on {hosts} nodes, the plan had {plan.get('node_count') or 1}")
    owner: dict[tuple, int] = {}
    for r in ranks:
        w = workers[r["rank"] % len(workers)] if r["rank"] < planned else None  # every node runs the same layout
        if w is None:
            out.append(f"rank {r['rank']} is not in the plan")
            continue
        if w.get("relative") is None and sorted(r.get("affinity") or []) != sorted(w.get("cpus") or []):
            out.append(f"rank {r['rank']} ran on CPUs {r.get('affinity')}, its plan gave it {w.get('cpus')}")
        elif w.get("relative") is not None:
            said = _relative_cpus(r, w, prov)
            if said is None:
                return None  # the positions cannot be mapped through what the run recorded of its host: unknown
            out.extend(said)
        mems = r.get("memory_nodes")
        if w.get("nodes") and mems is not None and topology.parse_cpulist(mems) != set(w["nodes"]):
            out.append(f"rank {r['rank']} allocated from memory nodes {mems}, its plan gave it {w['nodes']}")
        elif w.get("nodes") and mems is None:
            out.append(f"rank {r['rank']}: memory nodes not recorded")
        threads = r.get("threads") or (m.get("threads") if r["rank"] == 0 else None)
        if threads is None:
            out.append(f"rank {r['rank']}: threads not recorded")
        else:
            for key, want in (("intra_op", w.get("intra")), ("inter_op", w.get("inter")),
                              ("omp_num_threads", str(w.get("intra")))):
                if threads.get(key) != want:
                    out.append(f"rank {r['rank']} ran {key} = {threads.get(key)}, its plan {want}")
        for cpu in r.get("affinity") or []:
            where = (r.get("host"), r.get("node"), cpu)
            if where in owner:
                out.append(f"ranks {owner[where]} and {r['rank']} share CPU {cpu}")
            owner[where] = r["rank"]
    ran = (m.get("precision") or {}).get("precision")
    if ran not in ("bf16", "fp32"):  # unknown is never healthy: whether BF16 ran natively cannot be checked
        out.append(f"precision not recorded ({ran!r}): whether BF16 ran natively cannot be checked")
    mp = prov.get("math_path") or {}
    flags = cpu_flags(run)
    if not tallied(run):  # recorded before runs tallied their own kernels: rank 0's side sample, BF16 runs only
        return out + (_sample_problems(mp, flags) if ran == "bf16" else [])
    out += _math_problems("rank 0's training", mp if from_training(mp) else None, ran, flags)
    # every other rank's own kernels, as it tallied them: by name where the run's code keeps them (a rank's summary
    # names them: the same code wrote every rank's), else (recorded before 2026-12-07) the ISA most of them ran on
    keeps = any("convolution_kernels" in (r.get("math_path") or {}) for r in ranks) or started(run) >= KERNELS_SINCE
    # every other rank's summary by its rank, not by its place in the list (the eighth round: a list reversed skipped
    # rank 1); rank 0 by its whole tally above, its summary (a part of it) not read
    for r in ranks:
        if r["rank"] != 0:
            out += _math_problems(f"rank {r['rank']}", r.get("math_path"), ran, flags, keeps)
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


def cpu_flags(run: dict) -> set[str]:
    """The CPU's flags: a flag either record of them names (the raw list, flags_of_note), so that one record edited
    cannot hide a unit the other shows (the adversary's eighth round: flags_of_note's amx_bf16 set false beside the
    raw list's made 45 % of a rank's convolutions off AMX healthy)."""
    cpu = (run["provenance"].get("host") or {}).get("cpu") or {}
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
    except ValueError:
        pass
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
    kernels = onednn.convolution_kernels(mp)
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


def precision(run: dict) -> str | None:
    """The precision the training ran at, from rank 0's convolutions: BF16 when every one ran on BF16 operands, FP32
    when none did, "mixed" otherwise; None when its tally has no convolution. A run recorded before runs tallied
    their kernels (a side sample's record): the precision it chose."""
    chosen = (run["metrics"].get("precision") or {}).get("precision")
    mp = run["provenance"].get("math_path") or {}
    if not tallied(run):
        return chosen
    if not from_training(mp) or mp.get("error") or not mp.get("convolutions"):
        return None
    share = mp["convolutions_bf16_share"]
    return "bf16" if share == 1 else "fp32" if share == 0 else f"mixed ({share:.1%} of the convolutions on BF16)"


def of_run(run: dict, pins: dict) -> dict[str, Any]:
    """Every dimension of RUN's setup (None: not recorded). PINS: the claims table (its [paper_data] and
    [paper_weights] say what counts as the paper's data and pretrained weights)."""
    m, plan, prov = run["metrics"], run["plan"], run["provenance"]
    host = prov.get("host") or {}
    topo = host.get("topology") or {}
    ws = _workers(run)
    rec: dict[str, Any] = {"data": data(run, pins["paper_data"]), "weights": weights(run, pins["paper_weights"])}
    for k in recipe_fields():
        rec[f"recipe.{k}"] = recipe_value(run, k)
    rec.update({
        "precision": precision(run),
        # null: not resumed; a resume record: resumed; {} or absent: unknown (never "not resumed")
        "resumed": (False if m["resumed_from"] is None else True if m["resumed_from"] else None)
        if "resumed_from" in m else None,
        "layout.nodes": (max(plan.get("node_count") or 0, len(plan.get("hosts") or [])) or None) if plan else None,
        "layout.workers": m.get("workers"),
        "layout.sockets": {"sockets": plan["sockets"], "emulated": bool(plan.get("emulated"))}
        if "sockets" in plan else None,
        "layout.cores_per_worker": [{"cores": w.get("cores"), "cpus": len(w.get("cpus") or [])} for w in ws] or None,
        "layout.threads_per_worker": [{"intra": w.get("intra"), "inter": w.get("inter")} for w in ws] or None,
        "layout.memory_nodes": _memory_nodes(run),
        "hardware.cpu": (host.get("cpu") or {}).get("model_name"),
        "hardware.topology": {"sockets": topo.get("sockets"), "cores_per_socket": topo.get("cores_per_socket"),
                              "threads_per_core": topo.get("threads_per_core")} if topo.get("sockets") else None,
        "hardware.math_path": math_path(prov),
        "software": software(prov),
        "execution": execution(prov),
        "health": health(run),
    })
    return rec


# ------------------------------------------------------------------------------------------------ the paper's record
def expected(tab: dict, protocol: str, role: str) -> dict[str, dict]:
    """The paper's (protocol "paper") or the kit's ("kit") run of ROLE, dimension -> {value, words, source}: the
    table's [setup.<protocol>] (its `common` entries, then the role's), the data and weights of [paper_data] and
    [paper_weights], every recipe field from the protocol's profile (configs/<protocol>.toml: each value beside the
    words it comes from; a value the profile reads two ways, either)."""
    st = tab["setup"][protocol]
    base = role.removesuffix("_fp32")
    out: dict[str, dict] = {}
    if st.get("inherit"):  # the kit: the paper's setup, its own recipe and words
        out = {k: v for k, v in expected(tab, st["inherit"], role).items() if not k.startswith("recipe.")}
    pins = tab["paper_data"]
    out["data"] = {"value": {"examples_per_class": pins["examples_per_class"], "tile_shape": pins["tile_shape"],
                             "archive": pins["archive_sha256"], "split": "TFDS's record order"},
                   **st["data_words"]}
    out["weights"] = {"value": {"pretrained": True, "architecture": tab["paper_weights"]["architecture"]},
                      **st["weights_words"]}
    want, known = config.resolve(protocol), config.readings(protocol)
    for k in recipe_fields():
        accepted = sorted(set(known.get(k, {}).values()) | {want[k]}, key=str)
        out[f"recipe.{k}"] = {"value": want[k], "one_of": accepted if len(accepted) > 1 else None,
                              "words": f"configs/{protocol}.toml: {k} = {want[k]!r}", "source": protocol}
    for section in ("common", base, role):
        for dim, entry in (st.get(section) or {}).items():
            out[dim] = dict(entry)
    return out


def equal(dim: str, got: Any, want: dict) -> bool:
    if got is None:
        return False  # unknown is never equal
    if want.get("one_of"):
        return got in want["one_of"]
    return got == want["value"]


def compare(got: dict, want: dict, ignore: dict | None = None) -> list[dict]:
    """Every dimension of WANT whose value GOT does not equal (None: not recorded), but those IGNORE names; and every
    dimension GOT lacks a paper value for (the paper's record must say every dimension)."""
    ignore = ignore or {}
    out = []
    for dim in dimensions():
        if dim in ignore:
            continue
        if dim not in want:
            out.append({"dimension": dim, "got": got.get(dim), "want": None, "words": "the paper's record lacks it"})
        elif not equal(dim, got.get(dim), want[dim]):
            out.append({"dimension": dim, "got": got.get(dim), "want": want[dim]["value"],
                        "words": want[dim].get("words"), "whose": want[dim].get("source")})
    return out


def _fmt(v: Any) -> str:
    if isinstance(v, dict):
        return ", ".join(f"{k} {_fmt(x)}" for k, x in v.items())
    if isinstance(v, list) and v and isinstance(v[0], dict):
        return "; ".join(f"rank {i}: {_fmt(x)}" for i, x in enumerate(v))
    return "none" if v == [] else str(v)


def phrase(d: dict, run: dict | None = None) -> str:
    """One unequal dimension in plain words: what the run had, what the paper's had."""
    dim, got, want = d["dimension"], d["got"], d["want"]
    if d.get("whose") == "kit":  # the kit's recipe (its other dimensions are the paper's)
        return f"{dim}: {got!r} (the kit's: {want!r})"
    if got is None:
        return f"{dim}: not recorded (the paper's: {_fmt(want)})"
    if dim == "health":
        return f"health: {'; '.join(got)}"
    if dim == "precision" and got == "fp32" and want == "bf16" and run is not None:
        if not cpu_flags(run) & set(runtime.BF16_NATIVE):
            return "precision: ran FP32 (no BF16 on this CPU; the paper's: BF16)"
        return "precision: ran FP32 (the paper's: BF16)"
    if dim == "software":  # on a CPU without AVX-512 (recorded so) the paper's release cannot run: said with it
        flags = (((run or {}).get("provenance", {}).get("host") or {}).get("cpu") or {}).get("flags_of_note") or {}
        needs = ", on a CPU with AVX-512, which this one lacks (avx512f)" if flags.get("avx512f") is False else ""
        return f"software: {got} (the paper's: {want}; `--stack paper` runs the paper's release{needs})"
    if dim.startswith("recipe."):
        return f"{dim}: {got!r} (the paper's: {want!r})"
    return f"{dim}: {_fmt(got)} (the paper's: {_fmt(want)})"


def role_of(run: dict) -> str:
    """Which of the paper's runs this run stands for: its sockets, and its FP32 twin when it was asked for FP32."""
    sockets = run["plan"].get("sockets") or 1
    fp32 = run["config"].get("precision") == "fp32"
    return ("2s" if sockets >= 2 else "1s") + ("_fp32" if fp32 else "")


def protocol_of(run: dict) -> str:
    return "kit" if run["config"].get("profile") == "kit" else "paper"
