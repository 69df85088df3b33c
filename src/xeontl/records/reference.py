"""The bundle's own reference runs (results/reference/): is this run a reproduction of them? A run of the same
profile, sockets, emulation and recipe is judged on its own record's health, on the accuracy spread of every committed
run of its recipe, and on the time spread of its CPU kind across machines (claims.toml [reference]). This is the
"Reproduced: yes/no" of every report. Pure: run dirs in, a verdict out."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from xeontl.common import records, stats
from xeontl.experiment import config
from xeontl.records.claims import REFERENCE_DIR, load_run, table


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
    owner: dict[int, tuple] = {}  # CPU -> (the rank holding it, its host and node)
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
        doc = records.read_record(path, "repeats-summary")
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
    FLOOR, SD_MULTIPLE = stats.FLOOR, stats.SD_MULTIPLE
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
