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


def judge(one: dict | None, two: dict | None, fp32: dict | None = None) -> list[dict]:
    """The claims table for a 1-socket run, a 2-socket run and an optional FP32 run (any may be None)."""
    claims = table()
    main = two or one
    f = facts(main) if main else {}
    f["fp32_run"] = None if fp32 and fp32["metrics"].get("status") == "success" else "no FP32 run (--fp32)"
    if one and two:  # the ratio claims need both runs to share the protocol and the kind of sockets
        f1 = facts(one)
        f["real_sockets"] = f1["real_sockets"] or f["real_sockets"]
        f["paper_protocol"] = f1["paper_protocol"] or f["paper_protocol"]

    def minutes(run):
        s = run and run["metrics"].get("train_seconds")
        return s / 60 if s else None

    def acc(run):
        return run and run["metrics"].get("final_val_accuracy")

    t1, t2 = minutes(one), minutes(two)
    speedup = t1 / t2 if t1 and t2 else None
    values = {"accuracy": acc(main), "epochs": main and main["metrics"].get("epochs_run"),
              "bf16_equals_fp32": abs(acc(main) - acc(fp32)) if acc(main) is not None and acc(fp32) is not None
              else None,
              "minutes_1s": t1, "minutes_2s": t2, "speedup": speedup,
              "efficiency": speedup / 2 if speedup else None}
    fmt = {"fraction": "{:.3f}", "epochs": "{:.0f}", "minutes": "{:.2f} min", "x": "{:.2f}x"}
    rows = []
    for key, claim in claims.items():
        if key == "reference":
            continue
        missing = [f"{need}: {f[need]}" for need in claim["needs"] if f.get(need)]
        if key == "minutes_1s" and one:
            missing = [f"{n}: {facts(one)[n]}" for n in claim["needs"] if n != "fp32_run" and facts(one).get(n)]
        value = values[key]
        shown = "-" if value is None else fmt[claim["unit"]].format(value)
        verdict = ("not comparable: " + "; ".join(missing)) if missing else _verdict(claim, value)
        rows.append({"claim": key, "text": claim["text"], "paper": fmt[claim["unit"]].format(claim["value"]),
                     "tolerance": _tolerance(claim), "this_host": shown, "value": value, "verdict": verdict})
    return rows


def markdown(rows: list[dict]) -> str:
    lines = ["| claim | paper | tolerance | this host | verdict |", "|---|---|---|---|---|"]
    lines += [f"| {r['text']} | {r['paper']} | {r['tolerance']} | {r['this_host']} | {r['verdict']} |" for r in rows]
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------------------------------------------ the reference runs
def _kind(run: dict) -> tuple:
    plan = run["plan"]
    return run["config"].get("profile"), plan.get("sockets"), bool(plan.get("emulated"))


def find_reference(run: dict, reference_dir: Path = REFERENCE_DIR) -> dict | None:
    """The committed reference run of the same profile, socket count and emulation, if there is one."""
    if not reference_dir.is_dir():
        return None
    for d in sorted(reference_dir.iterdir()):
        if (d / "metrics.json").is_file() and Path(run["dir"]).resolve() != d.resolve():
            ref = load_run(d)
            if _kind(ref) == _kind(run) and ref["metrics"].get("status") == "success":
                return ref
    return None


def against_reference(run: dict, ref: dict | None) -> dict | None:
    """`reproduced: yes/no` and why, with the README's tolerances: accuracy within +-3 points; training time within
    +-30 % when the CPU model is the reference's (other CPUs are not judged on time, and say so)."""
    if ref is None:
        return None
    tol = table()["reference"]
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
        why.append(f"accuracy {acc:.4f} vs {ref_acc:.4f} ({diff:+.1f} points, tolerance +-{tol['accuracy_points']:g}): "
                   f"{'within' if good else 'outside'}")
    cpu = ((run["provenance"].get("host") or {}).get("cpu") or {}).get("model_name")
    ref_cpu = ((ref["provenance"].get("host") or {}).get("cpu") or {}).get("model_name")
    t, rt = m.get("train_seconds"), r.get("train_seconds")
    time_judged = bool(cpu and cpu == ref_cpu and t and rt)
    if time_judged:
        rel = t / rt - 1
        good = abs(rel) <= tol["time_relative"]
        ok &= good
        why.append(f"training time {t:.0f} s vs {rt:.0f} s ({rel:+.0%}, tolerance +-{tol['time_relative']:.0%}): "
                   f"{'within' if good else 'outside'}")
    else:
        why.append(f"training time not judged: this CPU ({cpu}) is not the reference's ({ref_cpu})")
    return {"reproduced": ok, "reference": Path(ref["dir"]).name, "why": why, "time_judged": time_judged}
