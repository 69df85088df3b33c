"""The claims judged from data. claims.toml holds each claim: the words it rests on (the paper's, the kit's log, or how
a derived figure was derived), the run it is about, what of that run it compares, its tolerance, and the facts a run
needs for the comparison to mean anything. `facts()` reads those facts from structured fields the code wrote (the
data's identity, the weights' architecture read from their graph, the recipe field by field, the hardware); `judge()`
gives every claim a verdict (PASS, FAIL, or "not comparable: <which facts fail, and how>"). `against_reference()`
judges a run against the bundle's own committed runs of its kind (the "Reproduced" line). Pure: run dirs in, rows
out.

The table is the package's claims.toml; XEONTL_CLAIMS_TABLE names another (the tests' fixture data and weights stand
in for the paper's that way), and every table of verdicts says which it used."""

from __future__ import annotations

import hashlib
import json
import math
import os
import statistics
import tomllib
from importlib import resources
from pathlib import Path

from xeontl import config

PAPER_CORES = [56, 56]
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "results" / "reference"
TABLE_ENV = "XEONTL_CLAIMS_TABLE"
RUN_LABELS = {"1s": "1-socket run", "2s": "2-socket run", "1s_fp32": "1-socket FP32 run",
              "2s_fp32": "2-socket FP32 run"}


def _table_text() -> tuple[str, str]:
    other = os.environ.get(TABLE_ENV)
    if other:
        return Path(other).read_text(), str(Path(other).resolve())
    return resources.files("xeontl").joinpath("claims.toml").read_text(), "xeontl/claims.toml"


def table() -> dict:
    return tomllib.loads(_table_text()[0])


def table_source() -> dict:
    """Which claims table the verdicts come from: the bundle's own, or the one XEONTL_CLAIMS_TABLE names."""
    text, where = _table_text()
    return {"table": where, "sha256": hashlib.sha256(text.encode()).hexdigest(),
            "bundles_own": where == "xeontl/claims.toml"}


def claims(tab: dict | None = None) -> dict[str, dict]:
    """The claims of a table, in its order (its other sections are pins and sources)."""
    tab = tab or table()
    return {k: v for k, v in tab.items() if isinstance(v, dict) and "measure" in v}


def load_run(run: Path) -> dict:
    def read(name):
        p = Path(run) / name
        return json.loads(p.read_text()) if p.exists() else {}

    return {"dir": str(run), "metrics": read("metrics.json"), "plan": read("plan.json"),
            "provenance": read("provenance.json"), "config": read("config.json")}


# ------------------------------------------------------------------------------------------------ facts
def _short(h: str | None) -> str:
    return f"{h[:12]}…" if h else "none"


def data_fact(run: dict, pins: dict) -> str | None:
    """None when the run's data are the paper's: the examples per class and tile shape of [paper_data], and either the
    archive of its sha256 behind them (checked when read) or its pinned content digest. Else what differs."""
    d = run["metrics"].get("dataset") or {}
    ident = d.get("identity")
    if d.get("name") == "synthetic":
        return "dataset synthetic (generated tiles, not the paper's)"
    if not ident:
        return f"dataset {d.get('name') or 'unknown'}: no identity recorded (the run failed before its end, or ran " \
               f"before 2026-12)"
    def per_class(counts):
        return f"{sum(counts)} tiles, " + (f"{counts[0]} per class" if len(set(counts)) == 1 else
                                           f"{'/'.join(map(str, counts))} per class")

    why = []
    counts, want = ident["examples_per_class"], pins["examples_per_class"]
    if counts != want:
        why.append(f"{per_class(counts)} (the paper's: {per_class(want)})")
    if ident["tile_shape"] != pins["tile_shape"]:
        why.append(f"tiles {ident['tile_shape']}, the paper's {pins['tile_shape']}")
    archive, content = ident.get("archive_sha256"), ident.get("content_sha256")
    if archive != pins["archive_sha256"] and not (pins.get("content_sha256") and content == pins["content_sha256"]):
        if archive:
            why.append(f"archive sha256 {_short(archive)} (the paper's: {_short(pins['archive_sha256'])})")
        else:
            why.append(f"no checked archive behind it (an unpacked tree, or a TFDS dir not prepared by `invoke "
                       f"assets`) and its content digest {_short(content)} is not a pinned one")
    return ", ".join(why) if why else None


def weights_fact(run: dict, pins: dict) -> str | None:
    """None when the weights are pretrained weights of the paper's architecture, compared exactly: v1 never passes."""
    w = run["metrics"].get("weights") or {}
    kind, arch, want = w.get("kind"), w.get("architecture"), pins["architecture"]
    version = want.removeprefix("ResNet50 ")
    if kind == "random":
        return "weights random (not ImageNet's)"
    if kind not in pins["pretrained_kinds"]:
        return f"weights {kind or 'unknown'}"
    if arch is None:
        return f"weights {kind}: no architecture recorded (the run failed before its end, or ran before 2026-12)"
    if arch == "unknown":
        strided = w.get("stride2_convolutions") or {}
        return f"weights {kind} of unknown architecture (stride-2 convolutions {strided or 'none'}: neither a " \
               f"bottleneck's 3x3 nor its 1x1), the paper's are {version}"
    if arch != want:
        return f"weights {arch}, the paper's are {version}"
    return None


def protocol_fact(run: dict, protocol: str, precision: str) -> tuple[str | None, dict[str, str]]:
    """(None when the run is a run of PROTOCOL's recipe at PRECISION, else what departs; the protocol's readings of
    ambiguous values the run used, field -> reading)."""
    cfg, m = run["config"], run["metrics"]
    if not cfg:
        return "no config.json", {}
    differ, read = config.recipe_differences(cfg, protocol)
    why = list(differ)
    if m.get("resumed_from"):
        why.append("resumed (its time covers the continuation only)")
    ran = (m.get("precision") or {}).get("precision")
    if ran != precision:
        why.append(f"ran {ran or 'at an unrecorded precision'}, not {precision}")
    return ", ".join(why) or None, read


def hardware_fact(run: dict) -> str | None:
    plan, host = run["plan"], run["provenance"].get("host") or {}
    topo, flags = host.get("topology") or {}, (host.get("cpu") or {}).get("flags_of_note") or {}
    math_path = run["provenance"].get("math_path") or {}
    hw = []
    if plan.get("emulated"):
        hw.append("emulated sockets")
    if topo and (topo.get("sockets"), topo.get("cores_per_socket")) != (2, PAPER_CORES):
        hw.append(f"{topo.get('sockets')} socket(s) x {topo.get('cores_per_socket')} cores")
    if not flags.get("amx_bf16"):
        hw.append("no AMX")
    elif math_path and not math_path.get("amx_used"):
        hw.append("AMX not dispatched")
    return ", ".join(hw) or None


def facts(run: dict, protocol: str = "paper", precision: str = "bf16", tab: dict | None = None) -> dict:
    """Each fact of claims.toml's `needs`: None when the run has it, else why not (one short phrase); and the
    readings of the protocol's ambiguous values the run used."""
    tab = tab or table()
    proto, read = protocol_fact(run, protocol, precision)
    return {"data": data_fact(run, tab["paper_data"]), "weights": weights_fact(run, tab["paper_weights"]),
            "protocol": proto, "hardware": hardware_fact(run),
            "real_sockets": "emulated sockets" if run["plan"].get("emulated") else None, "readings": read}


# ------------------------------------------------------------------------------------------------ what a claim compares
def best_accuracy(run: dict) -> float | None:
    """The best epoch's validation accuracy (the kit's figure); a run recorded before it was, from its epochs."""
    m = run["metrics"]
    if m.get("best_val_accuracy") is not None:
        return m["best_val_accuracy"]
    accs = [r["val_accuracy"] for r in m.get("per_epoch") or [] if r.get("val_accuracy") is not None]
    return max(accs) if accs else None


def seconds_per_epoch(run: dict) -> float | None:
    """Training time per epoch. A resumed run's train_seconds covers only its continuation: its epochs' clock
    (elapsed_seconds, which carries the interrupted run's time) over all its epochs."""
    m = run["metrics"]
    rows, epochs = m.get("per_epoch") or [], m.get("epochs_run")
    if m.get("resumed_from") and rows and rows[-1].get("elapsed_seconds"):
        return rows[-1]["elapsed_seconds"] / len(rows)
    return m["train_seconds"] / epochs if m.get("train_seconds") and epochs else None


def per_class(run) -> dict | None:
    """Per-class precision and recall from the run's confusion matrix (rows: true class, columns: predicted)."""
    cm = run and run["metrics"].get("confusion_matrix")
    if not cm:
        return None
    n = len(cm)
    col = [sum(cm[i][j] for i in range(n)) for j in range(n)]
    return {"precision": [cm[j][j] / col[j] if col[j] else 0.0 for j in range(n)],
            "recall": [cm[i][i] / sum(cm[i]) if sum(cm[i]) else 0.0 for i in range(n)]}


def _ratio(a: dict, b: dict) -> float | None:
    ta, tb = seconds_per_epoch(a), seconds_per_epoch(b)
    return ta / tb if ta and tb else None


def measure(claim: dict, runs: list[dict], tab: dict) -> tuple[float | None, str]:
    """(the value the claim compares, what it is, in words with the figures behind it)."""
    kind, first = claim["measure"], runs[0]
    m = first["metrics"]
    if kind == "best_val_accuracy":
        acc, final = best_accuracy(first), m.get("final_val_accuracy")
        epoch = m.get("best_val_accuracy_epoch")
        return acc, (f"the best epoch's val accuracy{f' (epoch {epoch})' if epoch else ''}, as the kit reports it; the "
                     f"restored best-val_loss weights gave {final:.4f}" if final is not None else
                     "the best epoch's val accuracy, as the kit reports it")
    if kind == "epochs":
        return m.get("epochs_run"), f"epochs run (early stopping at patience {first['config'].get('patience')})"
    if kind == "minutes_at_epochs":
        spe = seconds_per_epoch(first)
        if spe is None:
            return None, "no training time"
        t, e = m.get("train_seconds") or 0.0, m.get("epochs_run")
        return spe * claim["epochs"] / 60, (f"{spe:.2f} s per epoch x {claim['epochs']} epochs; this run: {e} epochs "
                                            f"in {t / 60:.2f} min")
    if kind in ("time_ratio_per_epoch", "efficiency_per_epoch"):
        r = _ratio(*runs)
        if kind == "efficiency_per_epoch":
            workers = runs[1]["plan"].get("total_workers") or runs[1]["plan"].get("sockets") or 2
            return (r / workers if r else None), f"the per-epoch speedup over {workers} workers"
        return r, " / ".join(f"{seconds_per_epoch(x) or 0:.2f} s per epoch" for x in runs)
    if kind == "accuracy_gap":
        a, b = best_accuracy(runs[0]), best_accuracy(runs[1])
        return (abs(a - b) if a is not None and b is not None else None), "|best val accuracy BF16 - FP32|"
    if kind == "per_class":
        got, kit = per_class(first), tab["kit"]
        if got is None or len(got["precision"]) != len(kit["precision_bf16"]):
            return None, "no confusion matrix"
        return (max(abs(a - b) for what in ("precision", "recall") for a, b in zip(got[what], kit[f"{what}_bf16"])),
                "the largest |difference| of per-class precision or recall from the kit's report")
    raise ValueError(f"claims.toml: unknown measure {kind!r}")


# ------------------------------------------------------------------------------------------------ verdicts
def _verdict(claim: dict, value: float | None) -> str:
    if value is None:
        return "n/a: not measured"
    if claim.get("bound") == "upper":
        return "PASS" if value <= claim["value"] else "FAIL"
    tol = claim.get("tolerance", claim["value"] * claim.get("tolerance_relative", 0))
    return "PASS" if abs(value - claim["value"]) <= tol + 1e-12 else "FAIL"


def _tolerance(claim: dict) -> str:
    if claim.get("bound") == "upper":
        return "upper bound"
    if "tolerance_relative" in claim:
        return f"+-{claim['tolerance_relative']:.0%}"
    unit = {"fraction": " (absolute)", "x": "x"}.get(claim.get("unit"), f" {claim.get('unit', '')}")
    return f"+-{claim['tolerance']}{unit}"


FMT = {"fraction": "{:.3f}", "epochs": "{:.0f}", "minutes": "{:.2f} min", "x": "{:.2f}x"}


def judge(one: dict | None, two: dict | None, two_fp32: dict | None = None, one_fp32: dict | None = None) -> list[dict]:
    """The claims table for a 1-socket run, a 2-socket run and their FP32 twins (any may be None): each claim judged
    on the run(s) it is about, with the facts of each of them."""
    tab = table()
    given = {"1s": one, "2s": two, "1s_fp32": one_fp32, "2s_fp32": two_fp32}
    rows = []
    for key, claim in claims(tab).items():
        runs, missing, read = [], [], {}
        for role in claim["runs"]:
            run = given[role]
            if run is None or run["metrics"].get("status") != "success":
                missing.append(f"no {RUN_LABELS[role]}" + (" (--fp32)" if role.endswith("fp32") else "")
                               + ("" if run is None else f" that succeeded ({run['metrics'].get('status')})"))
                continue
            f = facts(run, claim["protocol"], "fp32" if role.endswith("fp32") else "bf16", tab)
            read.update(f["readings"])
            label = f"{RUN_LABELS[role]}: " if len(claim["runs"]) > 1 else ""
            missing += [f"{label}{need}: {f[need]}" for need in claim["needs"] if f[need]]
            runs.append(run)
        value, compares = measure(claim, runs, tab) if len(runs) == len(claim["runs"]) else (None, "")
        shown = "-" if value is None else FMT[claim["unit"]].format(value)
        verdict = ("not comparable: " + "; ".join(missing)) if missing else _verdict(claim, value)
        rows.append({"claim": key, "text": claim["text"], "source": claim["source"],
                     "quote": claim.get("quote") or claim.get("derived_from"),
                     "quote_is": claim.get("quote_is") or ("how it was derived" if claim["source"] == "derived"
                                                           else "verbatim"),
                     "paper": FMT[claim["unit"]].format(claim["value"]), "tolerance": _tolerance(claim),
                     "this_host": shown, "value": value, "verdict": verdict, "compares": compares,
                     "readings": {k: read[k] for k in sorted(read)}, "runs": [r["dir"] for r in runs]})
    return rows


def judge_repeats(sets: dict[str, list[dict]]) -> list[dict]:
    """The claims table over N runs of each configuration ("1 socket", "2 sockets", and with --fp32 "2 sockets,
    FP32" and "1 socket, FP32"; the i-th runs together, as they ran interleaved): each claim's value as mean ± sd
    (range) of the N runs' values, met when the paper's value lies within the tolerance of the mean, and how many
    runs met it on their own."""
    from xeontl import repeats

    n = max((len(v) for v in sets.values()), default=0)

    def nth(name, i):
        runs = sets.get(name) or []
        return runs[i] if i < len(runs) else None

    per_run = [judge(nth("1 socket", i), nth("2 sockets", i), nth("2 sockets, FP32", i), nth("1 socket, FP32", i))
               for i in range(n)]
    fmt = {**FMT, "epochs": "{:.1f}"}
    table_claims = claims()
    rows = []
    for k, first in enumerate(per_run[0]):
        claim = table_claims[first["claim"]]
        runs = [r[k] for r in per_run]
        s = repeats.spread([r["value"] for r in runs])
        comparable = not first["verdict"].startswith("not comparable")
        verdict = first["verdict"] if not comparable else _verdict(claim, s["mean"])
        met = sum(r["verdict"] == "PASS" for r in runs)
        rows.append({**first, "value": s["mean"], "spread": s, "verdict": verdict,
                     "this_host": repeats.shown(s, fmt[claim["unit"]]) if s["n"] > 1 else first["this_host"],
                     "runs_met": f"{met}/{s['n']}" if comparable and s["n"] else "-"})
    return rows


def markdown(rows: list[dict]) -> str:
    """The claims table, each claim's words after it (the source's own, or how a derived figure was derived), and
    which table judged it; over repeats, the value is mean ± sd (range) and a column says how many runs met it."""
    many = any("runs_met" in r for r in rows)
    lines = ["| claim | source | paper | tolerance | this host | " + ("runs meeting it | " if many else "")
             + "verdict |", "|---|---|---|---|---|" + ("---|" if many else "") + "---|"]
    lines += [f"| {r['text']} | {r['source']} | {r['paper']} | {r['tolerance']} | {r['this_host']} | "
              + (f"{r.get('runs_met', '-')} | " if many else "") + f"{r['verdict']} |" for r in rows]
    lines += ["", "What each claim rests on and what it compares:", ""]
    for r in rows:
        quote = f"\"{r['quote']}\"" if r["quote_is"] != "how it was derived" else r["quote"]
        kind = "" if r["quote_is"] == "verbatim" else f", {r['quote_is']}"
        lines.append(f"- {r['text']}: {quote} ({r['source']}{kind})"
                     + (f"; compared: {r['compares']}" if r.get("compares") else ""))
    read = {k: v for r in rows for k, v in (r.get("readings") or {}).items()}
    if read:
        lines.append("- readings of the paper's ambiguous values this run used: "
                     + ", ".join(f"{k}: '{v}' (configs/paper.toml)" for k, v in sorted(read.items())))
    src = table_source()
    if not src["bundles_own"]:
        lines.append(f"- judged with the claims table {src['table']} (sha256 {_short(src['sha256'])}), "
                     f"NOT the bundle's own ({TABLE_ENV})")
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ the reference runs
def run_kind(run: dict) -> tuple:
    """What makes runs comparable with a reference at all: profile, sockets, emulated."""
    plan = run["plan"]
    return run["config"].get("profile"), plan.get("sockets"), bool(plan.get("emulated"))


def recipe_mismatch(run: dict, ref: dict) -> list[str]:
    """How two runs' recipes differ: every recipe field (a field one of them lacks ran at its default), the
    precision each ran at, the backbone graph (folded batch norms take 10-62 % off a step)."""
    out = []
    for key, f in config.FIELDS.items():
        if f.recipe and key != "precision":
            a, b = run["config"].get(key, f.default), ref["config"].get(key, f.default)
            if a != b:
                out.append(f"{key} {a!r} vs {b!r}")
    ran = [(r["metrics"].get("precision") or {}).get("precision") for r in (run, ref)]
    if ran[0] != ran[1]:
        out.append(f"ran {ran[0]} vs {ran[1]}")
    if batch_norm(run) != batch_norm(ref):
        out.append(f"batch norms {batch_norm(run)} vs {batch_norm(ref)}")
    return out


def find_reference(run: dict, reference_dir: Path = REFERENCE_DIR) -> dict | None:
    """The committed reference run of the same profile, socket count and emulation; of several, one of the same
    recipe and CPU kind first, then the newest."""
    if not reference_dir.is_dir():
        return None
    found = []
    for d in sorted(reference_dir.iterdir()):
        if (d / "metrics.json").is_file() and Path(run["dir"]).resolve() != d.resolve():
            ref = load_run(d)
            if run_kind(ref) == run_kind(run) and ref["metrics"].get("status") == "success":
                found.append(ref)
    return max(found, key=lambda ref: (not recipe_mismatch(run, ref), cpu_kind(ref) == cpu_kind(run), ref["dir"]),
               default=None)


def batch_norm(run: dict) -> str:
    """How the run's backbone ran its batch norms (model.describe_weights); runs before folding existed: separate."""
    return (run["metrics"].get("weights") or {}).get("batch_norm") or "separate layers"


def cpu_kind(run: dict) -> str | None:
    """The CPU a run's time can be compared on: its model name, and family/model where recorded (a VM's model name
    can be as bare as "AMD EPYC" for every generation: Zen 3 is family 25, Zen 5 family 26)."""
    c = (run["provenance"].get("host") or {}).get("cpu") or {}
    if not c.get("model_name"):
        return None
    return c["model_name"] + (f" (family {c['family']} model {c['model']})" if c.get("family") else "")


def health(run: dict) -> list[str]:
    """What the run's own record says went wrong, whatever the machine's speed: a rank off the CPUs its plan gave
    it, ranks sharing a CPU, threads other than the plan's, BF16 that oneDNN did not run natively where the CPU
    can. Empty for a healthy run."""
    m, plan, prov = run["metrics"], run["plan"], run["provenance"]
    out = []
    if m.get("status") != "success":
        out.append(f"status {m.get('status')}")
    ranks, workers = m.get("ranks") or [], plan.get("workers") or []
    if not plan.get("hosts") and plan.get("node_count", 1) == 1:
        for r in ranks:
            w = workers[r["rank"]] if r["rank"] < len(workers) else None
            if w and w.get("relative") is None and sorted(r["affinity"]) != sorted(w["cpus"]):
                out.append(f"rank {r['rank']} ran on CPUs {r['affinity']}, its plan gave it {w['cpus']}")
    owner: dict[int, int] = {}
    for r in ranks:
        for cpu in r.get("affinity") or []:
            if cpu in owner and (r.get("host"), r.get("node")) == owner[cpu][1]:
                out.append(f"ranks {owner[cpu][0]} and {r['rank']} share CPU {cpu}")
            owner[cpu] = (r["rank"], (r.get("host"), r.get("node")))
    threads = m.get("threads") or {}
    if workers and threads:
        w0 = workers[0]
        for key, want in (("intra_op", w0["intra"]), ("inter_op", w0["inter"]), ("omp_num_threads", str(w0["intra"]))):
            if threads.get(key) not in (None, want):
                out.append(f"rank 0 ran {key} = {threads[key]}, its plan {want}")
    ran = (m.get("precision") or {}).get("precision")
    math_path = prov.get("math_path") or {}
    flags = ((prov.get("host") or {}).get("cpu") or {}).get("flags_of_note") or {}
    if ran == "bf16" and math_path and not math_path.get("error"):
        isas = math_path.get("isas_dispatched") or []
        if not math_path.get("bf16_kernels_seen"):
            out.append("ran bf16 but oneDNN dispatched no BF16 kernel")
        elif flags.get("amx_bf16") and not math_path.get("amx_used"):
            out.append(f"this CPU has AMX, oneDNN dispatched {isas}")
        elif flags.get("avx512_bf16") and not any(i == "avx512_core_bf16" or "amx" in i for i in isas):
            out.append(f"this CPU has AVX512-BF16, oneDNN dispatched {isas} (BF16 emulated)")
    return out


def kind_spread(run: dict, reference_dir: Path = REFERENCE_DIR) -> dict:
    """The committed `--repeats` summaries (N >= 5) of runs like this one (same profile, sockets, emulation and
    recipe): for accuracy all of them; for time those of this run's CPU kind, each one machine on one day."""
    pattern = table()["reference"]["tolerances_from"]
    found = sorted(reference_dir.glob(pattern)) if reference_dir.is_dir() else []
    kind, acc, days = cpu_kind(run), [], []
    for path in found:
        doc = json.loads(path.read_text())
        rows = doc.get("runs") or []
        if tuple(doc.get("kind") or ()) != run_kind(run) or len(rows) < 5:
            continue
        sample = next((load_run(d) for d in sorted((path.parent / "runs").glob("*"))
                       if (d / "config.json").is_file()), None)
        if sample is None or recipe_mismatch(run, sample):
            continue
        acc += [r["accuracy"] for r in rows if r.get("accuracy") is not None]
        times = [r["train_seconds"] for r in rows if r.get("train_seconds")]
        if kind and kind in (doc.get("cpus") or []) and len(times) >= 2:
            days.append({"source": str(path.relative_to(reference_dir)), "machine": doc.get("machine"),
                         "n": len(times), "mean": statistics.fmean(times), "sd": statistics.stdev(times)})
    return {"accuracy": acc, "days": days}


def tolerances(spread: dict) -> dict:
    """Accuracy: 3 sd of every run of the summaries (at least 0.2 points). Time: 3 sd of the within-machine and the
    machine-to-machine variation together (the spread of the machine-days' means beyond what their within-machine
    spread explains), relative to the mean of the days' means, at least 5 %; it decides only with two machine-days
    or more: machines of one kind differ by more than a run varies within an hour (+12 % seen on a fresh Zen 4)."""
    from xeontl.repeats import FLOOR, SD_MULTIPLE

    acc, days = spread["accuracy"], spread["days"]
    out: dict = {"accuracy_runs": len(acc), "days": len(days), "rule": f"{SD_MULTIPLE:g} sd"}
    if len(acc) >= 2:
        out["accuracy_mean"] = statistics.fmean(acc)
        pts = statistics.stdev(acc) * 100 * SD_MULTIPLE
        out["accuracy_points"] = max(FLOOR["accuracy_points"], math.ceil(pts * 10) / 10)
    if days:
        within = sum((d["n"] - 1) * d["sd"] ** 2 for d in days) / sum(d["n"] - 1 for d in days)
        means = [d["mean"] for d in days]
        between = max(0.0, statistics.variance(means) - within / statistics.fmean(d["n"] for d in days)) \
            if len(days) >= 2 else 0.0
        out["time_mean"] = statistics.fmean(means)
        out["time_relative"] = max(FLOOR["time_relative"],
                                   math.ceil(SD_MULTIPLE * math.sqrt(within + between) / out["time_mean"] * 100) / 100)
        out["time_between_machines_sd"] = math.sqrt(between) if len(days) >= 2 else None
        out["time_decides"] = len(days) >= 2
    return out


def against_reference(run: dict, ref: dict | None, reference_dir: Path = REFERENCE_DIR) -> dict | None:
    """`reproduced: yes/no` and why: the run's own record healthy (health), its accuracy within the spread measured
    on the committed runs of its recipe, its training time within its CPU kind's spread across machines (where two
    machine-days are measured; else shown, not deciding). Runs of another recipe, precision or backbone graph than
    every committed one: not judged, and what differs."""
    if ref is None:
        return None
    name = Path(ref["dir"]).name
    differ = recipe_mismatch(run, ref)
    if differ:
        return {"reproduced": None, "reference": name, "time_judged": False, "tolerances": None,
                "why": [f"not judged: no committed reference of this recipe (the nearest, {name}, differs: "
                        f"{'; '.join(differ)})"]}
    tol = tolerances(kind_spread(run, reference_dir))
    if "accuracy_points" not in tol:
        return {"reproduced": None, "reference": name, "time_judged": False, "tolerances": tol,
                "why": ["not judged: no committed spread for runs of this recipe (make one: invoke reproduce "
                        "--repeats 5 with the same profile, sockets and settings, committed under results/reference/)"]}
    m = run["metrics"]
    problems = health(run)
    ok = not problems
    why = [f"run record: {p}" for p in problems] or [
        "run record: every rank on the CPUs its plan gave it, threads as planned, math path as configured"]
    acc = m.get("final_val_accuracy")
    if acc is not None:
        diff = (acc - tol["accuracy_mean"]) * 100
        good = abs(diff) <= tol["accuracy_points"]
        ok &= good
        why.append(f"accuracy {acc:.4f} vs {tol['accuracy_mean']:.4f}, the mean of {tol['accuracy_runs']} committed "
                   f"runs ({diff:+.1f} points, tolerance +-{tol['accuracy_points']:g}): "
                   f"{'within' if good else 'outside'}")
    t = m.get("train_seconds")
    time_judged = False
    if "time_mean" not in tol:
        why.append(f"training time not judged: no spread measured for this CPU kind ({cpu_kind(run)}): make one "
                   f"with invoke reproduce --repeats 5, committed under results/reference/")
    elif t:
        rel = t / tol["time_mean"] - 1
        good = abs(rel) <= tol["time_relative"]
        line = (f"training time {t:.0f} s vs {tol['time_mean']:.0f} s ({rel:+.0%}, tolerance "
                f"+-{tol['time_relative']:.0%} over {tol['days']} machine-day(s) of this CPU kind): "
                f"{'within' if good else 'outside'}")
        if tol["time_decides"]:
            ok &= good
            time_judged = True
        else:
            line += " (shown, not deciding: one machine-day measured, machines of a kind differ by more)"
        why.append(line)
    return {"reproduced": ok, "reference": name, "why": why, "time_judged": time_judged, "tolerances": tol,
            "health": problems}
