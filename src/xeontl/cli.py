"""`python -m xeontl train ...`: the entry point every launch path (native, docker, compose, horovodrun) runs."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from xeontl import config
from xeontl.errors import UserError


def add_config_args(parser: argparse.ArgumentParser) -> None:
    """--profile plus one --flag per config field (all optional: the profile supplies the rest)."""
    parser.add_argument("--profile", default="demo", help=f"one of {', '.join(config.profile_names())} (default demo)")
    group = parser.add_argument_group("config overrides (default: the profile's value)")
    for key, field in config.FIELDS.items():
        if key == "description":
            continue
        group.add_argument("--" + key.replace("_", "-"), dest=key, metavar=field.type.__name__.upper(), help=field.help)


def overrides_from(args: argparse.Namespace) -> dict:
    return {k: getattr(args, k) for k in config.FIELDS if getattr(args, k, None) is not None}


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="xeontl", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train the head (alone, or as one rank under horovodrun)")
    add_config_args(t)
    t.add_argument("--output", required=True, type=Path, help="run directory (created; never overwritten)")
    t.add_argument("--resume-from", type=Path, default=None,
                   help="continue an interrupted run from its last epoch checkpoint (RUN_DIR with checkpoints/)")
    t.add_argument("--horovod", choices=("auto", "on", "off"), default="auto",
                   help="auto: use Horovod when launched by horovodrun (default)")

    r = sub.add_parser("reproduce", help="the launcher, natively on this host or inside a container (compose)")
    add_config_args(r)
    r.add_argument("--sockets", type=int, default=2, help="sockets (workers) per host")
    r.add_argument("--emulate-sockets", choices=("no", "yes", "auto"), default="no",
                   help="split the usable cores into --sockets groups; auto: only when the host has too few sockets")
    r.add_argument("--hosts", default="", help="multi-node: HOST:SLOTS,... (slots = --sockets on every host)")
    r.add_argument("--controller", choices=("mpi", "gloo"), default="mpi")
    r.add_argument("--results-dir", type=Path, default=Path("results"))
    r.add_argument("--dry-run", action="store_true")

    pr = sub.add_parser("probe", help="print what this environment is (host, container, software, oneDNN ISA) as JSON")
    pr.add_argument("--precision", default="bf16", choices=("bf16", "fp32"))
    pr.add_argument("--amp", default="onednn", choices=("onednn", "keras"))

    c = sub.add_parser("config", help="print the resolved config of a profile as JSON")
    add_config_args(c)
    return p


def main(argv: list[str] | None = None) -> int:
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `... | head` ends us quietly, like any Unix tool
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "1")  # keep TF's warnings, drop its info banners
    args = _parser().parse_args(argv)
    try:
        if args.command == "probe":
            from xeontl import provenance

            print(json.dumps(provenance.probe(args.precision, args.amp), default=str))
            return 0
        if args.command == "reproduce":
            from xeontl import launch, topology

            emulate = args.emulate_sockets == "yes" or (
                args.emulate_sockets == "auto" and len(topology.live().sockets()) < args.sockets)
            return launch.reproduce(launch.Options(
                sockets=args.sockets, profile=args.profile, overrides=overrides_from(args), native=True,
                dry_run=args.dry_run, emulate_sockets=emulate, controller=args.controller, hosts=args.hosts,
                results_dir=args.results_dir))
        cfg = config.resolve(args.profile, overrides_from(args))
        if args.command == "config":
            print(json.dumps(cfg, indent=1))
            return 0
        from xeontl import train  # imports TensorFlow: only for the commands that need it

        metrics = train.train(cfg, args.output, {"auto": None, "on": True, "off": False}[args.horovod],
                              resume_from=args.resume_from)
        if metrics.get("final_val_accuracy") is not None:
            print(f"xeontl: done: val accuracy {metrics['final_val_accuracy']:.4f}, {metrics['epochs_run']} epochs, "
                  f"{metrics['train_seconds']:.1f} s" + "".join(f" [{n}]" for n in metrics["notices"]))
        return 0
    except UserError as e:
        print(f"xeontl: error: {e}", file=sys.stderr)
        return e.exit_code
    except KeyboardInterrupt:
        print("xeontl: interrupted", file=sys.stderr)
        return 130
