"""`python -m xeontl ...`: the entry point every launch path (native, docker, compose, horovodrun) runs.

`train --config RUN/config.json` is what the launcher's ranks run: the run's config, resolved once by the launcher,
used as is. Standalone, `train --profile NAME [--key value ...]` resolves a profile here instead.
"""

from __future__ import annotations

import argparse
import errno
import json
import os
import signal
import sys
from pathlib import Path

from xeontl.common import sanitize
from xeontl.common.errors import UserError, one_line
from xeontl.experiment import config
from xeontl.launch import options


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """--profile plus one --flag per config field (all optional: the profile supplies the rest)."""
    parser.add_argument("--profile", default=None, help=f"one of {', '.join(config.profile_names())} (default demo)")
    group = parser.add_argument_group("config overrides (default: the profile's value)")
    for key, field in config.FIELDS.items():
        if key == "description":
            continue
        group.add_argument("--" + key.replace("_", "-"), dest=key, metavar=field.type.__name__.upper(), help=field.help)


def overrides_from(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in config.FIELDS if getattr(args, k, None) is not None}


def resolved_config(args: argparse.Namespace) -> dict:
    """--config FILE (a resolved config, as is) or --profile + overrides; never both."""
    overrides = overrides_from(args)
    if getattr(args, "config", None):
        if overrides or args.profile:
            given = ", ".join(["--profile"] * bool(args.profile) + [f"--{k.replace('_', '-')}" for k in overrides])
            raise UserError(f"--config is a resolved config, used as is: drop {given}, or drop --config")
        return config.load(args.config)
    return config.resolve(args.profile or "demo", overrides)


class _Parser(argparse.ArgumentParser):
    """argparse with its error line through errors.one_line: a bad argument quoted in it (an ESC sequence, a
    newline) is shown escaped, on one line."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(2, f"{self.prog}: error: {one_line(message)}\n")


def _parser() -> argparse.ArgumentParser:
    p = _Parser(prog="xeontl", description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train the head (alone, or as one rank under horovodrun)")
    t.add_argument("--config", type=Path, default=None, help="a run's resolved config.json, used as is")
    add_config_args(t)
    t.add_argument("--output", required=True, type=Path, help="run directory (created; never overwritten)")
    t.add_argument("--resume-from", type=Path, default=None,
                   help="continue an interrupted run from its last epoch checkpoint (RUN_DIR with checkpoints/)")
    t.add_argument("--horovod", choices=("auto", "on", "off"), default="auto",
                   help="auto: use Horovod when launched by horovodrun (default)")
    t.add_argument("--intra-threads", type=int, default=0, help="TF intra-op threads, from the plan (0: TF's default)")
    t.add_argument("--inter-threads", type=int, default=0, help="TF inter-op threads, from the plan (0: TF's default)")
    t.add_argument("--fault-after-epoch", type=int, default=0,
                   help="tests: rank 1 (or the only rank) SIGKILLs itself after this epoch's checkpoint")

    r = sub.add_parser("reproduce", help="the launcher, natively on this host or inside a container (compose)")
    add_config_args(r)
    options.add_arguments(r)  # the launch options, declared once (xeontl.launch.options), as invoke's are

    for name, what in (("probe", "print what this environment is (host, container, software, oneDNN ISA) as JSON"),
                       ("isa-sample", "run a short conv + matmul sample (the probe runs it with ONEDNN_VERBOSE=1)")):
        pr = sub.add_parser(name, help=what)
        pr.add_argument("--precision", default="bf16", choices=("bf16", "fp32", "auto"))
        pr.add_argument("--amp", default="onednn", choices=("onednn", "keras"))

    m = sub.add_parser("measure", help="the bench's compute probe: matmul GFLOP/s or backbone images/s, as JSON")
    m.add_argument("what", choices=("matmul", "backbone", "bandwidth", "step", "curve", "onednn", "tmul"))
    m.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    m.add_argument("--size", type=int, required=True, help="matmul side, image size in pixels, or MiB per array")
    m.add_argument("--batch", type=int, default=32)
    m.add_argument("--repeats", type=int, default=5)
    m.add_argument("--threads", type=int, default=0, help="intra- and inter-op threads (the plan's)")
    m.add_argument("--no-fold", dest="fold", action="store_false",
                   help="keep the backbone's batch norms as separate layers (training folds them)")

    k = sub.add_parser("k8s-launch", help="the MPIJob's launcher pod: run its mpirun, then settle and record the run")
    k.add_argument("--run-id", required=True)
    k.add_argument("--results-dir", type=Path, default=Path("/results"), help="the results volume")
    k.add_argument("--config-dir", type=Path, default=Path("/etc/xeontl"), help="the run's ConfigMap")
    k.add_argument("launch", nargs=argparse.REMAINDER, help="-- mpirun ...")

    c = sub.add_parser("config", help="print the resolved config of a profile as JSON (a file `train --config` takes)")
    add_config_args(c)
    return p


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends us quietly, like any Unix tool
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # keep TF's warnings, drop its info banners
    sanitize.safe_streams()  # a note's letters on an ASCII terminal: escaped, never a UnicodeEncodeError
    args = _parser().parse_args(argv)
    try:
        if args.command in ("reproduce", "train"):  # their refusals advise their own flag, not invoke's --set
            from xeontl.experiment import runtime

            PRECISION_FLAG, runtime.PRECISION_FLAG = runtime.PRECISION_FLAG, "--precision {}"
        if args.command == "probe":
            from xeontl.records import provenance

            print(json.dumps(provenance.probe(args.precision, args.amp), default=str))
            return 0
        if args.command == "isa-sample":
            from xeontl.experiment import runtime

            runtime.isa_sample(args.precision, args.amp)
            return 0
        if args.command == "measure":
            from xeontl.measure import bench

            print(json.dumps(bench.measure(args.what, args.precision, args.size, args.batch, args.repeats,
                                           args.threads, args.fold)))
            return 0
        if args.command == "k8s-launch":
            from xeontl.engines import mpijob_launcher

            return mpijob_launcher.launch_pod(args.run_id, args.results_dir, args.config_dir,
                                         args.launch[1:] if args.launch[:1] == ["--"] else args.launch)
        if args.command == "reproduce":
            from xeontl.launch import launch

            # in a container (compose) or on this host, the launcher here runs the ranks itself: natively
            return launch.reproduce(options.from_argparse(args, profile=args.profile or "demo",
                                                          overrides=overrides_from(args), native=True))
        cfg = resolved_config(args)
        if args.command == "config":
            print(json.dumps(cfg, indent=1))
            return 0
        from xeontl.experiment import train  # imports TensorFlow: only for the commands that need it

        metrics = train.train(cfg, args.output, {"auto": None, "on": True, "off": False}[args.horovod],
                              resume_from=args.resume_from, threads=(args.intra_threads, args.inter_threads),
                              fault_after_epoch=args.fault_after_epoch)
        if metrics.get("final_val_accuracy") is not None:
            print(f"xeontl: done: val accuracy {metrics['final_val_accuracy']:.4f}, {metrics['epochs_run']} epochs, "
                  f"{metrics['train_seconds']:.1f} s" + "".join(f" [{n}]" for n in metrics["notices"]))
        return 0
    except UserError as e:
        print(f"xeontl: error: {one_line(e)}", file=sys.stderr)
        return e.exit_code
    except OSError as e:
        if e.errno not in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):  # the disk, not a bug: as invoke's guard
            raise
        print(f"xeontl: error: writing failed ({e.strerror}: {e.filename}): free space there and run again",
              file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        from xeontl.launch import outcome

        print("xeontl: interrupted", file=sys.stderr)
        return outcome.ABORTED_EXIT
    finally:  # the advice's flag is this call's: an in-process caller (a test, invoke) gets its own back
        if args.command in ("reproduce", "train"):
            from xeontl.experiment import runtime

            runtime.PRECISION_FLAG = PRECISION_FLAG
