#!/usr/bin/env python3
"""How often the quick start's "Reproduced" line says yes on a healthy run and no on a broken one, measured: the
README's run (`invoke reproduce --sockets 2 --emulate-sockets`, in the image) N times as it is, then once under each
breakage a real machine or user can cause, each judged as report.md judges it (reference.against_reference against the
committed references). Run it alone on the machine (a busy machine is a breakage of its own):

    .venv/bin/python scripts/verdict-rates.py --healthy 3 --results-dir results/verdict-rates

Breakages:
  neighbour   a busy process pinned to the second rank's CPU for the whole run (a shared host's noisy neighbour)
  no-bf16     ONEDNN_MAX_CPU_ISA=AVX512_CORE in the ranks' environment: oneDNN may not use its BF16 kernels (refused
              since the launcher passes only the environment names its plan sets, options.check: not a default)
  one-core    the container's cpuset narrowed to the first rank's CPU once training runs (`docker update
              --cpuset-cpus`: what an operator's or an orchestrator's resize does), both ranks on one core
Prints one line per run and writes verdict-rates.json beside the runs."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))

from xeontl.common.errors import UserError  # noqa: E402
from xeontl.launch import launch  # noqa: E402
from xeontl.launch.options import Options  # noqa: E402
from xeontl.records import claims, reference  # noqa: E402


def busy(cpu: int, stop: threading.Event) -> subprocess.Popen:
    return subprocess.Popen(["taskset", "-c", str(cpu), sys.executable, "-c", "while True: pass"])


def shrink_when_training(results: Path, cpu: int, stop: threading.Event) -> None:
    """Once a rank logs its first epoch, narrow the run's container to one CPU."""
    while not stop.is_set():
        for log in results.glob(".staging-*/logs/rank-1.log"):
            if "epoch 1:" in log.read_text(errors="replace"):
                name = "xeontl-" + log.parents[1].name.removeprefix(".staging-")
                subprocess.run(["docker", "update", f"--cpuset-cpus={cpu}", name], capture_output=True)
                return
        time.sleep(1)


def one(opts: Options, breakage: str | None) -> dict:
    job = launch.prepare(opts)
    cpus = [w.cpus for w in job.plan.workers]
    stop, hog, watcher = threading.Event(), None, None
    if breakage == "neighbour":
        hog = busy(cpus[1][0], stop)
    if breakage == "one-core":
        watcher = threading.Thread(target=shrink_when_training, args=(opts.results_dir, cpus[0][0], stop))
        watcher.start()
    try:
        rc, run = launch.execute(job)
    finally:
        stop.set()
        if hog:
            hog.kill()
        if watcher:
            watcher.join()
    loaded = claims.load_run(run)
    verdict = reference.judge(loaded)
    m = loaded["metrics"]
    return {"run": run.name, "breakage": breakage, "rc": rc, "train_seconds": m.get("train_seconds"),
            "accuracy": m.get("final_val_accuracy"), "reproduced": verdict and verdict["reproduced"],
            "why": verdict and verdict["why"]}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--healthy", type=int, default=3, help="healthy runs (default 3)")
    p.add_argument("--breakages", default="neighbour,one-core", help="comma-separated, or none")
    p.add_argument("--results-dir", type=Path, default=ROOT / "results" / "verdict-rates")
    p.add_argument("--image", default="xeontl:latest", help="the image the runs use (built first when missing)")
    args = p.parse_args()
    base = Options(sockets=2, emulate_sockets=True, profile="demo", results_dir=args.results_dir, image=args.image)
    plan = [(None, base)] * args.healthy
    env = {"no-bf16": {"ONEDNN_MAX_CPU_ISA": "AVX512_CORE"}}
    for b in [b for b in args.breakages.split(",") if b and b != "none"]:
        plan.append((b, dataclasses.replace(base, extra_env=env.get(b, {}))))
    rows = []
    for breakage, opts in plan:
        try:
            row = one(opts, breakage)
        except UserError as e:  # a breakage the launcher refuses before any run: said, not measured
            print(f"{breakage}: not run: {e}", flush=True)
            continue
        rows.append(row)
        print(json.dumps({k: row[k] for k in ("run", "breakage", "train_seconds", "accuracy", "reproduced")}),
              flush=True)
    args.results_dir.mkdir(parents=True, exist_ok=True)
    (args.results_dir / "verdict-rates.json").write_text(json.dumps(rows, indent=1))
    healthy = [r for r in rows if r["breakage"] is None]
    broken = [r for r in rows if r["breakage"]]
    print(f"healthy: {sum(r['reproduced'] is True for r in healthy)}/{len(healthy)} said yes; "
          f"broken: {sum(r['reproduced'] is False for r in broken)}/{len(broken)} said no")
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    sys.exit(main())
