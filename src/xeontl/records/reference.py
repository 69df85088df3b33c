"""The bundle's own reference runs (results/reference/): is this run a reproduction of them? Every run gets a
"Reproduced" line, on every run kind and every CPU:

- the reference: a committed run whose setup (records/setup.py) equals this run's in every dimension but those of
  the machine (REFERENCE_IGNORES: the CPU, its math path, cores and threads, the software, container, the precision
  the CPU allowed: what the prediction below accounts for); none: "not judged", naming the nearest and what differs;
- its own record healthy: every rank on its plan's CPUs, memory nodes and threads (records/ranks.py);
- its accuracy within the prediction interval (common/stats.multiple: 99.73 % of new runs) of every committed run of
  its setup of its own precision where five are committed, else FP32 and BF16 both (the paper: "same as FP32");
- its time judged against a prediction from this very machine: the run measures, before training, the step time of
  its own model on a fixed batch (metrics.json `calibration`); measured / predicted is judged against the spread of
  that ratio over the committed runs of its setup and CPU kind that carry a calibration (time_rule: their mean with
  how much one machine of a kind varies); with none of its kind, over every calibrated run of the settled kinds (the
  spread between kinds: wider, said), and its calibration then has nothing to be compared with: at most "yes on what
  was judged". Where neither can be: "time not judged", said, never a silent yes.

Pure: run dirs in, a verdict out."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

from xeontl.common import stats
from xeontl.experiment import runtime
from xeontl.records import ranks, setup
from xeontl.records.claims import REFERENCE_DIR, load_run, table

# What a reproduction of the bundle's reference may differ in: the machine and what it decides. Everything else (the
# data, the weights, every recipe field, resumed or not, nodes, workers, sockets and their emulation) must be equal.
REFERENCE_IGNORES = {d: {"words": "the machine: judged by the run's own calibration, not compared"} for d in (
    "hardware.cpu", "hardware.topology", "hardware.math_path", "software", "execution", "health", "precision",
    "layout.cores_per_worker", "layout.threads_per_worker", "layout.memory_nodes")}
MIN_CALIBRATED = 5
MIN_KINDS = 3  # the kinds a new kind's time is judged across: the "at least AMX, Zen 4, and an AVX2-only kind"
HOW_TO_CALIBRATE = ("committed runs of this CPU kind are needed: `invoke reproduce --sockets 2 --emulate-sockets "
                    "--repeats 6` alone on a machine of the kind, each run 'Reproduced' against the others, "
                    "committed under results/reference/")


def run_kind(run: dict) -> tuple:
    """profile, sockets, emulated: how a `--repeats` summary names its runs' kind."""
    plan = run["plan"]
    return run["config"].get("profile"), plan.get("sockets"), bool(plan.get("emulated"))


def as_wanted(rec: dict) -> dict:
    return {dim: {"value": v, "words": "the reference run's"} for dim, v in rec.items()}


def find_reference(run: dict, reference_dir: Path = REFERENCE_DIR) -> dict | None:
    """The committed run of the same setup (the machine aside: a reference run dir, or a run of a `--repeats`
    summary), of the same CPU kind first, then the newest; of none, the nearest (fewest differences), which the
    verdict then names as not this setup. None: nothing committed."""
    return _nearest_and_same(run, _committed(run, reference_dir))[0]


def _nearest_and_same(run: dict, found: list[dict]) -> tuple[dict | None, list[dict]]:
    """Of the committed runs FOUND: the reference find_reference names, and those of RUN's setup (committed_runs),
    each compared with RUN once (the claims table read once, RUN's setup made once)."""
    if not found:  # nothing committed: nothing to compare, so nothing of RUN's is read
        return None, []
    order = {id(ref): i for i, ref in enumerate(sorted(found, key=run_id))}  # run ids begin with their date
    kind, tab = cpu_kind(run), table()
    mine = setup.of_run(run, tab)
    differ = {id(ref): len(_differences(mine, ref, tab)) for ref in found}
    nearest = min(found, key=lambda ref: (differ[id(ref)], cpu_kind(ref) != kind, -order[id(ref)]))
    return nearest, [ref for ref in found if not differ[id(ref)]]


def judge(run: dict, reference_dir: Path = REFERENCE_DIR) -> dict:
    """The verdict report.md gives (against_reference against find_reference's run), the committed runs read,
    health-checked and compared with RUN once for both."""
    ref, same = _nearest_and_same(run, _committed(run, reference_dir))
    return against_reference(run, ref, reference_dir, pool=same)


def cpu_id(run: dict) -> tuple:
    """The CPU alone: model name, family, model."""
    c = (run["provenance"].get("host") or {}).get("cpu") or {}
    return c.get("model_name"), c.get("family"), c.get("model")


def cpu_kind(run: dict) -> str | None:
    """What a run's calibration and time ratio are comparable across: the CPU by model name and family/model (a VM's
    model name can be as bare as "AMD EPYC"), the math path oneDNN took on it (setup.math_path: the ISA of its
    convolutions; one CPU model is two kinds when its hypervisor hides AMX, as seen for the family 6 model 207 Xeon with
    and without amx_tile, or when ONEDNN_MAX_CPU_ISA caps oneDNN), and each worker's cores, CPUs and threads (a
    bigger VM of the same CPU steps faster: its calibration is not a busy neighbour's). None when any is unknown, or
    when a rank ran on a CPU of another model or flags than rank 0's (several nodes: no one kind's time)."""
    c = (run["provenance"].get("host") or {}).get("cpu") or {}
    path = setup.math_path(run["provenance"])
    shapes = sorted({(w.get("cores"), len(w.get("cpus") or []), w.get("intra"), w.get("inter"))
                     for w in run["plan"].get("workers") or []}, key=str)
    if (not c.get("model_name") or c.get("family") is None or c.get("model") is None or not path or not shapes
            or any(None in s or not s[1] for s in shapes)):
        return None  # unknown is never equal: a run without all of them is no kind's
    if not ranks.one_cpu(run) or setup.ranks_math_path(run) != path:
        # ranks on CPUs of other models or flags (several nodes), or one unknown, or their convolutions on other ISAs
        # (one capped: the twelfth round): no one kind's
        return None
    workers = "; ".join(f"{cores} core(s), {cpus} CPU(s), {intra}/{inter} threads" for cores, cpus, intra, inter
                        in shapes)
    return f"{c['model_name']} (family {c['family']} model {c['model']}) on {path}, a worker: {workers}"


def health(run: dict) -> list[str]:
    """The run's own record against its plan (records/ranks.py); a run that recorded no ranks says so."""
    h = ranks.health(run)
    return ["health unknown: no ranks recorded, or their CPUs cannot be checked against the plan from what the run "
            "recorded of its host"] if h is None else h


def precision_allowed(run: dict) -> list[str]:
    """REFERENCE_IGNORES lets the precision differ as the CPU decides it (the demo's `auto`: BF16 where the CPU has a
    BF16 unit, AMX or AVX512-BF16, else FP32): a run that trained in FP32 on a CPU with a BF16 unit had its BF16
    kernels off, and is not a reproduction of runs that used theirs (the adversary's sixth round: such a run on a
    Zen 4 was "yes on what was judged"). BF16 where the CPU has no unit (emulated) is health's to say."""
    # the summary or the CPU's own flag list, whichever names the unit (an edited summary does not hide it)
    unit = [f for f in runtime.BF16_NATIVE if f in ranks.all_flags(run)]
    return [f"ran FP32 on a CPU with a BF16 unit ({', '.join(unit)}): its BF16 kernels were off, where the committed "
            f"runs used theirs"] if precision_of(run) == "fp32" and unit else []


def predicted_seconds(run: dict) -> float | None:
    """The training time this machine predicts for this run: its calibration's seconds per step (the same model, a
    fixed batch, measured in the run before training) x the steps it trained."""
    m = run["metrics"]
    cal = m.get("calibration") or {}
    if not cal.get("seconds_per_step") or not cal.get("steps_per_epoch") or not m.get("epochs_run"):
        return None
    return cal["seconds_per_step"] * cal["steps_per_epoch"] * m["epochs_run"]


def time_ratio(run: dict) -> float | None:
    p, t = predicted_seconds(run), run["metrics"].get("train_seconds")
    return t / p if p and t else None


def precision_of(run: dict) -> str | None:
    """The precision the run trained at (metrics.json), None where not recorded."""
    return (run["metrics"].get("precision") or {}).get("precision")


def run_id(run: dict) -> str:
    """A committed run's id: its dir's name (a run dir and a summary's copy of it are both named by the run id)."""
    return Path(run["dir"]).name


def _committed(run: dict, reference_dir: Path) -> list[dict]:
    """Every committed run that succeeded, whose own record is healthy, but RUN itself. A `--repeats` summary's
    copies (runs/<id>/: config.json and metrics.json, no plan, no provenance) carry no record to check: never one."""
    if not reference_dir.is_dir():
        return []
    out, seen = [], set(_identities(run))
    # a run committed both at the top level and as a copy in a `--repeats` summary counts once: the top level's
    # (fuller) record first, then the copies, by run id; a run is never in its own pool; a run dir copied under
    # another name (its recorded run id another's) counts once too
    for d in sorted(reference_dir.rglob("metrics.json"), key=lambda p: (len(p.relative_to(reference_dir).parts), p)):
        ref = load_run(d.parent)
        if seen & set(_identities(ref)):
            continue
        seen.update(_identities(ref))
        # deny by default: a committed run is a reference only when it succeeded and its own record is healthy (a
        # rank off its CPUs or BF16 emulated in the pool would widen every run's tolerance)
        if (Path(ref["dir"]).resolve() != Path(run["dir"]).resolve() and ref["metrics"].get("status") == "success"
                and not health(ref)):
            out.append(ref)
    return out


def _identities(run: dict) -> list:
    """What makes two run dirs one run: the dir's name, or the run id its provenance recorded (a run dir copied under
    another name is still its run: the adversary's sixth round made a "settled" kind of five copies of one run)."""
    out = [("dir", run_id(run))]
    if run["provenance"].get("run_id"):
        out.append(("run", run["provenance"]["run_id"]))
    return out


def committed_runs(run: dict, reference_dir: Path = REFERENCE_DIR) -> list[dict]:
    """Every committed run of RUN's setup, the machine aside."""
    return _nearest_and_same(run, _committed(run, reference_dir))[1]


def mismatch(run: dict, ref: dict) -> list[str]:
    """How RUN's setup differs from a committed run's, the machine aside (REFERENCE_IGNORES): [] when it reproduces
    the same experiment; unknown in either is a difference."""
    tab = table()
    return _differences(setup.of_run(run, tab), ref, tab)


def _differences(mine: dict, ref: dict, tab: dict) -> list[str]:
    return [f"{d['dimension']} {setup._fmt(d['got'])} vs {setup._fmt(d['want'])}"
            for d in setup.compare(mine, as_wanted(setup.of_run(ref, tab)), REFERENCE_IGNORES)]


def val_images(run: dict) -> int | None:
    """How many validation images the run's accuracy counts: its confusion matrix's sum, else its val_size."""
    m = run["metrics"]
    cm = m.get("confusion_matrix")
    if cm:
        return sum(sum(row) for row in cm) or None
    return (m.get("dataset") or {}).get("val_size") or None


def accuracy_floor(run: dict) -> float:
    """The accuracy tolerance's floor in points: ACCURACY_FLOOR_IMAGES validation images of the run's own set (0.5
    points at the demo's 400, 0.2 at 1000), never below stats.FLOOR's: committed runs that all scored the same (sd 0)
    do not make one image more a "no"."""
    n = val_images(run)
    return max(stats.FLOOR["accuracy_points"], math.ceil(ACCURACY_FLOOR_IMAGES * 1000 / n) / 10 if n else 0.0)


ACCURACY_FLOOR_IMAGES = 2


def tolerances(runs: list[dict], ratio_runs: list[dict] | None = None, floor_points: float | None = None) -> dict:
    """Accuracy: the prediction interval (stats.multiple) of every committed run of the setup (at least FLOOR_POINTS,
    else stats.FLOOR's), deciding from MIN_CALIBRATED of them (fewer give an interval too wide to tell anything: 289
    sd from 2 runs). Time: the same of measured/predicted over the committed runs that carry a calibration (at least
    5 %), deciding from MIN_CALIBRATED of them; over RATIO_RUNS where given (the run's own CPU kind's), else RUNS."""
    acc = [r["metrics"]["final_val_accuracy"] for r in runs if r["metrics"].get("final_val_accuracy") is not None]
    ratios = [x for x in map(time_ratio, runs if ratio_runs is None else ratio_runs) if x]
    out: dict = {"accuracy_runs": len(acc), "calibrated_runs": len(ratios),
                 "rule": f"the {100 - stats.FALSE_ALARM * 100:g} % prediction interval of the runs (stats.multiple)"}
    if len(acc) >= MIN_CALIBRATED:
        out["accuracy_mean"] = statistics.fmean(acc)
        pts = statistics.stdev(acc) * 100 * stats.multiple(len(acc))
        out["accuracy_points"] = max(floor_points or stats.FLOOR["accuracy_points"], math.ceil(pts * 10) / 10)
    if len(ratios) >= MIN_CALIBRATED:
        out["ratio_mean"] = statistics.fmean(ratios)
        rel = stats.multiple(len(ratios)) * statistics.stdev(ratios) / out["ratio_mean"]
        out["ratio_relative"] = max(stats.FLOOR["time_relative"], math.ceil(rel * 100) / 100)
    return out


CALIBRATION_FLOOR = 0.15


def seconds_per_step(run: dict) -> float | None:
    return (run["metrics"].get("calibration") or {}).get("seconds_per_step")


SD_FLOOR = stats.FLOOR["time_relative"] / 3  # the least relative sd a kind's runs are taken to have


def within_kind(settled: dict[str, list[dict]], value, n: int, own: str | None = None) -> float:
    """The relative tolerance for VALUE of a run of kind OWN with N committed runs of its own (one or more): how much
    one machine of its kind varies, t x sd x sqrt(1 + 1/n) at the 99.73 % of stats.t_quantile. Kinds do not vary
    alike (the time ratio's sd: 2.4 % over twelve runs of the AMX Xeon of model 167, 10 % over six of an AVX2-only Zen
    3), so the sd is each kind's own, moderated (stats.prior_variance: limma's empirical Bayes, Smyth 2004): its own
    squared deviations about its mean (as a settled kind) weighed with the prior the settled kinds' spreads give, by
    their degrees of freedom, and t on both's. A kind not settled (fewer than MIN_CALIBRATED runs): its own few never
    set its tolerance (the adversary's fourth round: two runs 1.6x apart made their kind's +-74 %) and the prior's few
    degrees of freedom would make it vast: it is the settled kinds' pooled spread, as where they vary no more than
    sampling makes them (the prior's degrees of freedom infinite), the rule before. Every kind pooled (until
    2026-12-07) had a quiet kind narrow every kind's tolerance: twelve runs of the model 167 Xeon made a healthy
    committed run of the model 207's "no" (+22 % against +-18 %)."""
    # a kind's variance never below what a timing resolves (a few percent is timer and start-up: stats.FLOOR's 3 sd),
    # so that a near-zero spread cannot drag the prior to nothing (the eighth round: a new kind's tolerance +-0.5 %)
    squares = {k: (max(ss, df * SD_FLOOR ** 2), df) for k, (ss, df) in
               ((k, _squares(rs, value)) for k, rs in settled.items())}
    # the settled kinds' pooled spread: a kind not settled (or left out) gets it, for deciding a "no" (never a full
    # "yes"), not the prior alone, whose few degrees of freedom where the kinds differ made t 236 and the tolerance
    # +-934 % (the eighth round); so does every kind where they vary alike (the prior's d0 infinite)
    df = sum(d for _, d in squares.values())
    var = sum(ss for ss, _ in squares.values()) / df
    if own in squares and len(squares) > 1:
        s0, d0 = stats.prior_variance([(ss / d, d) for ss, d in squares.values()])
        if not math.isinf(d0):
            ss, d = squares[own]
            df, var = d0 + d, (d0 * s0 + ss) / (d0 + d)
    return stats.t_quantile(max(1, math.floor(df))) * var ** 0.5 * (1 + 1 / n) ** 0.5


def calibration_check(run: dict, rule: dict, model: str | None) -> tuple[str, bool | None]:
    """The run's calibration (seconds per step) against the committed runs of its setup of its CPU kind MODEL
    (cpu_kind; None: not recorded; RULE: time_rule's): within the prediction interval of theirs where
    MIN_CALIBRATED are (stats.multiple), else of their mean by the within-kind spread of the settled kinds (as the
    time ratio), at least CALIBRATION_FLOOR. A busy neighbour slows the calibration and the training alike, which the
    ratio cannot see; this can. None: not compared (said): no run of its kind, or too few and no settled kinds."""
    mine = seconds_per_step(run)
    same = rule["same"]  # each carries a time ratio, so a calibration
    theirs = [seconds_per_step(r) for r in same]
    if not mine:
        return "calibration not compared: this run recorded none", None
    if not theirs:
        return f"calibration not compared: no committed run of this CPU kind ({model or 'not recorded'})", None
    if not rule["spread"] and len(theirs) < MIN_CALIBRATED:
        return (f"calibration not compared: {len(theirs)} committed run(s) of this CPU kind ({model}), and fewer than "
                f"{MIN_KINDS} settled kinds to tell how much one machine varies"), None
    mean = statistics.fmean(theirs)
    spread = (within_kind(rule["settled"], seconds_per_step, len(same), model) if rule["spread"] else
              stats.multiple(len(theirs)) * statistics.stdev(theirs) / mean)
    tol = max(CALIBRATION_FLOOR, math.ceil(spread * 100) / 100)
    rel = mine / mean - 1
    # one-sided: a neighbour slows a machine, never speeds it; a faster machine of the kind (a bigger SKU under a VM's
    # bare model name) is said, not a "no"
    good = rel <= tol
    verdict = ("within" if abs(rel) <= tol else "faster than its kind: no neighbour slowed it") if good else \
        "outside: this machine ran unlike its kind (a busy neighbour?)"
    return (f"calibration {mine:.3f} s/step vs {mean:.3f} over {len(theirs)} committed run(s) on {model} "
            f"({rel:+.0%}, tolerance +-{tol:.0%}): {verdict}"), good


GATE = 0.001  # how unlikely a kind's spread must be among the others' for it to be left out of the pool: at 0.01 the
# Zen 3 (10 % against 7 %) was left out when one AMX run was (p = 0.009), and that run was then "no" against ±19 %


def varies_alike(kinds: dict[str, list[dict]]) -> tuple[dict[str, list[dict]], dict[str, str]]:
    """The kinds whose runs vary about their own mean as the empirical-Bayes model within_kind moderates by expects,
    and those left out: a kind whose time ratio or calibration spread s2 on df degrees of freedom is larger than the
    prior the other kinds give (stats.prior_variance: s0^2 on d0) by the model's own F(df, d0) test at GATE
    (stats.f_sf, one-sided: a bimodal kind, two machines under one name, or a much noisier one). Where the others vary
    alike (d0 infinite) that is a chi-square test against their pooled spread, strict; where they differ, as the
    committed kinds do, the test widens with them, so a quiet kind added no longer leaves a noisier committed one out
    (against the others pooled it did: twelve runs of the model 167 Xeon, sd 2.4 %, left the Zen 3 out, 10 %). A kind
    left out is no full reference of its own kind (against_reference)."""
    if len(kinds) < 3:
        return kinds, {}
    ss = {k: {f: _squares(rs, v) for f, v in (("time ratio", time_ratio), ("calibration", seconds_per_step))}
          for k, rs in kinds.items()}
    excluded: dict[str, str] = {}
    for k in kinds:
        for f, (mine, df) in ss[k].items():
            # the others but the one that varies most among them: tested against all, a kind at +-60 % made the prior
            # too vague to see a bimodal one (the adversary's sixth round, which the pooled gate had too)
            others = sorted((max(o_ss / o_df, SD_FLOOR ** 2), o_df) for o in kinds if o != k
                            for o_ss, o_df in [ss[o][f]])[:-1]
            if not mine or len(others) < 2:
                continue  # no spread of its own: never noisier than the others
            s0, d0 = stats.prior_variance(others)
            ratio = (mine / df) / s0
            p = stats.f_sf(ratio, df, min(d0, 1e4))
            if p < GATE:
                excluded[k] = (f"its {f} varies more than the other settled kinds' prior (F = {ratio:.2f} on {df} and "
                               f"{'inf' if math.isinf(d0) else f'{d0:.1f}'} degrees of freedom, p = {p:.2g} < "
                               f"{GATE:g})")
                break
    return {k: rs for k, rs in kinds.items() if k not in excluded}, excluded


def _squares(runs: list[dict], value) -> tuple[float, int]:
    """The runs' squared relative deviations from their own mean, summed, and their degrees of freedom."""
    mean = statistics.fmean(map(value, runs))
    return sum((value(r) / mean - 1) ** 2 for r in runs), len(runs) - 1


def time_rule(kind: str | None, pool: list[dict]) -> dict:
    """Which committed runs the time ratio (measured over what the run's own calibration predicts) is judged against.
    The ratio differs between CPU kinds (1.98-2.58x on the AMX Xeon, 1.40-1.69x on a Zen 4, 1.29-1.73x on an AVX2-only
    Zen 3 for the demo) far more than within one, so:

    - one or more runs of the run's own kind, and MIN_KINDS settled kinds to tell how much one machine of a kind
      varies: their mean, with that spread (within_kind: "mean" and "relative");
    - MIN_CALIBRATED or more of its own and fewer settled kinds: their prediction interval ("runs": tolerances);
    - none of its own: every calibrated run of the settled kinds, the spread between kinds (the issue's "across the
      kinds you have committed runs for"): wide, and said; a full "yes" then waits for runs of its kind;

    where "settled" is MIN_CALIBRATED runs each, of MIN_KINDS CPUs and MIN_KINDS math paths or more (the issue's AMX,
    Zen 4 and AVX2-only: three kind names of one ISA, or one VM with AMX shown, hidden and in FP32, are not three kinds
    of machine). Otherwise: shown against the whole pool, never deciding."""
    by_kind: dict = {}
    for r in pool:
        if time_ratio(r) and cpu_kind(r):
            by_kind.setdefault(cpu_kind(r), []).append(r)
    same = by_kind.get(kind, []) if kind else []
    own = len(same)
    settled, excluded = varies_alike({k: rs for k, rs in by_kind.items() if len(rs) >= MIN_CALIBRATED})
    paths = {setup.math_path(rs[0]["provenance"]) for rs in settled.values()}
    cpus = {cpu_id(rs[0]) for rs in settled.values()}
    spans = min(len(paths), len(cpus))
    spread = len(settled) >= MIN_KINDS  # enough kinds to tell how much one machine of a kind varies
    deciding = kind is not None and (own >= MIN_CALIBRATED or (own and spread) or (not own and spans >= MIN_KINDS))
    out = {"same": same, "runs": [], "deciding": deciding, "settled": settled, "spread": spread and bool(kind),
           "excluded": excluded, "own_settled": kind in settled}
    if not deciding:
        return {**out, "runs": pool,
                "words": f"of every CPU kind ({own} of this one, {kind or 'its kind not recorded'}; "
                         f"{MIN_CALIBRATED} needed to decide; or 1 and {MIN_KINDS} settled kinds, "
                         f"{len(settled)} now; or, with none, settled kinds of {MIN_KINDS} CPUs and {MIN_KINDS} "
                         f"math paths: {len(cpus)} and {len(paths)} now)"}
    settled_runs = [r for rs in settled.values() for r in rs]
    if own and spread:
        rel = within_kind(settled, time_ratio, own, kind)
        return {**out, "mean": statistics.fmean(map(time_ratio, same)),
                "relative": max(stats.FLOOR["time_relative"], math.ceil(rel * 100) / 100),
                "words": (f"of this CPU kind (the tolerance from how much one machine of a kind varies, "
                          f"over {len(settled_runs)} runs of {len(settled)} kinds with {MIN_CALIBRATED} or more"
                          + ("" if own >= MIN_CALIBRATED else f"; {HOW_TO_CALIBRATE}") + ")")}
    if own:
        return {**out, "runs": same, "words": "of this CPU kind"}
    return {**out, "runs": settled_runs,
            "words": (f"of {len(settled)} CPU kinds with {MIN_CALIBRATED} or more each (none of this one, {kind}: "
                      f"judged against the spread between kinds, wider than a kind's own; {HOW_TO_CALIBRATE} to "
                      f"narrow it)")}


def against_reference(run: dict, ref: dict | None, reference_dir: Path = REFERENCE_DIR,
                      pool: list[dict] | None = None) -> dict:
    """`reproduced`: True (health, accuracy and time all judged and within), False (any outside, or the record
    unhealthy), None (not judged: no committed run of this setup); `time_judged` says whether time decided, and `why`
    says each part in words, the time's included when it was not judged. POOL: committed_runs(RUN), when the caller
    has it (judge)."""
    if ref is None:
        return {"reproduced": None, "reference": None, "time_judged": False, "tolerances": None, "health": None,
                "why": ["not judged: no committed reference run (results/reference/ is empty)"]}
    name = str(Path(ref["dir"]).relative_to(reference_dir)) if Path(ref["dir"]).is_relative_to(reference_dir) \
        else Path(ref["dir"]).name
    differ = mismatch(run, ref)
    if differ:
        return {"reproduced": None, "reference": name, "time_judged": False, "tolerances": None, "health": None,
                "why": [f"not judged: no committed run of this setup (the nearest, {name}, differs: "
                        f"{'; '.join(differ)})"]}
    pool = committed_runs(run, reference_dir) if pool is None else pool
    kind = cpu_kind(run)
    rule = time_rule(kind, pool)
    same, ratio_deciding, ratio_from = rule["same"], rule["deciding"], rule["words"]
    # Accuracy against the committed runs of the run's own precision where MIN_CALIBRATED are committed (the machine
    # decides it: FP32 on an AVX2-only Zen 3 spread 0.9325-0.9600 over six runs, BF16 0.9375-0.9500 over eighteen,
    # and a healthy FP32 run was outside the pooled interval), else FP32 and BF16 together (the paper: "same as FP32")
    mine = precision_of(run)
    own_precision = [r for r in pool if mine and precision_of(r) == mine]
    by_precision = len(own_precision) >= MIN_CALIBRATED
    acc_pool = own_precision if by_precision else (pool or [ref])
    tol = tolerances(acc_pool, rule["runs"] or [ref], accuracy_floor(run))
    if rule.get("mean"):  # a kind with a few runs of its own: their mean, the within-kind spread of the settled kinds
        tol.update(ratio_mean=rule["mean"], ratio_relative=rule["relative"], calibrated_runs=len(same))
    acc_from = f"runs of this setup in {mine.upper()}" if by_precision else "runs of this setup, FP32 and BF16"
    problems = health(run) + precision_allowed(run)
    ok = not problems
    bf16 = mine == "bf16"
    why = [f"run record: {p}" for p in problems] or [
        "run record: every rank on the CPUs, memory nodes and threads its plan gave it"
        + (", BF16 kernels dispatched natively where the CPU can" if bf16 else "")]
    m = run["metrics"]
    acc = m.get("final_val_accuracy")
    if "accuracy_points" not in tol or acc is None:
        ok = False if acc is None else ok
        why.append(f"accuracy not judged: {tol['accuracy_runs']} committed run(s) of this setup, {MIN_CALIBRATED} "
                   f"needed"
                   if acc is not None else "accuracy: none recorded")
        acc_judged = False
    else:
        diff = (acc - tol["accuracy_mean"]) * 100
        good = abs(diff) <= tol["accuracy_points"]
        ok &= good
        acc_judged = True
        why.append(f"accuracy {acc:.4f} vs {tol['accuracy_mean']:.4f}, the mean of {tol['accuracy_runs']} committed "
                   f"{acc_from} ({diff:+.1f} points, tolerance +-{tol['accuracy_points']:g}): "
                   f"{'within' if good else 'outside'}")
    ratio, time_judged = time_ratio(run), False
    if "ratio_mean" not in tol:
        why.append(f"time not judged: no calibrated reference ({tol['calibrated_runs']} committed run(s) of this "
                   f"setup carry a calibration, {len(same)} of this CPU kind ({kind or 'not recorded'}), "
                   f"{MIN_CALIBRATED} needed: {HOW_TO_CALIBRATE})")
    elif ratio is None:
        ok = False
        why.append("time: this run recorded no calibration (metrics.json calibration): nothing to predict it from")
    else:
        rel = ratio / tol["ratio_mean"] - 1
        good = abs(rel) <= tol["ratio_relative"]
        if ratio_deciding:
            ok &= good
            time_judged = True
        why.append(f"time {m.get('train_seconds'):.0f} s, {ratio:.2f}x the {predicted_seconds(run):.0f} s this "
                   f"machine's calibration predicts, vs {tol['ratio_mean']:.2f}x over {tol['calibrated_runs']} "
                   f"committed runs {ratio_from} ({rel:+.0%}, tolerance +-{tol['ratio_relative']:.0%}): "
                   f"{'within' if good else 'outside'}"
                   + ("" if ratio_deciding else f", shown, not deciding: {HOW_TO_CALIBRATE}"))
    said, good = calibration_check(run, rule, kind)
    why.append(said)
    ok &= good is not False
    # deny by default: a full "yes" needs the calibration compared too (a neighbour busy for the whole run slows the
    # calibration and the training alike: the ratio cannot see it, and a kind with no committed run of its own has no
    # calibration to compare with)
    # ... and MIN_CALIBRATED committed runs of its own kind: the mean of fewer is their own word, which nothing
    # checked (the adversary's fifth round: one committed run a neighbour slowed 1.5x made a healthy run "no" and a
    # slowed one a full "yes"); fewer decide a "no", never a full "yes"
    few = bool(same) and not rule["own_settled"]
    unjudged = [w for w, j in (("accuracy", acc_judged), ("time", time_judged), ("calibration", good is not None),
                               (f"its CPU kind's references ({len(same)} committed, "
                                + (rule["excluded"].get(kind) or f"{MIN_CALIBRATED} needed") + ")", not few)) if not j]
    reproduced = ok if (ok is False or not unjudged) else None
    if reproduced is None and ok:
        why.insert(0, "yes on what was judged; not a full verdict: " + ", ".join(unjudged) + " not judged")
    return {"reproduced": reproduced, "partial": reproduced is None and ok, "reference": name, "why": why,
            "time_judged": time_judged, "not_judged": unjudged, "own_kind_runs": len(same),
            "accuracy_judged": acc_judged, "tolerances": tol, "health": problems}
