"""`invoke bench --stacks`: the default stack (intel-tensorflow 2.14) and the paper's (intel-tensorflow-avx512 2.10.0)
side by side, each in its own image, on the quick start's 2-worker plan: the epoch in bf16 and in fp32 (the bf16
speedup), interleaved (default bf16, default fp32, paper bf16, paper fp32, then again) so a slow phase of a shared
machine hits every variant alike, medians of the repeats; then the demo run itself once per stack, same seed, for
its accuracy. Writes bench-stacks-<id>/stacks.json and stacks.md.
"""

from __future__ import annotations

import json
import statistics
from datetime import datetime, timezone
from pathlib import Path

from xeontl.common import records
from xeontl.launch.options import Options
from xeontl.measure.bench import SIZES, _train_run
from xeontl.placement import plan as planlib
from xeontl.placement import topology
from xeontl.supply import dockerapi
from xeontl.supply import image as imagelib
from xeontl.supply.stacks import STACKS


def variants(two: planlib.Plan, train: dict, profile: str = "demo") -> dict[str, dict]:
    """Options per variant: both stacks' images, bf16 and fp32, the 2-worker plan, the same data and seed."""
    out = {}
    for name, stack in STACKS.items():
        for precision in ("bf16", "fp32"):
            out[f"{name}_{precision}"] = dict(sockets=2, emulate_sockets=two.emulated, profile=profile, native=False,
                                              image=stack.tag, stack=name,
                                              overrides={**train, "precision": precision})
    return out


def _software(run: str | None) -> dict:
    try:
        prov = records.read_record(Path(run) / "provenance.json", "provenance")
    except (TypeError, OSError, ValueError):
        return {}
    math = prov.get("math_path") or {}
    return {"tensorflow": (prov.get("software") or {}).get("tensorflow_distribution"),
            "onednn": math.get("onednn_version"), "isas": math.get("isas_dispatched"),
            "bf16_kernels_seen": math.get("bf16_kernels_seen")}


def _epoch_s(figures: dict) -> float | None:
    per = figures.get("per_epoch") or []
    steady = per[1:] or per
    return statistics.median(e["seconds"] for e in steady) if steady else None


def measure(two: planlib.Plan, sz: dict, runs: Path) -> dict:
    """The interleaved epoch variants, then one demo run per stack; every run's figures kept."""
    opts = variants(two, sz["train"], sz["profile"])
    raw: dict = {name: [] for name in opts}
    for r in range(sz["train_repeats"]):
        for name, kw in opts.items():
            print(f"[bench] stacks: {name} (repeat {r + 1}/{sz['train_repeats']})", flush=True)
            raw[name].append(_train_run(Options(**kw, results_dir=runs, report=False)))
    demo = {}
    for name, stack in STACKS.items():
        print(f"[bench] stacks: the demo run on the {name} stack ({stack.tag})", flush=True)
        demo[name] = _train_run(Options(sockets=2, emulate_sockets=two.emulated, profile=sz["profile"], native=False,
                                        image=stack.tag, stack=name, results_dir=runs, report=False,
                                        overrides=sz.get("tta") if sz["profile"] != "demo" else {}))
    return {"variants": raw, "demo": demo}


def assemble(raw: dict) -> dict:
    """Per stack: median images/s and epoch seconds in bf16 and fp32, the bf16 speedup, the demo's accuracy, the
    software and kernels each ran; and the paper stack against the default."""
    out: dict = {}
    for name in STACKS:
        row: dict = {}
        for precision in ("bf16", "fp32"):
            rs = [x for x in raw["variants"][f"{name}_{precision}"] if x["img_s"] is not None]
            row[precision] = {"img_s": statistics.median(x["img_s"] for x in rs) if rs else None,
                              "epoch_s": statistics.median(_epoch_s(x) for x in rs) if rs else None,
                              "repeats_img_s": [x["img_s"] for x in raw["variants"][f"{name}_{precision}"]],
                              "ran": (rs[0]["precision"] if rs else None),
                              "software": _software(rs[0]["run"]) if rs else {}}
        b, f = row["bf16"]["img_s"], row["fp32"]["img_s"]
        row["bf16_speedup"] = b / f if b and f else None
        d = raw["demo"][name]
        row["demo"] = {"final_val_accuracy": d.get("final_val_accuracy"), "epochs": len(d.get("per_epoch") or []),
                       "train_s": d.get("train_s"), "precision": d.get("precision"), "run": d.get("run"),
                       "reason": d.get("reason")}
        out[name] = row
    p, dflt = out["paper"], out["default"]
    out["paper_vs_default"] = {prec: (p[prec]["img_s"] / dflt[prec]["img_s"]
                                      if p[prec]["img_s"] and dflt[prec]["img_s"] else None)
                               for prec in ("bf16", "fp32")}
    return out


def table(res: dict, host: dict) -> str:
    def num(v, fmt="{:.1f}"):
        return "n/a" if v is None else fmt.format(v)

    lines = [f"# The two stacks side by side: {host['cpu']}, {host['note']}", "",
             f"{res['size']} sizes: the 2-worker demo plan, {res['repeats']} interleaved repeats (medians); the demo "
             f"run once per stack, same seed.", "",
             "| | default: intel-tensorflow 2.14.0 (Python 3.11) | paper: intel-tensorflow-avx512 2.10.0 (Python 3.9) "
             "| paper / default |", "|---|---|---|---|"]
    d, p, r = res["default"], res["paper"], res["paper_vs_default"]
    for prec in ("bf16", "fp32"):
        cells = [f"{num(x[prec]['img_s'])} ({num(x[prec]['epoch_s'], '{:.2f}')})" for x in (d, p)]
        lines.append(f"| epoch {prec}: images/s (s per epoch) | {cells[0]} | {cells[1]} | {num(r[prec], '{:.3f}')} |")
    lines.append(f"| bf16 speedup over fp32 | {num(d['bf16_speedup'], '{:.2f}x')} | {num(p['bf16_speedup'], '{:.2f}x')}"
                 f" | |")
    for key, label in (("final_val_accuracy", "demo val accuracy"), ("epochs", "demo epochs"),
                       ("train_s", "demo training (s)")):
        fmt = "{:.4f}" if key == "final_val_accuracy" else "{:.0f}" if key == "epochs" else "{:.1f}"
        lines.append(f"| {label} | {num(d['demo'][key], fmt)} | {num(p['demo'][key], fmt)} | |")
    for prec in ("bf16", "fp32"):
        lines.append(f"| oneDNN, kernels ({prec}) | {d[prec]['software'].get('onednn')} "
                     f"{d[prec]['software'].get('isas')} | {p[prec]['software'].get('onednn')} "
                     f"{p[prec]['software'].get('isas')} | |")
    return "\n".join(lines) + "\n"


def run(quick: bool, results_dir: Path, sizes: str | None = None) -> Path:
    """Both images present and built from this checkout first (one line if not), then measure, assemble, write."""
    for stack in STACKS.values():
        how = "invoke build --offline" + ("" if stack.name == "default" else f" --stack {stack.name}")
        dockerapi.require_image(stack.tag, imagelib.checkout_inputs_hash(stack), how)
    name = sizes or ("quick" if quick else "full")
    sz = SIZES[name]
    out = results_dir / f"bench-stacks-{datetime.now(timezone.utc).strftime('%Y%m%d-%H%M%S')}"
    out.mkdir(parents=True)
    topo = topology.live()
    two = planlib.make_plan(topo, 2, emulate="auto")
    cpu = topo.summary()
    host = {**cpu, "cpu": _model_name(), "note": "2 emulated sockets of one core each" if two.emulated
            else "real sockets"}
    runs = out.parent / f"{out.name}-runs"
    runs.mkdir()
    raw = measure(two, sz, runs)
    res = {**assemble(raw), "size": name, "repeats": sz["train_repeats"], "host": host}
    (out / "stacks.json").write_text(json.dumps({"result": res, "raw": raw}, indent=1, default=str))
    (out / "stacks.md").write_text(table(res, host))
    print((out / "stacks.md").read_text())
    return out


def _model_name() -> str:
    from xeontl.measure.probes import _cpuinfo

    return _cpuinfo()["model_name"]
