"""`--repeats N`: one result from N runs, as MLPerf asks for several runs per result. Each run gets a recorded seed
(the config's seed, +1, +2, ...: run 1 is the single run's); the runs of several configurations are interleaved
(A B A B ...) so a shared machine's slow phases hit every configuration alike; each figure is reported as mean,
standard deviation and range, next to how many runs met it on their own.

`invoke reproduce --repeats N` writes results/repeats-<id>/summary.{md,json}; a committed one of N >= 5 demo runs is
with the runs' config.json and metrics.json is what the reference comparison reads (reference.committed_runs)."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
from datetime import datetime, timezone
from pathlib import Path

from xeontl.common.errors import UserError
from xeontl.common.stats import FALSE_ALARM, FLOOR, multiple, shown, spread  # noqa: F401  (repeats.spread: its callers')
from xeontl.experiment import config
from xeontl.launch.options import Options
from xeontl.records import claims, reference, report

FIGURES = {"accuracy": ("final_val_accuracy", "val accuracy", "{:.4f}"),
           "epochs": ("epochs_run", "epochs", "{:.1f}"),
           "train_seconds": ("train_seconds", "training time (s)", "{:.1f}")}


def check(n: int) -> int:
    if n < 1:
        raise UserError(f"--repeats {n}: must be 1 or more (the runs per configuration)")
    return n


def seeded(opts: Options, n: int) -> list[Options]:
    """The N runs' options: the same launch, seeds base, base+1, ... (base: the config's own seed)."""
    if n == 1:
        return [opts]
    if opts.resume:
        raise UserError("--repeats with --resume: resume one run at a time (each continues its own seed)")
    base = int(config.resolve(opts.profile, opts.overrides)["seed"])
    return [dataclasses.replace(opts, overrides={**opts.overrides, "seed": str(base + i)}) for i in range(n)]


def tolerances(acc: dict, secs: dict) -> dict:
    """The reference comparison's tolerances from a measured spread (multiple(n) sample sd: the prediction interval
    for one new run, at least FLOOR); None from fewer than 2 runs."""
    acc_pts = acc["sd"] * 100 * multiple(acc["n"]) if acc["n"] >= 2 else None
    rel = secs["sd"] / secs["mean"] * multiple(secs["n"]) if secs["n"] >= 2 and secs["mean"] else None
    return {"accuracy_points": None if acc_pts is None else max(FLOOR["accuracy_points"], math.ceil(acc_pts * 10) / 10),
            "time_relative": None if rel is None else max(FLOOR["time_relative"], math.ceil(rel * 100) / 100),
            "rule": f"the {100 - FALSE_ALARM * 100:g} % prediction interval of one new run (stats.multiple(n) x the "
                    f"sample standard deviation of the n runs), at least {FLOOR}; shown for these runs alone: the "
                    f"verdict judges time by the calibration ratio over the committed healthy runs of the CPU kind "
                    f"(records/reference.py)"}


def summarize(runs: list[Path]) -> dict:
    """The N runs of one configuration: each run's figures and verdict against the reference, and their spread."""
    loaded = [claims.load_run(r) for r in runs]
    rows = []
    # every run counted in one of four, a partial verdict ("yes on what was judged") as itself: never dropped
    counts = dict.fromkeys(("yes", "no", "yes on what was judged", "not judged"), 0)
    for run in loaded:
        m, cfg = run["metrics"], run["config"]
        ref = reference.judge(run)
        counts[{True: "yes", False: "no"}.get(ref["reproduced"]) or
               ("yes on what was judged" if ref.get("partial") else "not judged")] += 1
        rows.append({"run": Path(run["dir"]).name, "seed": cfg.get("seed"), "status": m.get("status"),
                     **{k: m.get(src) for k, (src, _, _) in FIGURES.items()},
                     # the CPU by model name and family/model: "AMD EPYC" alone names Zen 3, 4 and 5 alike
                     "cpu": reference.cpu_kind(run),
                     "reference": None if ref is None else ref["reference"],
                     "reproduced": None if ref is None else ref["reproduced"],
                     # the words report.md gives: a partial verdict is "yes on accuracy and the run record; ...",
                     # never shown as "not judged"
                     "verdict": None if ref is None else report.verdict_words(ref)})
    stats = {k: spread([r[k] for r in rows]) for k in FIGURES}
    boots = [(r["provenance"].get("host") or {}).get("boot") or None for r in loaded]
    return {"kind": list(reference.run_kind(loaded[0])) if loaded else None, "runs": rows, "spread": stats,
            # which machines, as the runs recorded them (provenance host.boot: this boot of the machine whose kernel
            # rank 0 ran on; a reboot is another): summaries of one kind from several machines give the
            # machine-to-machine spread; a run that recorded none is counted, never dropped
            "machines": sorted({b for b in boots if b}), "machines_unrecorded": boots.count(None),
            "reproduced_runs": (", ".join(f"{n} {w}" for w, n in counts.items() if n) + f" (of {len(rows)})"
                                if rows else None),
            "tolerances_from_this_spread": tolerances(stats["accuracy"], stats["train_seconds"]),
            "cpus": sorted({r["cpu"] for r in rows if r["cpu"]})}


def markdown(title: str, s: dict) -> str:
    lines = [f"# {title}", "", "| figure | mean ± sd (range) over the runs |", "|---|---|"]
    lines += [f"| {label} | {shown(s['spread'][k], fmt)} |" for k, (_, label, fmt) in FIGURES.items()]
    lines += ["", "| run | seed | status | val accuracy | epochs | training (s) | reproduced (reference) |",
              "|---|---|---|---|---|---|---|"]
    for r in s["runs"]:
        acc = "-" if r["accuracy"] is None else f"{r['accuracy']:.4f}"
        secs = "-" if r["train_seconds"] is None else f"{r['train_seconds']:.1f}"
        ref = "no reference" if r.get("reference") is None else r.get("verdict") or {
            True: "yes", False: "no"}.get(r["reproduced"], "not judged")
        lines.append(f"| `{r['run']}` | {r['seed']} | {r['status']} | {acc} | {r['epochs']} | {secs} | {ref} |")
    tol = s["tolerances_from_this_spread"]
    lines += ["", f"Each run's verdict against the committed runs: {s['reproduced_runs'] or 'no runs'}. "
              f"Tolerances this spread gives ({tol['rule']}): accuracy ±{tol['accuracy_points']} points, training "
              f"time ±{tol['time_relative']} (relative), on {', '.join(s['cpus']) or 'unknown CPU'}; "
              f"{len(s['machines'])} machine boot(s) recorded"
              + (f", {s['machines_unrecorded']} run(s) recorded none" if s["machines_unrecorded"] else "") + ".", ""]
    return "\n".join(lines)


def write(results_dir: Path, name: str, doc: dict, text: str, runs: list[Path] = ()) -> Path:
    """summary.{json,md}, and each run's config.json and metrics.json under runs/<id>/: a summary committed under
    results/reference/ carries the setup its runs were measured on (reference.committed_runs reads it)."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = results_dir.resolve() / f"{name}-{stamp}"
    tmp = out.with_name(f".staging-{out.name}")
    tmp.mkdir(parents=True)
    (tmp / "summary.json").write_text(json.dumps(doc, indent=1, default=str))
    (tmp / "summary.md").write_text(text)
    for run in runs:
        (tmp / "runs" / run.name).mkdir(parents=True)
        for f in ("config.json", "metrics.json"):
            if (run / f).is_file():
                shutil.copy2(run / f, tmp / "runs" / run.name / f)
    os.replace(tmp, out)
    return out
