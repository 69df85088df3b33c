"""The paper's claims judged from data: claims.toml holds each claim's value, tolerance and the facts a run needs to
be comparable; `facts()` reads those facts from structured fields of a run dir (metrics, plan, provenance, config);
`judge()` gives every claim a verdict (PASS, FAIL, or "not comparable: <which facts are missing>"). The bundle's own
committed reference runs are judged the same way (`against_reference`). Pure: run dirs in, rows out."""

from __future__ import annotations

import json
import tomllib
from importlib import resources
from pathlib import Path

PAPER_DATASETS = {"colorectal_histology", "kather_texture_2016_image_tiles_5000"}
PAPER_CORES = [56, 56]
REFERENCE_DIR = Path(__file__).resolve().parents[2] / "results" / "reference"


def table() -> dict:
    return tomllib.loads(resources.files("xeontl").joinpath("claims.toml").read_text())


def load_run(run: Path) -> dict:
    def read(name):
        p = Path(run) / name
        return json.loads(p.read_text()) if p.exists() else {}

    return {"dir": str(run), "metrics": read("metrics.json"), "plan": read("plan.json"),
            "provenance": read("provenance.json"), "config": read("config.json")}


def facts(run: dict) -> dict[str, str | None]:
    """Each fact: None when the run has it, else why not (one short phrase)."""
    m, plan, prov, cfg = run["metrics"], run["plan"], run["provenance"], run["config"]
    data, weights = m.get("dataset") or {}, m.get("weights") or {}
    host = prov.get("host") or {}
    topo, flags = host.get("topology") or {}, (host.get("cpu") or {}).get("flags_of_note") or {}
    math = prov.get("math_path") or {}
    out: dict[str, str | None] = {}
    out["paper_data"] = None if data.get("name") in PAPER_DATASETS else f"dataset {data.get('name') or 'unknown'}"
    out["paper_weights"] = None if weights.get("kind") not in (None, "random") and "v1.5" in str(
        weights.get("topology", "")) else f"weights {weights.get('kind') or 'unknown'} ({weights.get('topology')})"
    protocol = []
    if m.get("feature_cache") or cfg.get("feature_cache"):
        protocol.append("feature cache")
    if m.get("resumed_from"):
        protocol.append("resumed")
    if cfg.get("profile") not in (None, "paper"):
        protocol.append(f"profile {cfg.get('profile')}")
    ran = m.get("precision") or {}
    if ran.get("precision") == "fp32" and cfg.get("precision") != "fp32":  # "auto" on a CPU without BF16 kernels
        protocol.append("ran fp32, not the paper's BF16")
    out["paper_protocol"] = ", ".join(protocol) or None
    hw = []
    if plan.get("emulated"):
        hw.append("emulated sockets")
    if topo and (topo.get("sockets"), topo.get("cores_per_socket")) != (2, PAPER_CORES):
        hw.append(f"{topo.get('sockets')} socket(s) x {topo.get('cores_per_socket')} cores")
    if not flags.get("amx_bf16"):
        hw.append("no AMX")
    elif math and not math.get("amx_used"):
        hw.append("AMX not dispatched")
    out["paper_hardware"] = ", ".join(hw) or None
    out["real_sockets"] = "emulated sockets" if plan.get("emulated") else None
    return out


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


def _minutes(run):
    s = run and run["metrics"].get("train_seconds")
    return s / 60 if s else None


def _acc(run):
    return run and run["metrics"].get("final_val_accuracy")


def _best_acc(run):
    """The kit's "maximum validation accuracy": the best epoch's, not the restored weights' final evaluation."""
    rows = (run and run["metrics"].get("per_epoch")) or []
    accs = [r["val_accuracy"] for r in rows if r.get("val_accuracy") is not None]
    return max(accs) if accs else None


def per_class(run) -> dict | None:
    """Per-class precision and recall from the run's confusion matrix (rows: true class, columns: predicted)."""
    cm = run and run["metrics"].get("confusion_matrix")
    if not cm:
        return None
    n = len(cm)
    col = [sum(cm[i][j] for i in range(n)) for j in range(n)]
    return {"precision": [cm[j][j] / col[j] if col[j] else 0.0 for j in range(n)],
            "recall": [cm[i][i] / sum(cm[i]) if sum(cm[i]) else 0.0 for i in range(n)]}


def _kit_per_class(run, kit: dict) -> float | None:
    got = per_class(run)
    if got is None or len(got["precision"]) != len(kit["precision_bf16"]):
        return None
    return max(abs(a - b) for what in ("precision", "recall") for a, b in zip(got[what], kit[f"{what}_bf16"]))


def judge(one: dict | None, two: dict | None, fp32: dict | None = None, one_fp32: dict | None = None) -> list[dict]:
    """The claims table for a 1-socket run, a 2-socket run, an FP32 2-socket run and an FP32 1-socket run (any may
    be None): the paper's claims, then Intel's kit's."""
    claims = table()
    main = two or one
    f = facts(main) if main else {}
    f["fp32_run"] = None if fp32 and fp32["metrics"].get("status") == "success" else "no FP32 run (--fp32)"
    fp32_1s = None if one_fp32 and one_fp32["metrics"].get("status") == "success" else "no 1-socket FP32 run (--fp32)"
    f["fp32_1s_run"] = fp32_1s
    if one and two:  # the ratio claims need both runs to share the protocol and the kind of sockets
        f1 = facts(one)
        f["real_sockets"] = f1["real_sockets"] or f["real_sockets"]
        f["paper_protocol"] = f1["paper_protocol"] or f["paper_protocol"]
    # the claims about a 1-socket run are judged on its own facts
    f_1s = {**f, **facts(one), "fp32_1s_run": fp32_1s} if one else {**f, "run": "no 1-socket run"}

    t1, t2 = _minutes(one), _minutes(two)
    t1_fp32 = _minutes(one_fp32)
    speedup = t1 / t2 if t1 and t2 else None
    values = {"accuracy": _acc(main), "epochs": main and main["metrics"].get("epochs_run"),
              "bf16_equals_fp32": abs(_acc(main) - _acc(fp32)) if _acc(main) is not None and _acc(fp32) is not None
              else None,
              "minutes_1s": t1, "minutes_2s": t2, "speedup": speedup,
              "efficiency": speedup / 2 if speedup else None,
              "kit_accuracy_bf16": _best_acc(one), "kit_epochs_bf16": one and one["metrics"].get("epochs_run"),
              "kit_minutes_bf16": t1, "kit_per_class_bf16": _kit_per_class(one, claims["kit"]),
              "kit_accuracy_fp32": _best_acc(one_fp32),
              "kit_epochs_fp32": one_fp32 and one_fp32["metrics"].get("epochs_run"), "kit_minutes_fp32": t1_fp32,
              "kit_bf16_speedup": t1_fp32 / t1 if t1 and t1_fp32 else None}
    fmt = {"fraction": "{:.3f}", "epochs": "{:.0f}", "minutes": "{:.2f} min", "x": "{:.2f}x"}
    rows = []
    for key, claim in claims.items():
        if key in ("reference", "kit"):
            continue
        known = f_1s if claim.get("run", "").startswith("1s") or key == "minutes_1s" else f
        missing = [f"{need}: {known[need]}" for need in claim["needs"] if known.get(need)]
        if "run" in known and claim.get("run"):
            missing.insert(0, known["run"])
        value = values[key]
        shown = "-" if value is None else fmt[claim["unit"]].format(value)
        verdict = ("not comparable: " + "; ".join(missing)) if missing else _verdict(claim, value)
        rows.append({"claim": key, "text": claim["text"], "paper": fmt[claim["unit"]].format(claim["value"]),
                     "tolerance": _tolerance(claim), "this_host": shown, "value": value, "verdict": verdict,
                     "source": "Intel's kit" if key.startswith("kit_") else "paper"})
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
    fmt = {"fraction": "{:.3f}", "epochs": "{:.1f}", "minutes": "{:.2f} min", "x": "{:.2f}x"}
    claims = table()
    rows = []
    for k, first in enumerate(per_run[0]):
        claim = claims[first["claim"]]
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
    """The claims table; over repeats, the value is mean ± sd (range) and a column says how many runs met it."""
    many = any("runs_met" in r for r in rows)
    lines = ["| claim | paper | tolerance | this host | " + ("runs meeting it | " if many else "") + "verdict |",
             "|---|---|---|---|" + ("---|" if many else "") + "---|"]
    lines += [f"| {r['text']} | {r['paper']} | {r['tolerance']} | {r['this_host']} | "
              + (f"{r.get('runs_met', '-')} | " if many else "") + f"{r['verdict']} |" for r in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ the reference runs
def run_kind(run: dict) -> tuple:
    """What makes runs comparable with a reference: profile, sockets, emulated."""
    plan = run["plan"]
    return run["config"].get("profile"), plan.get("sockets"), bool(plan.get("emulated"))


def find_reference(run: dict, reference_dir: Path = REFERENCE_DIR) -> dict | None:
    """The committed reference run of the same profile, socket count and emulation, if there is one; of several, the
    one whose time can be compared with this run's (same CPU, same backbone graph), else the first."""
    if not reference_dir.is_dir():
        return None
    found = []
    for d in sorted(reference_dir.iterdir()):
        if (d / "metrics.json").is_file() and Path(run["dir"]).resolve() != d.resolve():
            ref = load_run(d)
            if run_kind(ref) == run_kind(run) and ref["metrics"].get("status") == "success":
                found.append(ref)
    return max(found, key=lambda ref: time_comparable(run, ref) is None, default=None)


def batch_norm(run: dict) -> str:
    """How the run's backbone ran its batch norms (model.describe_weights); runs before folding existed: separate."""
    return (run["metrics"].get("weights") or {}).get("batch_norm") or "separate layers"


def time_comparable(run: dict, ref: dict) -> str | None:
    """None when the two runs' training times can be compared, else why not: the same CPU model, and the same
    backbone graph (folding its batch norms took 10-12 % off a step on Zen 5)."""
    cpu, ref_cpu = cpu_kind(run), cpu_kind(ref)
    if not cpu or cpu != ref_cpu:
        return f"this CPU ({cpu}) is not the reference's ({ref_cpu})"
    if batch_norm(run) != batch_norm(ref):
        return f"the reference's backbone ran its batch norms as {batch_norm(ref)}, this run's as {batch_norm(run)}"
    return None


def cpu_kind(run: dict) -> str | None:
    """The CPU a run's time can be compared on: its model name, and family/model where recorded (a VM's model name
    can be as bare as "AMD EPYC" for every generation: Zen 3 is family 25, Zen 5 family 26)."""
    c = (run["provenance"].get("host") or {}).get("cpu") or {}
    if not c.get("model_name"):
        return None
    return c["model_name"] + (f" (family {c['family']} model {c['model']})" if c.get("family") else "")


def reference_tolerances(run: dict, reference_dir: Path = REFERENCE_DIR) -> dict | None:
    """The tolerances measured for runs of this kind: the newest committed `--repeats` summary of the same profile,
    socket count and emulation (claims.toml [reference]) measured on this run's CPU (cpu_kind: summaries before
    2026-12 name the model alone, which matches none), else the newest of any CPU, with where they come from."""
    pattern = table()["reference"]["tolerances_from"]
    found = sorted(reference_dir.glob(pattern)) if reference_dir.is_dir() else []
    kind = cpu_kind(run)
    usable = []
    for path in reversed(found):
        doc = json.loads(path.read_text())
        if tuple(doc.get("kind") or ()) == run_kind(run) and len(doc.get("runs") or []) >= 5:
            usable.append((kind is not None and kind in (doc.get("cpus") or []), path, doc))
    if not usable:
        return None
    _, path, doc = max(usable, key=lambda u: u[0])  # the first (newest) of this CPU's, else the newest
    return {**doc["tolerances_from_this_spread"], "source": str(path.relative_to(reference_dir)),
            "runs": len(doc["runs"])}


def against_reference(run: dict, ref: dict | None, reference_dir: Path = REFERENCE_DIR) -> dict | None:
    """`reproduced: yes/no` and why, with tolerances measured on N >= 5 runs of this kind (reference_tolerances):
    accuracy within them; training time too when the CPU model is the reference's (other CPUs are not judged on
    time, and say so). No measurement of this kind: not judged, and says how to make one."""
    if ref is None:
        return None
    tol = reference_tolerances(run, reference_dir)
    if tol is None:
        return {"reproduced": None, "reference": Path(ref["dir"]).name, "time_judged": False, "tolerances": None,
                "why": ["not judged: no committed tolerance measurement for runs of this kind (invoke reproduce "
                        "--repeats 5 with the same profile and sockets, committed under results/reference/)"]}
    m, r = run["metrics"], ref["metrics"]
    why, ok = [], True
    acc, ref_acc = m.get("final_val_accuracy"), r.get("final_val_accuracy")
    if acc is None or m.get("status") != "success":
        ok = False
        why.append(f"run status {m.get('status')}")
    else:
        diff = (acc - ref_acc) * 100
        good = abs(diff) <= tol["accuracy_points"]
        ok &= good
        why.append(f"accuracy {acc:.4f} vs {ref_acc:.4f} ({diff:+.1f} points, tolerance +-{tol['accuracy_points']:g}, "
                   f"measured on {tol['runs']} runs: {tol['source']}): {'within' if good else 'outside'}")
    t, rt = m.get("train_seconds"), r.get("train_seconds")
    not_comparable = time_comparable(run, ref)
    time_judged = bool(not not_comparable and t and rt)
    if time_judged:
        rel = t / rt - 1
        good = abs(rel) <= tol["time_relative"]
        ok &= good
        why.append(f"training time {t:.0f} s vs {rt:.0f} s ({rel:+.0%}, tolerance +-{tol['time_relative']:.0%}): "
                   f"{'within' if good else 'outside'}")
    else:
        why.append(f"training time not judged: {not_comparable or 'no training time'}")
    return {"reproduced": ok, "reference": Path(ref["dir"]).name, "why": why, "time_judged": time_judged,
            "tolerances": tol}
