"""`invoke bench --check-host`: in a few minutes, can this host reproduce the paper's times, before a reviewer spends
an hour finding out? It reads the CPU, sockets, cores and NUMA layout, runs short probes on one socket's cores with
the paper's threads (bf16 and fp32 matmul with what oneDNN dispatched, the bf16 matmul curve on one core and on the
socket through TensorFlow and through oneDNN's own API with the weights reordered once, AMX's tile unit alone, a
memory copy, the backbone's forward pass at the paper's shape: 224 px, batch 32, and a training step's time by
oneDNN primitive), and predicts the paper's 1- and 2-socket times from them.

The prediction's model: a step of the paper's training is bounded by the frozen backbone's forward pass (the head
is one Dense layer), so an epoch takes (train + validation images) / the measured forward rate, and the run takes
the paper's ~44 epochs of them; two sockets split the images and lose what the paper's own scaling efficiency
(0.92) says. Start-up and the final evaluation are left out. `invoke bench` checks this model against real runs
(figure prediction_error_1w: measured / predicted training rate - 1, on the demo) and the report names that error.
"""

from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from pathlib import Path

from xeontl.experiment import runtime
from xeontl.measure import probes
from xeontl.measure.probes import OUTSIDE_ONEDNN as OUTSIDE  # noqa: F401  (checkhost.OUTSIDE: its tables' name for it)
from xeontl.measure.probes import step_profile  # noqa: F401  (checkhost.step_profile: the verdict's and the tests' name)
from xeontl.placement import plan as planlib
from xeontl.placement import topology
from xeontl.records import claims
from xeontl.supply import stacks

PAPER_SOCKETS, PAPER_CORES = 2, 56
PAPER_TRAIN, PAPER_VAL = 4000, 1000  # images per epoch (train[:80%] / train[80%:] of 5000)
PAPER_EFFICIENCY = 0.92  # the paper's 2-socket scaling efficiency (1.83x)
SIZES = {"matmul": 2048, "bandwidth_mib": 256, "image": 224, "batch": 32, "repeats": 3, "curve": 8192}


def bf16_not_run(flags) -> dict | None:
    """A bf16 probe's record where it is not run: a CPU without BF16 kernels is measured in fp32 and its bf16 probes
    are not run (check-host's and the bench's), what it lacks said (lacks()), not found out as a failed probe (TF's
    BF16 rewrite fails there: runtime.BF16_FLAGS). None where the CPU has them."""
    if runtime.bf16_kernels(flags):
        return None
    return {"median": None, "skipped": f"this CPU lacks BF16 kernels (none of {', '.join(runtime.BF16_FLAGS)})",
            "reason": f"not run (no BF16 on this CPU: lacks {'/'.join(runtime.BF16_FLAGS)})"}


def measure(sizes: dict = SIZES) -> dict:
    """The probes, on one socket's usable cores with its threads (a fresh process each: probes._probe)."""
    from xeontl.records.provenance import cpuinfo

    topo = topology.live()
    one = planlib.make_plan(topo, 1)
    w, env = one.workers[0], one.env
    cpu = cpuinfo()
    played = stacks.played()
    if played:
        print(f"[check-host] {played}", flush=True)
    if os.environ.get(stacks.CPUINFO_ENV):  # tests only: another CPU kind played on this one (its features, but
        cpu = {**cpu, **stacks.run_cpu()}   # none this one lacks: its probes run here, AMX's on a Zen would fault)
        cpu["flags_of_note"] = {f: f in cpu["flags"] for f in cpu.get("flags_of_note") or {}}
    bf16 = runtime.bf16_kernels(cpu.get("flags") or [])
    precision = "bf16" if bf16 else "fp32"
    raw = {"cpu": {k: cpu.get(k) for k in ("model_name", "vendor", "family", "model", "mhz", "flags")},
           "flags_of_note": cpu.get("flags_of_note"), "topology": topo.summary(), "cores": w.cores,
           "cpus": topology.cpulist(w.cpus), "sizes": sizes, "precision": precision, "played": played,
           "flags_error": None if cpu.get("flags") else stacks.cpu_fields().get("error") or "no flags"}
    no_bf16 = bf16_not_run(cpu.get("flags") or [])
    print(f"[check-host] matmul fp32{'/bf16' if bf16 else ' (bf16 not run: no BF16 kernels)'} on one socket: "
          f"{w.cores} core(s), CPUs {raw['cpus']}", flush=True)
    raw["matmul"] = {p: no_bf16 if p == "bf16" and no_bf16 else
                     probes._probe(w, env, "matmul", p, sizes["matmul"], 0, sizes["repeats"] + 2)
                     for p in ("fp32", "bf16")}
    print("[check-host] memory copy bandwidth", flush=True)
    raw["bandwidth"] = probes._probe(w, env, "bandwidth", "fp32", sizes["bandwidth_mib"], 0, sizes["repeats"] + 2)
    print(f"[check-host] backbone forward at the paper's shape ({sizes['image']} px, batch {sizes['batch']}, "
          f"{precision})", flush=True)
    raw["backbone"] = probes._probe(w, env, "backbone", precision, sizes["image"], sizes["batch"], sizes["repeats"])
    if bf16:
        print(f"[check-host] bf16 matmul curve {probes.CURVE_MIN}-{sizes['curve']}: one core, then the socket",
              flush=True)
    core = planlib.make_plan(topo, 1, cores_per_socket=1).workers[0]
    raw["curve"] = {where: no_bf16 or probes._probe(at, env, "curve", "bf16", sizes["curve"], 0, sizes["repeats"])
                    for where, at in (("one core", core), ("socket", w))}
    if bf16:
        print("[check-host] below TensorFlow: oneDNN's bf16 matmul called directly (weights packed per call vs "
              "reordered once), one core, then the socket" + ("; AMX's tile unit alone" if "amx_tile" in cpu["flags"]
                                                              else ""), flush=True)
    else:
        print("[check-host] the bf16 curve and oneDNN's bf16 probes: not run (no BF16 kernels)", flush=True)
    raw["onednn"] = {where: no_bf16 or probes._probe(at, env, "onednn", "bf16", sizes["curve"], 0, sizes["repeats"])
                     for where, at in (("one core", core), ("socket", w))}
    raw["tmul"] = (probes._probe(core, env, "tmul", "bf16", 0, 0, sizes["repeats"]) if "amx_tile" in cpu["flags"]
                   else {"median": None, "skipped": "no AMX (amx_tile) in this CPU"})
    print("[check-host] where a training step's time goes (oneDNN's per-primitive times)", flush=True)
    raw["step"] = probes._probe(w, env, "step", precision, sizes["image"], sizes["batch"], sizes["repeats"])
    return raw


# oneDNN primitive kinds, grouped as the step's time is read: the convolutions (AMX on SPR), the layout and precision
# conversions (reorders: fp32 <-> bf16, plain <-> blocked), the rest of oneDNN's work
CONFIGS = {"gflops": "TensorFlow (fp32 tensors, AMP casts, weights packed per call)",
           "direct_plain_gflops": "oneDNN direct, weights packed per call",
           "direct_once_gflops": "oneDNN direct, weights reordered once"}


def curve(raw: dict, limit: dict) -> list[dict]:
    """The bf16 matmul curve: per size and core count, GFLOP/s through TensorFlow and through oneDNN's own API
    (weights packed per call / reordered once), each against those cores' theoretical bf16 limit; the share of a TF
    call spent in reorders and outside oneDNN, the kernels that ran."""
    rows: dict[tuple[str, int], dict] = {}
    blank = {"gflops": None, "fraction": None, "reorder_share": None, "outside_share": None, "kernels": None,
             "direct_plain_gflops": None, "direct_once_gflops": None, "direct_once_fraction": None,
             "direct_implementation": None, "weights_reorder_s": None}
    for where in ("one core", "socket"):
        cores = 1 if where == "one core" else raw["cores"]
        hw = limit["bf16_gflops_per_core"] and limit["bf16_gflops_per_core"] * cores
        tf_probe, direct = (raw.get("curve") or {}).get(where) or {}, (raw.get("onednn") or {}).get(where) or {}

        def row(size, where=where, cores=cores):
            return rows.setdefault((where, size), {"cores": cores, "size": size, **blank})

        for p in tf_probe.get("points") or []:
            row(p["size"]).update(gflops=p["gflops"], fraction=hw and p["gflops"] / hw,
                                  reorder_share=p.get("reorder_share"), outside_share=p.get("outside_share"),
                                  kernels=p.get("kernels"))
        left_out = tf_probe.get("skipped")  # sizes left out; a string: the probe was not run (the CPU lacks BF16)
        for size in (left_out.get("sizes") or []) if isinstance(left_out, dict) else []:
            row(size)["kernels"] = [f"not run: {left_out['why']}"]
        for p in direct.get("points") or []:
            row(p["size"]).update(direct_plain_gflops=p["plain"]["gflops"], direct_once_gflops=p["once"]["gflops"],
                                  direct_once_fraction=hw and p["once"]["gflops"] / hw,
                                  direct_implementation=p["once"]["implementation"],
                                  weights_reorder_s=p["once"]["reorder_once_s"])
    return [rows[k] for k in sorted(rows, key=lambda k: (k[0] != "one core", k[1]))]


def where_amx_stops(rows: list[dict], limit: dict, tmul: dict) -> dict:
    """The best fraction of the theoretical bf16 limit any measured configuration reached, which one, and why the
    matmul stops where it does, from the measurements: the tile unit alone (tmul: no memory traffic) against the
    kernels fed from cache and memory, small sizes against the largest, TensorFlow's path against oneDNN's own."""
    hw1 = limit["bf16_gflops_per_core"]

    def best_of(keys, where=lambda r: True):
        return max(((r[k] / (hw1 * r["cores"]), CONFIGS[k], r["cores"], r["size"]) for r in rows for k in keys
                    if hw1 and r.get(k) and where(r)), default=None)

    def name(b):
        return f"{b[1]}, {b[3]}^2 on {b[2]} core(s)"

    best = best_of(CONFIGS)
    unit = tmul.get("median")
    unit_fraction = unit / hw1 if unit and hw1 else None
    out = {"best_fraction": best and best[0], "best_configuration": best and name(best), "tile_unit_gflops": unit,
           "tile_unit_fraction": unit_fraction, "tile_unit_note": tmul.get("reason") or tmul.get("skipped")}
    if best is None:
        out["why"] = "no bf16 matmul was measured"
        return out
    largest = max(r["size"] for r in rows if any(r.get(k) for k in CONFIGS))
    at_largest, through_tf = best_of(CONFIGS, lambda r: r["size"] == largest), best_of(["gflops"])
    why = [f"{'the best' if best[0] >= 0.5 else 'no configuration reaches 0.5 of the limit; the best'}: "
           f"{best[0]:.2f} of it, {name(best)}"]
    if at_largest and at_largest[3] != best[3]:
        why.append(f"at {largest}^2 the best is {at_largest[0]:.2f} ({at_largest[1]})")
    if through_tf:
        why.append(f"through TensorFlow at most {through_tf[0]:.2f} ({through_tf[3]}^2 on {through_tf[2]} core(s))")
    if unit_fraction is None:
        why.append(f"the tile unit alone was not measured ({out['tile_unit_note']})")
    elif unit_fraction >= 0.5:
        why.append(f"the tile unit alone, on tiles already in registers, reaches {unit_fraction:.2f} ({unit:.0f} "
                   f"GFLOP/s{', above the limit: the core boosts above its nominal clock' if unit_fraction > 1 else ''}"
                   f"): the multiply is not the limit, feeding the tiles is (operands from cache and memory, "
                   f"packing the weights)")
    else:
        why.append(f"the tile unit alone, on tiles already in registers, reaches only {unit_fraction:.2f} ({unit:.0f} "
                   f"GFLOP/s): the limit is the core's AMX throughput as this host provides it, not the software "
                   f"above it")
    out["why"] = "; ".join(why)
    return out


# The CPU features the paper's results rest on (any one flag of each; AMX: both), and what lacking one means here:
# check-host says which this CPU has and which it lacks, a line each, never a failed probe.
FEATURES = (("AVX-512", ("avx512f",)), ("BF16 arithmetic", runtime.BF16_NATIVE), ("AMX", ("amx_bf16", "amx_tile")))


def lacks(flags, error: str | None = None) -> tuple[list[str], list[str]]:
    """(what this CPU has, a "lacks X (flags): what follows" line for each feature it lacks) of FEATURES; when its
    flags could not be read (ERROR), one line saying so: unknown, not lacking."""
    if error:
        return [], [f"could not read this CPU's flags ({error}): whether it has "
                    f"{', '.join(name for name, _ in FEATURES)} is unknown"]
    flags = set(flags)
    has, missing = [], []
    for name, want in FEATURES:
        label = f"{name} ({' or '.join(want) if name != 'AMX' else ', '.join(want)})"
        got = all(f in flags for f in want) if name == "AMX" else any(f in flags for f in want)
        if got:
            has.append(label)
            continue
        if name == "AVX-512":
            why = (f"the paper's stack ({' '.join(stacks.PAPER_TENSORFLOW)}, --stack paper) cannot run or be built "
                   f"here; the default stack runs")
        elif name == "BF16 arithmetic":
            why = (f"oneDNN only emulates BF16 here (with "
                   f"{', '.join(f for f in runtime.BF16_FLAGS if f in flags)}), slower than fp32: precision auto "
                   f"runs fp32"
                   if runtime.bf16_kernels(flags) else
                   "no oneDNN BF16 kernels at all here: bf16 runs are refused, precision auto runs fp32, and the bf16 "
                   "probes are not run")
        else:
            why = "the paper's BF16 speed comes from AMX's tile unit: its times are out of reach, and the tile unit " \
                  "is not measured"
        missing.append(f"lacks {label}: {why}")
    return has, missing


def verdict(raw: dict) -> dict:
    """The checks and the predicted times, from the probes alone (pure: the tests feed it constructed raws)."""

    flags = set(raw["cpu"].get("flags") or ())
    topo = raw["topology"]
    limit = probes.theoretical_peak(raw["cpu"])
    cores = raw["cores"]
    mm = raw["matmul"]
    isa = ((mm["bf16"].get("onednn") or {}).get("cpu_isa") or "")
    impls = " ".join((mm["bf16"].get("onednn") or {}).get("implementations") or [])
    amx_dispatched = "amx" in isa.lower() or "amx" in impls.lower()
    peak_bf16 = mm["bf16"].get("median")
    hw_bf16 = limit["bf16_gflops_per_core"] and limit["bf16_gflops_per_core"] * cores
    rate = raw["backbone"].get("median")
    epochs = claims.table()["epochs"]["value"]
    t1 = epochs * (PAPER_TRAIN + PAPER_VAL) / rate if rate else None
    # two sockets like this one: each worker half the images, at the paper's own efficiency
    t2 = t1 / 2 / PAPER_EFFICIENCY if t1 else None
    sockets = topo["sockets"]
    per_socket = topo["cores_per_socket"]
    checks = [
        ("AMX present (amx_bf16)", "amx_bf16" in flags, "the paper's BF16 speed comes from AMX"),
        ("AMX dispatched by oneDNN for bf16 matmul", None if mm["bf16"].get("skipped") else amx_dispatched,
         "not run (no BF16)" if mm["bf16"].get("skipped") else f"oneDNN ISA: {isa or 'unknown'}"),
        (f"{PAPER_SOCKETS} sockets", sockets >= PAPER_SOCKETS, f"this host: {sockets}"),
        (f"{PAPER_CORES} cores per socket", bool(per_socket) and min(per_socket) >= PAPER_CORES,
         f"this host: {per_socket}"),
        ("one NUMA node per socket or more", len(topo.get("numa_nodes") or {}) >= sockets,
         f"NUMA nodes: {topo.get('numa_nodes')}"),
    ]
    minutes = {"1s": t1 and t1 / 60, "2s": t2 and t2 / 60}
    paper = {"1s": claims.table()["minutes_1s"]["value"], "2s": claims.table()["minutes_2s"]["value"]}
    tol_2s = claims.table()["minutes_2s"]["tolerance_relative"]
    times_ok = (minutes["1s"] is not None and minutes["1s"] <= paper["1s"]
                and abs(minutes["2s"] / paper["2s"] - 1) <= tol_2s)
    can = all(ok for _, ok, _ in checks) and times_ok
    return {
        "cpu": raw["cpu"].get("model_name"), "cores_probed": cores, "cpus_probed": raw["cpus"],
        "checks": [{"check": c, "ok": ok, "detail": d} for c, ok, d in checks],
        "matmul_gflops": {p: mm[p].get("median") for p in mm},
        "bf16_fraction_of_theoretical": probes._ratio(peak_bf16, hw_bf16),
        "theoretical_peak": limit,
        "bandwidth_gb_s": raw["bandwidth"].get("median"),
        "backbone_img_s_paper_shape": rate, "precision": raw["precision"],
        "step_profile": (raw.get("step") or {}).get("profile"),
        "matmul_curve": curve(raw, limit),
        "amx_limit": where_amx_stops(curve(raw, limit), limit, raw.get("tmul") or {}),
        "predicted_minutes": minutes, "paper_minutes": paper,
        "prediction_basis": (f"{epochs:g} epochs x ({PAPER_TRAIN} + {PAPER_VAL}) images / {rate and round(rate, 1)} "
                             f"images/s on {cores} core(s); 2 sockets like this one: half the images each, "
                             f"efficiency {PAPER_EFFICIENCY}; start-up and final evaluation not included; the "
                             f"model's error on real runs: `invoke bench`, prediction_error_1w"),
        "cpu_has": lacks(flags, raw.get("flags_error"))[0], "cpu_lacks": lacks(flags, raw.get("flags_error"))[1],
        "played": raw.get("played"),
        "can_reproduce_times": can,
        "reasons": [f"{c}: {d}" if ok is None else f"{c}: no ({d})" for c, ok, d in checks if not ok]
                   + ([] if times_ok else [f"predicted {minutes['1s'] and round(minutes['1s'], 1)} min (1 socket) / "
                                           f"{minutes['2s'] and round(minutes['2s'], 1)} min (2 sockets) vs the "
                                           f"paper's < {paper['1s']} / ~{paper['2s']} min"]),
        "probe_errors": {k: v.get("reason") for k, v in
                         (("matmul_fp32", mm["fp32"]), ("matmul_bf16", mm["bf16"]), ("bandwidth", raw["bandwidth"]),
                          ("backbone", raw["backbone"]), ("step", raw.get("step") or {"median": 0}),
                          *((f"curve, {k}", c) for k, c in (raw.get("curve") or {}).items()),
                          *((f"oneDNN direct, {k}", c) for k, c in (raw.get("onednn") or {}).items()),
                          *((("tile unit", raw["tmul"]),) if raw.get("tmul") else ()))
                         if v.get("median") is None and not v.get("skipped")},
    }


def markdown(v: dict) -> str:
    def fmt(x, f="{:.2f}"):
        return "n/a" if x is None else f.format(x)

    def kernels(row):  # what TF's matmul ran, else what oneDNN's own did
        return ", ".join(row["kernels"] or ([f"matmul:{row['direct_implementation']}"]
                                            if row.get("direct_implementation") else []))

    lines = [f"# Can this host reproduce the paper's times? **{'yes' if v['can_reproduce_times'] else 'no'}**", "",
             *([f"**{v['played']}.**", ""] if v.get("played") else []),
             f"CPU: {v['cpu']}; probes on {v['cores_probed']} core(s) (CPUs {v['cpus_probed']}), one socket.", "",
             f"This CPU has {', '.join(v.get('cpu_has') or ['none of AVX-512, BF16 arithmetic, AMX'])}.", "",
             *[f"- {ln}" for ln in v.get("cpu_lacks") or []], *([""] if v.get("cpu_lacks") else []),
             "| check | | detail |", "|---|---|---|",
             *[f"| {c['check']} | {'yes' if c['ok'] else 'not run (no BF16)' if c['ok'] is None else 'no'} | "
               f"{c['detail']} |" for c in v["checks"]], "",
             "| figure | this host |", "|---|---|",
             f"| matmul fp32 / bf16 (GFLOP/s) | {fmt(v['matmul_gflops']['fp32'], '{:.1f}')} / "
             f"{fmt(v['matmul_gflops']['bf16'], '{:.1f}')} |",
             f"| bf16 matmul / the cores' theoretical bf16 limit | {fmt(v['bf16_fraction_of_theoretical'])}"
             + (" (above 1: the limit uses the nominal clock /proc/cpuinfo reports, "
                f"{v['theoretical_peak']['clock_mhz']} MHz; the cores boost above it)"
                if (v["bf16_fraction_of_theoretical"] or 0) > 1 else "") + " |",
             f"| memory copy, one thread (GB/s) | {fmt(v['bandwidth_gb_s'], '{:.1f}')} |",
             f"| backbone forward, 224 px batch 32, {v['precision']} (images/s) | "
             f"{fmt(v['backbone_img_s_paper_shape'], '{:.1f}')} |",
             f"| predicted paper run, 1 socket (min) | {fmt(v['predicted_minutes']['1s'], '{:.1f}')} "
             f"(paper: under {v['paper_minutes']['1s']}) |",
             f"| predicted paper run, 2 sockets like this one (min) | {fmt(v['predicted_minutes']['2s'], '{:.1f}')} "
             f"(paper: about {v['paper_minutes']['2s']}) |", "",
             f"Prediction: {v['prediction_basis']}.", ""]
    if v.get("matmul_curve"):
        lines += ["bf16 matmul against the cores' theoretical limit, through TensorFlow (fp32 tensors, AMP) and "
                  "through oneDNN's own API (weights packed by the kernel each call, as TF passes them, or reordered "
                  "once into its layout):", "",
                  "| cores | size | TF GFLOP/s | of the limit | TF: reorders | TF: outside oneDNN (casts) | "
                  "oneDNN, packed per call | oneDNN, reordered once | of the limit | kernels |",
                  "|---|---|---|---|---|---|---|---|---|---|",
                  *[f"| {r['cores']} | {r['size']} | {fmt(r['gflops'], '{:.0f}')} | {fmt(r['fraction'])} | "
                    f"{fmt(r['reorder_share'], '{:.0%}')} | {fmt(r.get('outside_share'), '{:.0%}')} | "
                    f"{fmt(r.get('direct_plain_gflops'), '{:.0f}')} | {fmt(r.get('direct_once_gflops'), '{:.0f}')} | "
                    f"{fmt(r.get('direct_once_fraction'))} | {kernels(r)} |"
                    for r in v["matmul_curve"]], ""]
    amx = v.get("amx_limit") or {}
    if amx.get("why"):
        lines += [f"Where the bf16 matmul stops: {amx['why']}.", ""]
    prof = v.get("step_profile") or {}
    if prof.get("ms_per_step"):
        lines += [f"Where a training step's time goes (224 px, batch 32, {v['precision']}: {prof['step_ms']:.0f} ms "
                  f"per step):", "", "| part | ms per step | share |", "|---|---|---|",
                  *[f"| {k} | {ms:.1f} | {prof['share'][k]:.0%} |" for k, ms in prof["ms_per_step"].items()], "",
                  f"({prof['basis']}.)", ""]

    if v["reasons"]:
        lines += ["Why not:", "", *[f"- {r}" for r in v["reasons"]], ""]
    if v["probe_errors"]:
        lines += ["Probes that failed:", "", *[f"- {k}: {r}" for k, r in v["probe_errors"].items()], ""]
    return "\n".join(lines)


def run(results_dir: Path, sizes: dict = SIZES) -> Path:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    raw = measure(sizes)
    v = verdict(raw)
    out = results_dir / f"check-host-{stamp}"
    out.mkdir(parents=True)
    (out / "check.json").write_text(json.dumps({**v, "raw": raw}, indent=1, default=str))
    (out / "check.md").write_text(markdown(v))
    print(markdown(v))
    return out
