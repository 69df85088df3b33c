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

from typing import Any

from xeontl.experiment import config, runtime
from xeontl.records import onednn
from xeontl.records.ranks import all_flags, from_training, hardware_cpu, health, tallied, workers_of

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


def ranks_math_path(run: dict) -> str | None:
    """The hardware.math_path dimension: rank 0's (math_path) where every other rank's own tally ran its convolutions
    on the same ISA; each rank's where they differ (two nodes of two CPUs); rank 0's alone for a record whose other
    ranks kept no tally (recorded before they did)."""
    first = math_path(run["provenance"])
    others = {r["rank"]: (r.get("math_path") or {}).get("convolution_isa") for r in run["metrics"].get("ranks") or []
              if r["rank"] != 0 and "math_path" in r}
    if first is None or all(isa == first for isa in others.values()):
        return first
    return "; ".join(f"rank {i}: {isa}" for i, isa in sorted({0: first, **others}.items()))


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
    ws = workers_of(run)
    return [sorted(w.get("nodes") or []) for w in ws] if ws else None


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
    ws = workers_of(run)
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
        "hardware.cpu": hardware_cpu(run),
        "hardware.topology": {"sockets": topo.get("sockets"), "cores_per_socket": topo.get("cores_per_socket"),
                              "threads_per_core": topo.get("threads_per_core")} if topo.get("sockets") else None,
        "hardware.math_path": ranks_math_path(run),
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
        if not all_flags(run) & set(runtime.BF16_NATIVE):
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
