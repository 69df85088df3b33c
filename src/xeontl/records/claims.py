"""The claims judged from data. claims.toml holds each claim: the words it rests on (the paper's, the kit's log, or how
a derived figure was derived), the run it is about, what of that run it compares, its tolerance, and the dimensions
of the run's setup it may ignore, each with the words that justify it. `judge()` gives every claim a verdict (PASS,
FAIL, or "not comparable: <every dimension of the run's setup that is not the paper's run's, but those the claim may
ignore>"): the setup is read from what ran and compared whole (records/setup.py), unknown never equal. Pure: run
dirs in, rows out.

The table is the package's claims.toml; XEONTL_CLAIMS_TABLE names another (the tests' fixture data and weights stand
in for the paper's that way), and every table of verdicts says which it used."""

from __future__ import annotations

import copy
import functools
import hashlib
import os
from importlib import resources
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python < 3.11: the paper stack's 3.9 has tomllib's own source, tomli
    import tomli as tomllib

from xeontl.common import records, stats
from xeontl.experiment import config
from xeontl.records import setup

REFERENCE_DIR = Path(__file__).resolve().parents[3] / "results" / "reference"
TABLE_ENV = "XEONTL_CLAIMS_TABLE"
RUN_LABELS = {"1s": "1-socket run", "2s": "2-socket run", "1s_fp32": "1-socket FP32 run",
              "2s_fp32": "2-socket FP32 run"}


def _table_text() -> tuple[str, str]:
    other = os.environ.get(TABLE_ENV)
    if other:
        # another table (the tests' fixtures): a regular file, bounded, as every file read back
        return records.read_text(other, TABLE_ENV, limit=1 << 20), str(Path(other).resolve())
    return resources.files("xeontl").joinpath("claims.toml").read_text(), "xeontl/claims.toml"


def table() -> dict:
    """The claims table, parsed (a copy of its own: callers may change theirs). Parsed once per text: a verdict reads
    it for every committed run, and parsing it again was half of a verdict's time."""
    return copy.deepcopy(_parsed(_table_text()[0]))


@functools.lru_cache(maxsize=4)
def _parsed(text: str) -> dict:
    return tomllib.loads(text)


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
    def read(name):  # as its schema allows it ({} when the run has none), or one line naming the file and field
        return records.read_record(Path(run) / name, records.RUN_FILES[name], missing={})

    return {"dir": str(run), "metrics": read("metrics.json"), "plan": read("plan.json"),
            "provenance": read("provenance.json"), "config": read("config.json")}


def _short(h: str | None) -> str:
    return f"{h[:12]}…" if h else "none"


# ------------------------------------------------------------------------------------------------ comparability
def ignored(claim: dict, tab: dict) -> dict[str, dict]:
    """The dimensions CLAIM may ignore (its `ignore` sets of [ignore.*]), each with the words that justify it."""
    out: dict[str, dict] = {}
    for name in claim.get("ignore") or []:
        out.update(tab["ignore"][name])
    return out


def unequal(run: dict, protocol: str, role: str, tab: dict | None = None, ignore: dict | None = None) -> list[dict]:
    """Every dimension of RUN's setup that is not the protocol's run of ROLE (records/setup.py), but those IGNORE
    names: the one list the report's differences and every claim's "not comparable" are made of."""
    tab = tab or table()
    return setup.compare(setup.of_run(run, tab), setup.expected(tab, protocol, role), ignore)


def readings(run: dict, protocol: str) -> dict[str, str]:
    """The protocol's readings of ambiguous values the run used (field -> reading name)."""
    return config.recipe_differences(run["config"], protocol)[1] if run["config"] else {}


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
        t, e = m.get("train_seconds"), m.get("epochs_run")
        if not t or e != claim["epochs"]:
            return None, "no training time of a run of the claim's epochs"
        return t / 60, f"the measured training time of this run's {e} epochs ({t:.1f} s)"
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
        ignore = ignored(claim, tab)
        for role in claim["runs"]:
            run = given[role]
            if run is None or run["metrics"].get("status") != "success":
                missing.append(f"no {RUN_LABELS[role]}" + (" (--fp32)" if role.endswith("fp32") else "")
                               + ("" if run is None else f" that succeeded ({run['metrics'].get('status')})"))
                continue
            read.update(readings(run, claim["protocol"]))
            label = f"{RUN_LABELS[role]}: " if len(claim["runs"]) > 1 else ""
            missing += [label + setup.phrase(d, run) for d in unequal(run, claim["protocol"], role, tab, ignore)]
            epochs = run["metrics"].get("epochs_run")
            if claim["measure"] == "minutes_at_epochs" and epochs != claim["epochs"]:
                missing.append(f"{label}epochs: ran {epochs}, the claim is the time of a run of {claim['epochs']}")
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
                     "readings": {k: read[k] for k in sorted(read)}, "runs": [r["dir"] for r in runs],
                     "ignores": sorted(ignore)})
    return rows


def judge_repeats(sets: dict[str, list[dict]]) -> list[dict]:
    """The claims table over N runs of each configuration ("1 socket", "2 sockets", and with --fp32 "2 sockets,
    FP32" and "1 socket, FP32"; the i-th runs together, as they ran interleaved): each claim's value as mean ± sd
    (range) of the N runs' values, met when the paper's value lies within the tolerance of the mean, and how many
    runs met it on their own."""
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
        s = stats.spread([r["value"] for r in runs])
        # every run's own comparability: one run not comparable (or failed) and the mean is not the paper's setup's
        out = [(i, r["verdict"]) for i, r in enumerate(runs) if r["verdict"].startswith(("not comparable", "n/a"))]
        if out:
            verdict = (f"not comparable: {len(out)} of {n} runs: "
                       + "; ".join(f"run {i + 1}: {v.removeprefix('not comparable: ')}" for i, v in out))
        else:
            verdict = _verdict(claim, s["mean"])
        met = sum(r["verdict"] == "PASS" for r in runs)
        rows.append({**first, "value": s["mean"], "spread": s, "verdict": verdict,
                     "this_host": stats.shown(s, fmt[claim["unit"]]) if s["n"] > 1 else first["this_host"],
                     # failed and not comparable runs stay in the denominator
                     "runs_met": f"{met}/{n}"})
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
