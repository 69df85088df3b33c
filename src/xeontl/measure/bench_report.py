"""What `invoke bench` writes of its figures: bench.json, bench.md (each figure with its target and the reason it is
missing where it is), bench.png. The figures' declarations (FIGURES) are here, once; bench.assemble computes them."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path


def write(out: Path, res: dict) -> None:
    (out / "bench.json").write_text(json.dumps(res, indent=1, default=str))
    (out / "bench.md").write_text(table(res))
    _plot(out, res)


@dataclasses.dataclass(frozen=True)
class Figure:
    """One figure of the bench, declared once: bench.json's key, the label and unit bench.md and bench.png show,
    how `assemble` computes it (from the raw measurements), the paper's value, the target as (comparison, value),
    and where bench.png draws it (rates: the images/s panel; ratios: the ratio panel, with the target)."""

    key: str
    label: str
    unit: str
    basis: str
    paper: str = "—"
    target: tuple[str, float] | None = None
    plot: str | None = None  # "rate" | "ratio" | None
    short: str = ""  # bench.png's bar label

    def met(self, value) -> bool | None:
        if self.target is None or value is None:
            return None
        op, bound = self.target
        return value >= bound if op == ">=" else value <= bound


FIGURES = [
    Figure("peak_gflops_fp32", "matmul peak fp32, one worker's cores", "GFLOP/s",
           "median of `xeontl measure matmul`, square fp32, on the worker's cores"),
    Figure("peak_gflops_bf16", "matmul peak bf16", "GFLOP/s", "as fp32, in bf16 (oneDNN's bf16 kernels)"),
    Figure("bf16_peak_ratio", "bf16 / fp32 matmul peak", "x", "the two peaks' ratio: the ceiling of bf16 gains"),
    Figure("backbone_img_s_fp32", "backbone forward fp32", "images/s", "ResNet50 forward, the bench's image size",
           plot="rate", short="backbone\nfp32"),
    Figure("backbone_img_s_bf16", "backbone forward bf16", "images/s", "as fp32, bf16 AMP", plot="rate",
           short="backbone\nbf16"),
    Figure("bf16_speedup", "bf16 speedup, backbone forward", "x", "bf16 / fp32 images/s"),
    Figure("step_ms_paper_shape", "the paper's training step, 224 px batch 32, the demo's precision here", "ms",
           "median over interleaved runs of `xeontl measure step` (frozen backbone forward, head, Adam)"),
    Figure("batch_norm_fold_saving", "time a step saves with the backbone's batch norms folded", "fraction",
           "1 - folded step / step with separate batch norm layers (medians of interleaved runs)"),
    Figure("bf16_epoch_speedup", "bf16 speedup, training epoch end to end (1 worker)", "x",
           "fp32 epoch time / bf16 epoch time, same images (Intel's kit logged 1.49x on one socket)",
           target=(">=", 2.0), plot="ratio",
           short="bf16 epoch\nspeedup"),
    Figure("peak_fraction_fp32", "matmul peak fp32 / the cores' theoretical fp32 limit", "fraction",
           "measured peak / (FLOPs per cycle x clock x cores)"),
    Figure("peak_fraction_bf16", "matmul peak bf16 / the cores' theoretical bf16 limit", "fraction",
           "measured peak / (AMX or AVX512-BF16 FLOPs per cycle x clock x cores)"),
    Figure("mfu_bf16", "MFU bf16 vs measured peak, 4.1 GFLOP/image at 224 px (the issue's convention)", "fraction",
           "images/s x 4.1 GFLOP x (size/224)^2 / measured bf16 peak"),
    Figure("mfu_bf16_counted_flops", "MFU bf16 vs measured peak, FLOPs counted by TF's profiler", "fraction",
           "images/s x the graph's counted FLOPs / measured bf16 peak", target=(">=", 0.7), plot="ratio",
           short="MFU bf16\n(counted)"),
    Figure("mfu_bf16_theoretical", "MFU bf16 vs the theoretical limit (counted FLOPs)", "fraction",
           "images/s x counted FLOPs / theoretical bf16 limit"),
    Figure("mfu_fp32_counted_flops", "MFU fp32 vs measured fp32 peak (counted FLOPs)", "fraction",
           "fp32 images/s x counted FLOPs / measured fp32 peak"),
    Figure("mfu_fp32_theoretical", "MFU fp32 vs the theoretical fp32 limit (counted FLOPs)", "fraction",
           "fp32 images/s x counted FLOPs / theoretical fp32 limit"),
    Figure("train_img_s_1w", "training, 1 worker on one socket", "images/s",
           "median over interleaved repeats of a real launcher run: images / epoch seconds", plot="rate",
           short="train 1w"),
    Figure("train_img_s_1w_fp32", "training, 1 worker, fp32", "images/s", "as above, precision fp32", plot="rate",
           short="train 1w\nfp32"),
    Figure("train_img_s_2w", "training, 2 workers on two sockets, MPI", "images/s",
           "as above, mpirun -np 2 (horovodrun's line) with the launcher's defaults", plot="rate", short="train 2w"),
    Figure("predicted_train_img_s_1w", "training rate check-host predicts, 1 worker (the backbone's forward rate)",
           "images/s", "the backbone probe's images/s at the precision the 1-worker run used"),
    Figure("prediction_error_1w", "check-host's prediction error on the 1-worker demo run", "fraction",
           "measured / predicted training images/s - 1 (what --check-host's predicted times can be off by)"),
    Figure("beyond_forward_ms_per_image", "a training image's time beyond the backbone's forward pass, 1 worker",
           "ms", "1000 / the 1-worker training rate - 1000 / the forward rate it ran at (what the prediction omits)"),
    Figure("scaling_efficiency", "scaling efficiency, 2 workers, MPI (launcher defaults)", "fraction",
           "2-worker images/s / (2 x 1-worker images/s)", paper="0.92 (1.83x)", target=(">=", 0.95), plot="ratio",
           short="scaling\nefficiency"),
    Figure("scaling_efficiency_mpi_busy_poll", "scaling efficiency, MPI busy-polling (fix undone)", "fraction",
           "as above with OMPI_MCA_mpi_yield_when_idle=0"),
    Figure("scaling_efficiency_gloo", "scaling efficiency, Gloo controller", "fraction", "as above, --controller gloo"),
    Figure("container_over_native", "container / native, 2 workers", "x",
           "2-worker images/s in the image / natively", paper="— (bare metal)", target=(">=", 0.99), plot="ratio",
           short="container /\nnative"),
    Figure("run_overhead_s", "run overhead beyond the epochs, 2 workers", "s",
           "the run's wall time - its training time (container when measured)", target=("<=", 10.0)),
    Figure("source_rebuild_s", "image rebuild after a source-only change", "s",
           "`invoke build` after touching one source file", target=("<=", 20.0)),
    Figure("bench_minutes", "this bench's own duration (the full bench)", "min",
           "the sum of its parts' times (bench.json's raw bench_seconds)", target=("<=", 20.0)),
    Figure("peak_rss_mib_demo", "peak RSS per rank, demo", "MiB", "the largest rank's peak RSS in the 2-worker run"),
    Figure("peak_rss_mib_paper_shape", "peak RSS per rank, paper shape 224 px batch 32", "MiB",
           "peak RSS of a short run at the paper's shape", target=("<=", 4096.0)),
    Figure("feature_cache_speedup", "--feature-cache time-to-accuracy speedup", "x",
           "time to the protocol's final accuracy, protocol / feature cache", paper="— (not in the paper)",
           target=(">=", 10.0)),
    Figure("feature_cache_accuracy_delta", "--feature-cache final accuracy − protocol's", "points",
           "final val accuracy, feature cache - protocol", target=(">=", -0.005)),
]
RATES = [f for f in FIGURES if f.plot == "rate"] + [
    Figure("train_img_s_2w_mpi_busy_poll", "", "images/s", "", plot="rate", short="2w MPI\nbusy-poll"),
    Figure("train_img_s_2w_gloo", "", "images/s", "", plot="rate", short="2w Gloo"),
    Figure("train_img_s_2w_container", "", "images/s", "", plot="rate", short="2w\ncontainer")]


def table(res: dict) -> str:
    """bench.md: every figure next to the paper's and the target, with the reason wherever a figure is missing."""
    rows = ["| figure | this machine | paper | target | met |", "|---|---|---|---|---|"]
    for f in FIGURES:
        v = res.get(f.key)
        shown = "n/a: " + str(res.get(f.key + "_reason")) \
            if v is None else (f"{v:.3f}" if abs(v) < 10 else f"{v:.1f}")
        ok = f.met(v)
        met = "" if ok is None else ("yes" if ok else "no")
        unit = f" ({f.unit})" if f.unit in ("GFLOP/s", "images/s", "s", "ms", "MiB") else ""
        target = "" if f.target is None else f"{f.target[0]} {f.target[1]}"
        rows.append(f"| {f.label}{unit} | {shown} | {f.paper} | {target} | {met} |")
    prof = res.get("step_profile") or {}
    if prof:
        groups = list(dict.fromkeys([*prof["folded"]["ms_per_step"], *prof["separate"]["ms_per_step"]]))
        rows += ["", f"Where the paper's training step goes, by oneDNN primitive ({res['step_basis']}; the profile of "
                     f"the first run of each):", "", "| part | ms per step, batch norms folded (training) | "
                     "ms per step, batch norms separate |", "|---|---|---|",
                 *[f"| {g} | {prof['folded']['ms_per_step'].get(g, 0.0):.1f} | "
                   f"{prof['separate']['ms_per_step'].get(g, 0.0):.1f} |" for g in groups],
                 f"| the step | {prof['folded']['step_ms']:.0f} | {prof['separate']['step_ms']:.0f} |"]
    took = (res.get("raw") or {}).get("bench_seconds") or {}
    if took:
        rows += ["", f"This bench took {sum(took.values()) / 60:.1f} min: "
                     + ", ".join(f"{name} {s / 60:.1f}" for name, s in took.items()) + " (min)."]
    phases = res.get("run_overhead_phases") or {}
    if phases.get("seconds"):
        rows += ["", f"Where the run overhead goes ({res.get('run_overhead_basis')}; medians of the repeats; the "
                     f"training phase is the fit itself, not overhead):", "", "| phase | s |", "|---|---|",
                 *[f"| {name} | {s:.1f} |" for name, s in phases["seconds"].items()],
                 f"| (inside training: the first epoch beyond the median epoch, tracing) | "
                 f"{phases['first_epoch_extra'] or 0:.1f} |"]
    how = ["", "How each figure is computed (bench.py's `assemble`, from bench.json's `raw`):", "",
           *(f"- `{f.key}` ({f.unit}): {f.basis}" for f in FIGURES)]
    host = res["host"]
    return (f"xeontl bench on {host.get('cpu')} ({host['usable_cpus']}; {host['note']}); training figures are "
            f"medians of {res['sizes']['train_repeats']} interleaved repeat(s)\n\n" + "\n".join(rows + how) + "\n")


def _plot(out: Path, res: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rates = [(f.short, res.get(f.key)) for f in RATES]
    ratios = [(f.short, res.get(f.key), f.target and f.target[1]) for f in FIGURES if f.plot == "ratio"]
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4), gridspec_kw={"width_ratios": [2, 1]})
    a.bar([r[0] for r in rates], [r[1] or 0 for r in rates], color="tab:blue")
    a.set_ylabel("images/s")
    b.bar([r[0] for r in ratios], [r[1] or 0 for r in ratios], color="tab:green")
    b.scatter([r[0] for r in ratios if r[2] is not None], [r[2] for r in ratios if r[2] is not None], marker="_",
              s=900, color="red", label="target")
    b.legend(fontsize=8)
    for ax in (a, b):
        ax.tick_params(labelsize=7)
    note = res["host"]["note"]
    fig.suptitle(f"xeontl bench on {res['host'].get('cpu')} ({res['host']['usable_cpus']}; {note})", fontsize=9)
    fig.tight_layout()
    fig.savefig(out / "bench.png", dpi=80)
    plt.close(fig)
