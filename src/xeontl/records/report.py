"""report.md + PNGs for a run dir, and `compare` between two runs.

First the differences from the paper in plain words, then the claims table (claims.py: verdicts computed from
claims.toml and from structured fields of the runs, never from these sentences), then the run judged against the
bundle's own committed reference run of the same kind, if there is one.
"""

from __future__ import annotations

import json
from pathlib import Path

from xeontl import RANDOM_WEIGHTS_NOTICE, SYNTHETIC_NOTICE
from xeontl.common import records
from xeontl.launch import rundir
from xeontl.records import claims, reference
from xeontl.supply import stacks


def _load(run: Path, name: str) -> dict:
    """A run's record as its schema allows it ({} when the run has none), or one line naming the file and field."""
    return records.read_record(run / name, records.RUN_FILES[name], missing={})


def differences(metrics: dict, prov: dict, plan: dict) -> list[str]:
    """What makes this run not the paper's, in plain words (first thing the report says)."""
    out = []
    notices = metrics.get("notices", [])
    if SYNTHETIC_NOTICE in notices:
        out.append("Synthetic data — not the paper's dataset: accuracy and epochs say nothing about "
                   "colorectal_histology.")
    if RANDOM_WEIGHTS_NOTICE in notices:
        out.append("Random backbone — not ImageNet: features are random projections; a standardization layer was "
                   "added before the head (demo only).")
    fc = metrics.get("feature_cache")
    if fc:
        out.append(f"Feature cache (--feature-cache): the head trained on stored backbone features of "
                   f"{fc['views']} augmented view(s) per image, not on freshly augmented images every epoch; "
                   f"not the paper's protocol (cache {'reused' if fc['hit'] else 'built'} in "
                   f"{fc['build_seconds']:.1f} s).")
    if metrics.get("resumed_from"):
        r = metrics["resumed_from"]
        out.append(f"Resumed after epoch {r['epoch']} from {r['checkpoint']}: train_seconds covers the "
                   f"continuation only.")
    if plan.get("emulated"):
        w = plan["workers"][0]
        out.append(f"Emulated sockets: {plan['sockets']} groups of {w['cores']} core(s) carved from one real socket; "
                   f"the paper had 2 sockets of 56 cores.")
    host = (prov.get("host") or {})
    flags = host.get("cpu", {}).get("flags_of_note", {})
    math = prov.get("math_path") or {}
    if flags and not flags.get("amx_bf16"):
        out.append("No AMX on this CPU: BF16 runs on AVX512-BF16 at best (the paper's SPR used AMX tiles).")
    elif math and not math.get("amx_used") and metrics.get("precision", {}).get("precision") == "bf16":
        out.append("AMX is advertised but oneDNN did not dispatch AMX kernels in the sample.")
    topo = host.get("topology", {})
    if topo and (topo.get("sockets"), topo.get("cores_per_socket")) != (2, [56, 56]):
        out.append(f"Hardware: {host.get('cpu', {}).get('model_name')}, {topo.get('sockets')} socket(s) x "
                   f"{topo.get('cores_per_socket')} cores — not the paper's 2x Xeon Platinum 8480+ (56 cores each).")
    software = prov.get("software") or {}
    if software:
        out.append(stacks.difference(software))
    if (prov.get("execution") or {}).get("mode") == "docker":
        out.append("Ran in a container (the paper ran on bare metal).")
    return out


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


def write(run: Path, others: list[Path] | None = None) -> Path:
    """report.md for RUN (with the other runs of a `invoke paper` or `invoke report --runs` set for the ratio
    claims); records the reference verdict in metrics.json too."""
    run = Path(run)
    metrics, prov, plan = _load(run, "metrics.json"), _load(run, "provenance.json"), _load(run, "plan.json")
    diffs = differences(metrics, prov, plan)
    rows = claims.judge(*pair(run, list(others or [])))
    this = claims.load_run(run)
    ref = reference.against_reference(this, reference.find_reference(this))
    if ref is not None and metrics:
        metrics = rundir.update_metrics(run, reference=ref)
    images = _plots(run, metrics)
    run_id = prov.get("run_id") or run.name.removeprefix(".staging-")
    lines = [f"# xeontl run {run_id}", "", f"**Status: {metrics.get('status', 'unknown')}**"]
    if metrics.get("failure") or metrics.get("error"):
        lines.append(f"Failure: `{json.dumps(metrics.get('failure') or metrics.get('error'))}`")
    lines += ["", "## How this run differs from the paper", ""]
    lines += [f"- {d}" for d in diffs] or ["- Nothing detected: same kind of host, real data and weights."]
    lines += ["", "## The paper's claims", "", claims.markdown(rows)]
    if ref is not None:
        lines += ["## Reproducing the bundle's reference run", "",
                  f"**Reproduced: {({True: 'yes', False: 'no'}).get(ref['reproduced'], 'not judged')}** (reference "
                  f"`results/reference/{ref['reference']}`)", "", *[f"- {w}" for w in ref["why"]]]
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
              f"bf16 kernels: {math.get('bf16_kernels_seen')})",
              f"- CPU: {((prov.get('host') or {}).get('cpu') or {}).get('model_name')}"]
    lines += ["", *[f"![{i}]({i})" for i in images], ""]
    out = run / "report.md"
    out.write_text("\n".join(lines))
    return out


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
