"""`invoke smoke`: the image works end to end — Horovod over mpirun -np 2 on two emulated sockets, smoke profile,
through the same launcher a reviewer uses — and the results landed on the host, owned by the invoking user."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from xeontl.common import records
from xeontl.common.errors import UserError
from xeontl.experiment import config, events
from xeontl.launch import launch, options
from xeontl.launch.options import Options
from xeontl.supply.stacks import DEFAULT, by_image, tag_stack


def check_run(run: Path, workers: int) -> dict:
    """The assertions `invoke smoke` and the tests share: success, every rank reported, files owned by us."""
    metrics = records.read_record(run / "metrics.json", "metrics")
    problems = []
    if metrics.get("status") != "success":
        problems.append(f"status {metrics.get('status')}")
    ranks = sorted(r["rank"] for r in metrics.get("ranks", []))
    if ranks != list(range(workers)):
        problems.append(f"ranks reported {ranks}, expected {list(range(workers))}")
    for f in ("provenance.json", events.FILE, "command.txt", "report.md", "logs/rank-0.log"):
        if not (run / f).exists():
            problems.append(f"missing {f}")
    foreign = [str(p) for p in [run, *run.rglob("*")] if p.stat().st_uid != os.getuid()]
    if foreign:
        problems.append(f"owned by another user: {foreign[:3]}")
    if problems:
        raise UserError(f"smoke run {run} failed: {'; '.join(problems)}")
    return metrics


def run(image: str, results_dir: Path | None = None) -> Path:
    stack = (tag_stack(image) or DEFAULT).name  # smoke has no --stack: a stack's own tag runs on that stack
    opts = Options(sockets=2, emulate_sockets=True, profile="smoke", image=image, stack=stack,
                   results_dir=Path(results_dir or tempfile.gettempdir()))
    options.check(opts, then=by_image)  # refused before its temp dir is made, in smoke's options (--image)
    launch.require_precision(opts, config.resolve(opts.profile))
    results = Path(results_dir or tempfile.mkdtemp(prefix="xeontl-smoke-"))
    rc = launch.reproduce(dataclasses.replace(opts, results_dir=results))
    runs = sorted(p for p in results.iterdir() if p.is_dir() and not p.name.startswith("."))
    if rc != 0 or not runs:
        raise UserError(f"smoke run failed (exit {rc}); see {results}")
    metrics = check_run(runs[-1], 2)
    print(f"xeontl smoke: OK — 2 ranks on 2 emulated sockets in {image}, val accuracy "
          f"{metrics['final_val_accuracy']:.3f}, results in {runs[-1]}")
    return runs[-1]
