"""report.md + PNGs for a run dir, and `compare` between two runs.

First the differences from the paper in plain words, then the claims table (claims.py: verdicts computed from
claims.toml and from structured fields of the runs, never from these sentences), then the run judged against the
bundle's own committed reference run of the same kind, if there is one.
"""

from __future__ import annotations

import json
from pathlib import Path

from xeontl.common import records
from xeontl.launch import rundir
from xeontl.records import claims, reference, setup


def _load(run: Path, name: str) -> dict:
    """A run's record as its schema allows it ({} when the run has none), or one line naming the file and field."""
    return records.read_record(run / name, records.RUN_FILES[name], missing={})


def differences(run: dict, tab: dict | None = None) -> dict:
    """How this run's setup differs from the paper's run it stands for (its role: sockets, FP32 twin; the kit's for a
    kit-profile run): every unequal dimension of records/setup.py, in plain words, first thing the report says. The
    same list the claims' "not comparable" are made of (claims.unequal), never written apart."""
    tab = tab or claims.table()
    protocol, role = setup.protocol_of(run), setup.role_of(run)
    got = setup.of_run(run, tab)
    diffs = setup.compare(got, setup.expected(tab, protocol, role))
    return {"protocol": protocol, "role": role, "compared": len(setup.dimensions()), "setup": got,
            "unequal": [d["dimension"] for d in diffs], "lines": [setup.phrase(d, run) for d in diffs]}


def verdict_words(ref: dict) -> str:
    """The "Reproduced" line's verdict: yes, no, or what was and was not judged, never a silent yes."""
    if ref["reproduced"] is not None:
        return "yes" if ref["reproduced"] else "no"
    if ref.get("partial"):
        if ref.get("time_judged"):
            unjudged = ref.get("not_judged") or []
            return ("yes on what was judged; " + ", ".join(unjudged) + " not judged"
                    + (": no committed run of this CPU kind to compare this machine's calibration with (a neighbour "
                       "busy for the whole run is not seen)" if "calibration" in unjudged else ""))
        n = ref.get("own_kind_runs") or 0
        return ("yes on " + ("accuracy and " if ref.get("accuracy_judged") else "") + "the run record; time not "
                + ("judged: no calibrated reference of this CPU kind" if not n else
                   f"judged: only {n} calibrated reference(s) of this CPU kind, and no settled kinds to judge by"))
    return "not judged"


def _plots(run: Path, metrics: dict) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    per = metrics.get("per_epoch") or []
    if not per:
        return []
    ep = [r["epoch"] for r in per]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    axes[0].plot(ep, [r["loss"] for r in per], label="train loss")
    axes[0].plot(ep, [r.get("val_loss") for r in per], label="val loss")
    axes[0].set_title("loss")
    axes[1].plot(ep, [r["accuracy"] for r in per], label="train acc")
    axes[1].plot(ep, [r.get("val_accuracy") for r in per], label="val acc")
    axes[1].axhline(0.945, ls="--", c="gray", label="paper 94.5 %")
    axes[1].set_title("accuracy")
    axes[2].bar(ep, [r["seconds"] for r in per], label="epoch (s)")
    axes[2].set_title("seconds per epoch (rank 0)")
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.legend()
    fig.suptitle(" | ".join(metrics.get("notices", [])) or "xeontl run", fontsize=9)
    fig.tight_layout()
    fig.savefig(run / "curves.png", dpi=80)
    plt.close(fig)
    names = ["curves.png"]
    ranks = metrics.get("ranks") or []
    if ranks:
        fig, ax = plt.subplots(figsize=(5, 3.5))
        ax.bar([f"rank {r['rank']}" for r in ranks], [r["images_per_second"] for r in ranks])
        ax.set_ylabel("training images/s (median epoch)")
        ax.set_title("throughput per rank")
        fig.tight_layout()
        fig.savefig(run / "throughput.png", dpi=80)
        plt.close(fig)
        names.append("throughput.png")
    return names


def pair(run: Path, others: list[Path]) -> tuple[dict | None, dict | None, dict | None, dict | None]:
    """(1-socket run, 2-socket run, 2-socket FP32 run, 1-socket FP32 run) for the claims table, from this run and the
    others of its profile (`invoke paper` or `invoke report --runs`)."""
    this = claims.load_run(run)
    runs = [this, *[r for r in map(claims.load_run, others) if r["metrics"].get("status") == "success"
                    and r["config"].get("profile") == this["config"].get("profile")]]

    def role(r):  # the runs at the profile's precision (bf16, or auto) vs the FP32 comparison runs (--fp32)
        return "fp32" if r["config"].get("precision") == "fp32" else "main"

    def pick(sockets, which):
        return next((r for r in runs if role(r) == which and r["plan"].get("sockets", 1) == sockets), None)

    return pick(1, "main"), pick(2, "main"), pick(2, "fp32"), pick(1, "fp32")


def _banners(this) -> list[str]:
    """What a reader must not miss before any number: emulated sockets (the plan), then the notices the trainer
    recorded (metrics.json `notices`: synthetic data, a random backbone, ...), each in bold."""
    plan = this.get("plan") or {}
    out = [f"**Emulated sockets**: {plan.get('sockets')} \"socket(s)\" carved from fewer real sockets on this machine "
           "(one memory node): no time or scaling here is the paper's."] if plan.get("emulated") else []
    out += [f"**{n[:1].upper()}{n[1:]}**" for n in (this.get("metrics") or {}).get("notices") or []]
    return ["", *out] if out else []


def write(run: Path, others: list[Path] | None = None) -> Path:
    """report.md for RUN (with the other runs of a `invoke paper` or `invoke report --runs` set for the ratio
    claims); records the reference verdict in metrics.json too."""
    run = Path(run)
    metrics, prov = _load(run, "metrics.json"), _load(run, "provenance.json")
    this = claims.load_run(run)
    diffs = differences(this)
    (run / "setup.json").write_text(json.dumps(diffs, indent=1, default=str))
    rows = claims.judge(*pair(run, list(others or [])))
    ref = reference.judge(this)
    if metrics:
        metrics = rundir.update_metrics(run, reference=ref)
    images = _plots(run, metrics)
    run_id = prov.get("run_id") or run.name.removeprefix(".staging-")
    lines = [f"# xeontl run {run_id}", "", f"**Status: {metrics.get('status', 'unknown')}**"]
    if metrics.get("failure") or metrics.get("error"):
        lines.append(f"Failure: `{json.dumps(metrics.get('failure') or metrics.get('error'))}`")
    lines += _banners(this)
    lines += ["", "## How this run differs from the paper", ""]
    lines += [f"Compared with the paper's {claims.RUN_LABELS[diffs['role']]}"
              + (" (Intel's kit's recipe)" if diffs["protocol"] == "kit" else "")
              + f", dimension by dimension ({diffs['compared']} of them, setup.json):", ""]
    whose = ("the kit's (Intel's kit's recipe: the paper's claims below compare it with the paper's own)"
             if diffs["protocol"] == "kit" else "the paper's")
    lines += [f"- {d}" for d in diffs["lines"]] or [
        f"- None: every one of the {diffs['compared']} dimensions was compared and is {whose}."]
    lines += ["", "## The paper's claims", "", claims.markdown(rows)]
    lines += ["## Reproducing the bundle's reference run", "",
              f"**Reproduced: {verdict_words(ref)}**"
              + (f" (reference `results/reference/{ref['reference']}`)" if ref["reference"] else ""), "",
              *[f"- {w}" for w in ref["why"]]]
    if metrics.get("per_epoch"):
        lines += ["", "## Training", "",
                  f"- epochs run: {metrics.get('epochs_run')}, best epoch: {metrics.get('best_epoch')}, "
                  f"early stop: {metrics.get('stopped_early')}",
                  f"- training time: {metrics.get('train_seconds', 0):.1f} s, "
                  f"throughput (all ranks): {metrics.get('images_per_second', 0):.1f} images/s",
                  f"- precision: {json.dumps(metrics.get('precision'))}, LR {metrics.get('learning_rate')} "
                  f"({metrics.get('lr_rule')})"]
        for r in metrics.get("ranks", []):
            rss = f", peak RSS {r['peak_rss_mib']:.0f} MiB" if r.get("peak_rss_mib") else ""
            lines.append(f"- rank {r['rank']}: {r['images_per_second']:.1f} images/s on CPUs {r['affinity']}, "
                         f"{r['train_images']} training images{rss}")
        if metrics.get("per_class_accuracy"):
            lines += ["", "| class | accuracy |", "|---|---|"]
            lines += [f"| {k} | {v:.1%} |" for k, v in metrics["per_class_accuracy"].items()]
    math = prov.get("math_path") or {}
    execution = prov.get("execution") or {}
    lines += ["", "## Where it ran", "",
              f"- mode: {execution.get('mode')}, capabilities added: {execution.get('capabilities_added')}, "
              f"capabilities held: {(execution.get('inside') or {}).get('capabilities')}",
              f"- oneDNN kernels: {math.get('isas_dispatched')} (AMX used: {math.get('amx_used')}, "
              f"bf16 kernels: {math.get('bf16_kernels_seen')}; {_math_source(math)})",
              f"- CPU: {((prov.get('host') or {}).get('cpu') or {}).get('model_name')}"]
    lines += ["", *[f"![{i}]({i})" for i in images], ""]
    out = run / "report.md"
    out.write_text("\n".join(lines))
    return out


def _math_source(math: dict) -> str:
    if math.get("source") == "training":
        return f"rank 0's training: {sum((math.get('implementations') or {}).values())} primitive executions"
    return "a side sample"


def _flatten(d, prefix=""):
    if isinstance(d, dict):
        for k, v in d.items():
            yield from _flatten(v, f"{prefix}.{k}" if prefix else str(k))
    elif isinstance(d, list) and len(d) > 16:  # long lists (CPU flags, per-epoch rows): compare whole
        yield prefix, json.dumps(d, sort_keys=True)
    elif isinstance(d, list):
        for i, v in enumerate(d):
            yield from _flatten(v, f"{prefix}[{i}]")
    else:
        yield prefix, d


_NOISE = ("timestamps.", "run_id", "host.hostname", "execution.image.id", "code.commit", "metrics.per_epoch",
          "env.other_names")


def is_committed_reference(run: Path) -> bool:
    """A run dir under the bundle's committed results/reference/ (its files are what the verdicts compare with)."""
    return Path(run).resolve().is_relative_to(claims.REFERENCE_DIR.resolve())


def compare(run_a: Path, run_b: Path) -> list[tuple[str, object, object]]:
    """Every differing field of config, provenance and headline metrics (timestamps and ids left out); one line for
    a path that is not a run dir (a typo must not read as 'identical')."""
    from xeontl.common.errors import UserError

    for run in (run_a, run_b):
        if not (Path(run) / "metrics.json").is_file() or not (Path(run) / "config.json").is_file():
            raise UserError(f"{run} is not a run dir (no metrics.json and config.json): give two results/<run-id>")
    def doc(run):
        m = _load(run, "metrics.json")
        return {"config": _load(run, "config.json"), "provenance": _load(run, "provenance.json"),
                "metrics": {k: v for k, v in m.items() if not isinstance(v, (list, dict)) or k == "precision"}}

    a, b = dict(_flatten(doc(Path(run_a)))), dict(_flatten(doc(Path(run_b))))
    return [(k, a.get(k), b.get(k)) for k in sorted(set(a) | set(b))
            if a.get(k) != b.get(k) and not any(n in k for n in _NOISE)]
