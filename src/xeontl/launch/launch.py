"""`invoke reproduce`: a run's lifecycle, the same whatever runs it. Options -> the engine (chosen once, here) -> the
config (resolved once) -> the plan -> the engine's commands -> what it holds (the CPUs) -> the staged run dir ->
the run -> its status settled -> provenance -> report -> renamed whole. Every CPU, thread and env decision is
plan.py's; every command line, tool and record of the engine is its own (xeontl.engines)."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import secrets
import shutil
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from xeontl import engines
from xeontl.common import records, sanitize
from xeontl.common.errors import RunError, UserError
from xeontl.engines.base import Engine, Job
from xeontl.experiment import checkpoint, config
from xeontl.launch import options, outcome, repeats, rundir
from xeontl.launch.options import RESUME_KEYS, Options
from xeontl.placement import plan as planlib

# What a resumed run takes from launch.json only when the command line gives the same (a run dir's launch.json is a
# file anyone who could write the run dir wrote: it must not pick the hosts a continuation joins, with the network on,
# nor the engine or the cluster's partition it submits to). The other kept options (sockets, pinning, controller,
# stack, the plan's own env) only shape the run on the hosts the command line names.
RESUME_GIVEN = ("engine", "hosts", "nodes", "partition", "container", "time_limit")
assert set(RESUME_GIVEN) <= set(RESUME_KEYS)
WEIGHTS_PIN = "weights-pin.json"  # assets.pin_weights' record, read into provenance.json


def new_run_id(cfg: dict, sockets: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{cfg['profile']}-{sockets}s-{secrets.token_hex(2)}"


def resume_options(opts: Options) -> tuple[Options, dict]:
    """`--resume RUN`: the interrupted run's own config.json (used as is) and launch (sockets, pinning, controller),
    checked first."""
    run = opts.resume.resolve()
    if opts.overrides:
        raise UserError(f"--resume continues a run with its own config: drop --set/--dataset/--weights "
                        f"({', '.join(sorted(opts.overrides))}), or start a new run with them")
    if not (run / "config.json").is_file():
        raise UserError(f"--resume {opts.resume}: not a run dir (no config.json): give results/<run-id>")

    def read(what):  # every record of the run as its schema allows, or one line naming the file and the field
        try:
            return what()
        except UserError as e:
            raise UserError(f"--resume {opts.resume}: {e}: the run's launch cannot be rebuilt; start a new run") \
                from None

    if read(lambda: rundir.read_metrics(run)).get("status") == "success":
        raise UserError(f"--resume {opts.resume}: that run finished successfully; nothing to resume")
    ck = checkpoint.latest(run)
    if ck is None:
        raise UserError(f"--resume {opts.resume}: no completed-epoch checkpoint in {run / checkpoint.DIR}: "
                        f"nothing to resume, start a new run")
    cfg = read(lambda: config.load(run / "config.json"))
    launch = read(lambda: records.read_record(run / "launch.json", "launch"))
    keep = {k: launch[k] for k in RESUME_KEYS if k in launch}
    if keep.get("engine", "local") == "local":  # launch.json before 2026-11-30 recorded Slurm's container default too
        keep.pop("container", None)
    for name in RESUME_GIVEN:  # where a continuation runs and whom it reaches: the command line's word, not the file's
        if name in keep and keep[name] != getattr(opts, name):
            flag = "--" + options.flag(options.FIELDS[name]).replace("_", "-")
            raise UserError(f"--resume {opts.resume}: its launch.json says {flag} {keep[name]!r}, the command line "
                            f"{getattr(opts, name)!r}: a continuation runs only where the command line says; give "
                            f"{flag} {keep[name]} to resume it there, or start a new run")
    try:
        resumed = options.check(dataclasses.replace(opts, profile=cfg["profile"], resume=run, **keep))
    except options.CpuLacks as e:  # the CPU, not the record: said as it is
        raise UserError(f"--resume {opts.resume}: {e}") from None
    except UserError as e:
        raise UserError(f"--resume {opts.resume}: its launch.json holds a value no launch has ({e}): start a new "
                        f"run") from None
    return resumed, cfg


def resuming(run: Path) -> str:
    """The line a resume says once nothing refuses it (prepare)."""
    ck = checkpoint.latest(run)
    return f"xeontl: resuming {run.name} after epoch {ck.name.split('-')[1].lstrip('0')} with its own config and launch"


def prepare(opts: Options) -> Job:
    """Everything decided, nothing run: the engine, the config (resolved here, once), the plan and the engine's exact
    command lines (what --dry-run prints). The ranks read the config this writes to the run dir; they never resolve
    it again."""
    from xeontl.supply import assets

    cfg = None
    options.check(opts)
    if opts.resume:
        opts, cfg = resume_options(opts)
    engine = engines.choose(opts)
    engine.check()
    resolved = cfg or config.resolve(opts.profile, opts.overrides)
    require_precision(opts, resolved)  # before anything is fetched, built or started
    if opts.resume:  # said once nothing refuses it
        print(resuming(opts.resume))
    if cfg is None:  # host paths made absolute, so every rank, in a container or on another node, reads the same files
        cfg = assets.absolute(resolved, cache_synthetic=engine.sees_host_cache)
    topo = engine.topology()
    plan = planlib.make_plan(topo, opts.sockets, opts.emulate_sockets, opts.cores_per_socket, opts.controller,
                             opts.hosts, **engine.layout())
    engine.fits(plan)
    run_id = new_run_id(cfg, opts.sockets)
    job = Job(opts, cfg, topo, plan, run_id, opts.results_dir.resolve() / f".staging-{run_id}",
              read_only=tuple(assets.host_paths(cfg)), engine=engine)
    engine.commands(job)
    return job


def require_precision(opts: Options, cfg: dict, advice: str | None = None) -> None:
    """A precision the ranks cannot run at on this CPU (bf16 without oneDNN BF16 kernels: runtime.choose_precision,
    which each rank applies again where it runs) is one line before anything is fetched, built or started, wherever
    the ranks run on this CPU: the stack's CPU check's rule (options.runs_here: not a --dry-run, not Slurm's nodes).
    Its ADVICE: what the command given takes (a --resume keeps its run's config: a new run, not --set)."""
    from xeontl.experiment import runtime
    from xeontl.supply.stacks import run_cpu

    if opts.resume and not advice:
        advice = (f"start a new run with {runtime.PRECISION_FLAG.format('auto')} (fp32 here; a resume keeps its "
                  f"run's precision)")
    if options.runs_here(opts):
        try:
            runtime.choose_precision(cfg["precision"], run_cpu(), advice)
        except UserError as e:
            raise UserError(f"{f'--resume {opts.resume}: ' if opts.resume else ''}{e}; nothing was fetched, built or "
                            f"run") from None


def check_results_dir(results: Path, need_bytes: int = 200 << 20) -> None:
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create results dir {results} ({e.strerror}): choose another --results-dir") from None
    if not os.access(results, os.W_OK):
        raise UserError(f"results dir {results} is not writable: choose another --results-dir")
    free = shutil.disk_usage(results).free
    if free < need_bytes:
        raise UserError(f"only {free >> 20} MiB free under {results}: a run needs ~{need_bytes >> 20} MiB, free some "
                        f"space")


def reproduce(opts: Options) -> int:
    runs = repeats.seeded(opts, repeats.check(opts.repeats))
    if opts.dry_run:
        job = prepare(runs[0])
        print(sanitize.lines(job.engine.describe(job)))  # env values, paths: foreign (a --resume's launch.json)
        return 0
    if len(runs) == 1:
        return execute(prepare(opts))[0]
    dirs, rc = [], 0
    for i, o in enumerate(runs, 1):
        job = prepare(o)  # a refusal first: no "run 1/N" line before it
        print(f"xeontl: run {i}/{len(runs)} (seed {o.overrides['seed']})", flush=True)
        code, run_dir = execute(job)
        dirs.append(run_dir)
        rc = rc or code
        if code == outcome.ABORTED_EXIT:  # Ctrl-C: no further runs
            break
    summary = repeats.summarize(dirs)
    plan = records.read_record(dirs[0] / "plan.json", "plan")
    title = (f"{len(dirs)} runs: {opts.profile}, {opts.sockets} socket(s)"
             + (" (EMULATED sockets)" if plan.get("emulated") else ""))
    text = repeats.markdown(title, summary)
    out = repeats.write(opts.results_dir, f"repeats-{opts.profile}-{opts.sockets}s", summary, text, dirs)
    print(text)
    print(f"xeontl: {len(dirs)} runs summarized in {out / 'summary.md'}")
    return rc


def execute(job: Job) -> tuple[int, Path]:
    """Run a prepared job; returns the exit code and the run dir."""
    from xeontl.supply import assets

    check_results_dir(job.opts.results_dir)
    if assets.needed(job.cfg):  # the paper profile's weights or data are missing: fetch and verify them first
        print(f"xeontl: making {', '.join(assets.needed(job.cfg))} (invoke assets; --from FILE on offline hosts)",
              flush=True)
        assets.fetch(job.cfg)
    pin_weights(job)
    job.engine.preflight(job)
    with job.engine.hold(job):
        return _run(job)


def pin_weights(job: Job) -> None:
    """The weights held to their pinned or first-seen hash before anything runs, and that hash handed to the ranks
    (config.json's weights_sha256, which the model checks where it loads them: experiment.model): what was checked
    here is what the ranks load, not whatever is at that path by then."""
    from xeontl.supply import assets

    pin = assets.pin_weights(job.cfg)
    if pin:
        job.files[WEIGHTS_PIN] = json.dumps(pin, indent=1)
        if pin.get("sha256") and not job.cfg["weights_sha256"]:
            job.cfg["weights_sha256"] = pin["sha256"]


def _run(job: Job) -> tuple[int, Path]:
    staging = job.staging
    staging.mkdir()  # fails if it exists: a run id is never reused
    try:
        return _staged(job)
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EIO, errno.EROFS):
            raise
        # the run dir's disk failed under it: whatever ran has stopped (the engines stop their ranks when the
        # launcher fails), the dir is kept, marked failed as far as the disk still lets us, and renamed whole
        with contextlib.suppress(OSError):
            rundir.write_metrics(staging, {**rundir.read_metrics(staging), "status": "failed",
                                           "error": f"{type(e).__name__}: {e.strerror} ({e.filename})"})
        with contextlib.suppress(OSError):
            os.replace(staging, job.final)
        kept = job.final if job.final.exists() else staging
        raise RunError(f"writing the run failed ({e.strerror}: {e.filename}): the run dir is kept as {kept}, "
                       f"marked failed; free space under {job.opts.results_dir} and run again") from None


def _staged(job: Job) -> tuple[int, Path]:
    engine, staging = job.engine, job.staging
    text = sanitize.lines(job.engine.describe(job))  # env values and paths are foreign (a --resume's launch.json)
    (staging / "command.txt").write_text(text)
    config.save(job.cfg, staging / "config.json")  # the one resolution of the config: every rank reads this file
    rundir.write_metrics(staging, rundir.PLACEHOLDER)  # failed until the trainer says otherwise (a disk that fills)
    (staging / "plan.json").write_text(json.dumps(job.plan.to_dict(), indent=1))
    (staging / "launch.json").write_text(json.dumps(job.opts.record(), indent=1))
    for name, content in job.files.items():
        (staging / name).write_text(content)
    print(text)
    engine.staged(staging)
    started, t0 = datetime.now(timezone.utc).isoformat(), time.time()
    ended = engine.run(job, staging)
    engine.finished(staging)
    return conclude(engine, staging, job.final, job.cfg, job.plan.to_dict(), ended, started, t0,
                    resumed_from=str(job.opts.resume) if job.opts.resume else None, report=job.opts.report)


def conclude(engine: Engine, staging: Path, final: Path, cfg: dict, plan: dict, ended: outcome.Ended, started: str,
             t0: float, resumed_from: str | None = None, report: bool = True) -> tuple[int, Path]:
    """The end of every run, whatever ran it: the status settled, provenance.json with the engine's own record,
    report.md, and the staged run dir renamed whole (results/<run-id> appears complete, or not at all)."""
    from xeontl.records import provenance
    from xeontl.records import report as reportlib

    status, failure, metrics = outcome.settle(staging, ended, engine.explain, engine.stopped())
    provenance.write(staging, final.name, cfg, plan, status, failure, metrics, provenance.read_probe(staging), started,
                     time.time() - t0, engine.execution(), resumed_from)
    if report:
        reportlib.write(staging)  # alone: the ratio claims need a set of runs (invoke paper, invoke report --runs)
    os.replace(staging, final)
    if failure and failure.get("error"):  # a refusal in the job's own words (a Slurm node's check): said here too
        print(failure["error"], file=sys.stderr)
    print(f"xeontl: {status}: results in {final}")
    return outcome.exit_code(status), final
