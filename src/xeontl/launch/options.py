"""The launch options, declared once (as config.FIELDS declares the config): invoke's `reproduce` and `paper`,
`python -m xeontl reproduce`, launch.json and what `--resume` keeps are all derived from these declarations, so a new
option cannot be forgotten by one of them."""

from __future__ import annotations

import argparse
import dataclasses
import inspect
from pathlib import Path

from xeontl.common import sanitize
from xeontl.common.errors import UserError
from xeontl.supply import imageref
from xeontl.supply.stacks import (
    STACK_IMAGES,
    STACKS,
    CpuLacks,  # noqa: F401 - launch's
    require_cpu,
    require_image_cpu,
    require_own_image,
)

DEFAULT_IMAGE = "xeontl:latest"
INVOKE, PYTHON = "invoke", "python"  # the two CLIs: `invoke reproduce` on the host, `python -m xeontl reproduce`
EMULATE = {"no": False, "yes": True, "auto": "auto"}  # --emulate-sockets [yes|no|auto]; the bare flag means yes


def _option(default=dataclasses.MISSING, *, resume: str, help: str | None = None, cli: tuple = (INVOKE, PYTHON),
            flag: str | None = None, choices: tuple | None = None, factory=dataclasses.MISSING):
    """A launch option: its default, its help, the CLIs that offer it (as --FLAG, default its name), and what
    `--resume` does with it: "keep" (recorded in launch.json, and the continuation keeps it: the same sockets,
    pinning, engine), "anew" (recorded, and may be given anew: the profile comes from config.json, --native or
    another image are allowed), "no" (not a property of the launch: the config's overrides live in config.json, the
    rest are per invocation)."""
    assert resume in ("keep", "anew", "no"), resume
    assert help or not cli, "an option a CLI offers needs its help"
    return dataclasses.field(default=default, default_factory=factory,
                             metadata={"resume": resume, "help": help, "cli": cli, "flag": flag, "choices": choices})


@dataclasses.dataclass
class Options:
    sockets: int = _option(2, resume="keep", help="sockets (= Horovod workers) per node: 1 = the paper's "
                           "single-socket run, 2 = its Horovod run")
    profile: str = _option("demo", resume="anew", cli=(INVOKE,),  # python: config's own --profile
                           help="paper | demo | smoke (default demo: synthetic data + random weights, runs offline)")
    overrides: dict = _option(resume="no", factory=dict, cli=())  # the config's: --set/--dataset/--weights/...
    native: bool = _option(False, resume="anew", cli=(INVOKE,),  # python: the launcher in a container is native
                           help="run on this host without Docker (needs `invoke setup --native`)")
    dry_run: bool = _option(False, resume="no", help="print the plan, env and exact command lines; run nothing")
    topology_file: str | None = _option(None, resume="no", flag="topology",
                                        help="plan for a recorded `lscpu --parse=CPU,CORE,SOCKET,NODE` file instead "
                                             "of this machine")
    emulate_sockets: bool | str = _option(False, resume="keep", choices=tuple(EMULATE),
                                          help="split the usable cores into --sockets equal groups: the bare flag "
                                               "always, auto only when the host has too few sockets (every output "
                                               "says so)")
    cores_per_socket: int = _option(0, resume="keep", help="use at most K physical cores per socket (benchmarking)")
    controller: str = _option("mpi", resume="keep", choices=("mpi", "gloo"),
                              help="Horovod controller: mpi (the paper's OpenMPI) | gloo")
    hosts: str = _option("", resume="keep", help="multi-node: HOST:SLOTS,... with SLOTS = --sockets (every host "
                                                 "pinned like this one)")
    image: str = _option(DEFAULT_IMAGE, resume="anew", cli=(INVOKE,),
                         help=f"image to run (default {DEFAULT_IMAGE}, built by `invoke build`)")
    build: bool = _option(True, resume="no", cli=(INVOKE,),
                          help="build the image first (invoke build --offline) when it is missing or was built from "
                               "other sources than this checkout; --no-build refuses instead")
    results_dir: Path = _option(Path("results"), resume="no", help="where run dirs are created (default results/)")
    report: bool = _option(True, resume="no", cli=())
    resume: Path | None = _option(None, resume="no",
                                  help="continue RUN (a results/<run-id> dir) from its last completed epoch, with its "
                                       "own config and launch; the continuation gets a new run id that records what "
                                       "it resumed from")
    repeats: int = _option(1, resume="no", cli=(INVOKE,),
                           help="N runs (per configuration), seeds recorded (the config's seed, +1, ...): each figure "
                                "and claim reported as mean ± sd and range, with how many runs met it on their own")
    wait: bool = _option(False, resume="no", help="if another run holds the CPUs this plan pins, queue behind it "
                                                  "instead of refusing")
    extra_env: dict = _option(resume="keep", factory=dict, cli=())  # added to every worker's env (bench variants)
    fault_after_epoch: int = _option(0, resume="no",
                                     help="tests: rank 1 (or the only rank) SIGKILLs itself after epoch N, a stand-in "
                                          "for a crashed worker (not carried over by --resume)")
    engine: str = _option("local", resume="keep", cli=(INVOKE,),  # engines.choose knows the engines
                          help="local (this host: the image, or --native) | slurm (an sbatch job: submitted, followed, "
                               "collected into the same run dir; --dry-run prints the script) | k8s (the MPIJob "
                               "`invoke render --engine k8s` writes, applied with kubectl and watched)")
    nodes: int = _option(1, resume="keep", cli=(INVOKE,),
                         help="slurm: nodes, each running one rank per socket (plan them with --topology of a compute "
                              "node)")
    partition: str | None = _option(None, resume="keep", cli=(INVOKE,),
                                    help="slurm: the partition (default: the cluster's default)")
    container: str | None = _option(None, resume="keep", cli=(INVOKE,), choices=("charliecloud", "none"),
                                    help="slurm: charliecloud (default: the image, unprivileged, unpacked once per "
                                         "build; or --image DIR) | none (the nodes' own Python stack)")
    time_limit: str | None = _option(None, resume="keep", cli=(INVOKE,),
                                     help="slurm: the job's --time, e.g. 00:30:00")

    stack: str = _option("default", resume="keep", cli=(INVOKE,), choices=tuple(STACK_IMAGES),
                         help="software stack: default (intel-tensorflow 2.14, Python 3.11) | paper (the paper's "
                              "intel-tensorflow-avx512 2.10.0, Python 3.9: runs the image `invoke build --stack paper` "
                              f"builds, {STACK_IMAGES['paper']}, unless --image names another)")

    # --engine k8s: what `invoke render --engine k8s` takes too (kubernetes.render), per invocation
    results_claim: str = _option("xeontl-results", resume="no", cli=(INVOKE,),
                                 help="k8s: the ReadWriteMany PersistentVolumeClaim mounted at /results on every pod")
    assets_claim: str | None = _option(None, resume="no", cli=(INVOKE,),
                                       help="k8s: the claim holding the weights and data (weights/, "
                                            "tensorflow_datasets/, manual/), read-only at /assets (ReadOnlyMany, or "
                                            "ReadWriteMany, on 2+ nodes); needed by a profile that reads files")
    node_selector: str | None = _option(None, resume="no", cli=(INVOKE,),
                                        help="k8s: KEY=VALUE[,KEY=VALUE], the labels of the nodes the pods may run on "
                                             "(with --nodes N and several sockets: exactly N nodes)")
    reserved_cpus: str | None = _option(None, resume="no", cli=(INVOKE,),
                                        help="k8s: the nodes' kubelet --reserved-cpus (default: the first core of "
                                             "socket 0 and its siblings)")
    claim_mode: str = _option("ReadWriteMany", resume="no", cli=(INVOKE,),
                              choices=("ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod"),
                              help="k8s: the results claim's access mode (ReadWriteOnce: one node only)")
    memory_per_rank: int = _option(8, resume="no", cli=(INVOKE,), help="k8s: GiB of memory per rank")
    kube_version: str | None = _option(None, resume="no", cli=(INVOKE,),
                                       help="k8s: the Kubernetes version whose schemas check the pod templates")
    daemonset_cpus: str = _option("500m", resume="no", cli=(INVOKE,),
                                  help="k8s: CPUs each node keeps free of the workers for its DaemonSets' requests "
                                       "(kube-proxy, CNI, ...), e.g. 500m or 1 (default 500m)")

    def record(self) -> dict:
        """What launch.json keeps, so `--resume` can rebuild the same launch."""
        return {**{k: getattr(self, k) for k in LAUNCH_KEYS}, "resume": str(self.resume) if self.resume else None}


FIELDS = {f.name: f for f in dataclasses.fields(Options)}
# What launch.json records of a launch, so `--resume` rebuilds the same one (its config comes from config.json), and
# of those what a resumed run keeps from the interrupted one: both from the options' own declarations.
LAUNCH_KEYS = tuple(name for name, f in FIELDS.items() if f.metadata["resume"] != "no")
RESUME_KEYS = tuple(name for name, f in FIELDS.items() if f.metadata["resume"] == "keep")


def offered(cli: str, names: tuple[str, ...] | None = None) -> list[dataclasses.Field]:
    """The options CLI offers (all of them, or those named, in this order)."""
    return [FIELDS[n] for n in names or FIELDS if cli in FIELDS[n].metadata["cli"]]


def flag(f: dataclasses.Field) -> str:
    return f.metadata["flag"] or f.name


def _default(f: dataclasses.Field):
    value = f.default if f.default is not dataclasses.MISSING else f.default_factory()
    return str(value) if isinstance(value, Path) else value


def parse(name: str, value) -> object:
    """A CLI's value for option NAME as Options holds it (invoke passes strings, or True for a bare flag)."""
    f = FIELDS[name]
    if name == "emulate_sockets":
        key = {True: "yes", False: "no"}.get(value, value)
        if key not in EMULATE:
            raise UserError(f"--emulate-sockets {value!r}: must be yes, no or auto (the bare flag means yes)")
        return EMULATE[key]
    if value is None:
        return None
    if f.metadata["choices"] and value not in f.metadata["choices"]:
        raise UserError(f"--{flag(f).replace('_', '-')} {value!r}: must be one of "
                        f"{', '.join(f.metadata['choices'])}")
    kind = type(_default(f)) if _default(f) is not None else str
    if f.type in ("Path", "Path | None"):
        return Path(value)
    if kind is int:
        try:
            return int(value)
        except ValueError:
            raise UserError(f"--{flag(f).replace('_', '-')} {value!r}: must be a whole number") from None
    return value


# What a value that reaches a script, a shell line or a scheduler may look like (each is also quoted where it lands):
# Slurm's partition names, its --time formats, host names, image references, env names.
SAFE = {
    "partition": (r"[A-Za-z0-9_.-]+(,[A-Za-z0-9_.-]+)*", "a Slurm partition name (letters, digits, _ . -)"),
    "time_limit": (r"(\d+|\d+:\d{1,2}|\d+:\d{1,2}:\d{1,2}|\d+-\d+|\d+-\d+:\d{1,2}|\d+-\d+:\d{1,2}:\d{1,2}|"
                   r"UNLIMITED|INFINITE)", "a Slurm time: MM, MM:SS, HH:MM:SS, D-HH, D-HH:MM or D-HH:MM:SS"),
    "image": (r"[A-Za-z0-9][A-Za-z0-9._/:@+-]*", "an image reference (REPO[:TAG]) or, for Slurm, a directory"),
}
HOST = r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?"
ENV_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
LIMITS = {"sockets": (1, 64), "nodes": (1, 4096), "cores_per_socket": (0, 4096), "repeats": (1, 1000),
          "fault_after_epoch": (0, 100_000), "memory_per_rank": (1, 4096)}


def whole(flag_: str, value, low: int, high: int) -> int:
    """A whole number option's value, or one line."""
    try:
        n = int(str(value).strip())
    except ValueError:
        raise UserError(f"{flag_} {value!r}: must be a whole number from {low} to {high}") from None
    if not low <= n <= high:
        raise UserError(f"{flag_} {value!r}: must be a whole number from {low} to {high}")
    return n


def one_line_path(flag_: str, value) -> None:
    """A path that reaches a script, an env file or a record: no control character (a newline would start a line)."""
    if value is not None and sanitize.has_unsafe(str(value)):  # C0, DEL, C1, bidi, U+2028/9, ...
        raise UserError(f"{flag_} {str(value)!r}: must be a path without control characters (a newline?)")


# Kubernetes object names (a PersistentVolumeClaim's): a DNS-1123 subdomain, as apimachinery's IsDNS1123Subdomain
DNS1123_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
DNS1123_SUBDOMAIN = rf"{DNS1123_LABEL}(\.{DNS1123_LABEL})*"


def kube_name(flag_: str, value: str) -> str:
    """VALUE as a Kubernetes object name (lowercase letters, digits, - and ., at most 253), or one line."""
    import re

    if not isinstance(value, str) or len(value) > 253 or not re.fullmatch(DNS1123_SUBDOMAIN, value):
        raise UserError(f"{flag_} {value!r}: must be a Kubernetes name (a DNS-1123 subdomain: lowercase letters, "
                        f"digits, - and ., starting and ending with a letter or digit, at most 253)")
    return value


def check(opts: Options, then=None, remedy: str | None = None) -> Options:
    """Every launch value typed and in range before anything runs or is written: one line naming the option. THEN,
    REMEDY: a CPU refusal's and another stack's image's advice, for a command without --stack (stacks.require_cpu's,
    require_own_image's)."""
    import re

    def bad(name, value, what):
        raise UserError(f"--{flag(FIELDS[name]).replace('_', '-')} {value!r}: must be {what}")

    for name, f in FIELDS.items():  # a value of the wrong type (a hand-edited launch.json) is one line too
        raw = f.default if f.default is not dataclasses.MISSING else f.default_factory()
        want, value = type(raw), getattr(opts, name)
        if value is None and raw is not None:
            bad(name, value, f"given (it has no default of None: {raw!r})")
        if name == "emulate_sockets":
            if value not in EMULATE.values():
                bad(name, value, "yes, no or auto")
        elif f.metadata["choices"] and value is not None and value not in f.metadata["choices"]:
            bad(name, value, f"one of {', '.join(f.metadata['choices'])}")
        elif want in (str, bool, dict) and value is not None and not isinstance(value, want):
            bad(name, value, f"a {want.__name__}")
    for name, (low, high) in LIMITS.items():
        value = getattr(opts, name)
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            bad(name, value, f"a whole number from {low} to {high}")
    image_dir = opts.engine == "slurm" and opts.image is not None and Path(opts.image).is_dir()
    if image_dir:  # Slurm's --image DIR (an unpacked image, /abs/path or ./rel): a path on one line, not a reference
        one_line_path("--image", opts.image)
    for name, (pattern, what) in SAFE.items():
        value = getattr(opts, name)
        if value is not None and not (name == "image" and image_dir) and not re.fullmatch(pattern, str(value)):
            bad(name, value, what)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", str(opts.profile)):
        bad("profile", opts.profile, "a profile name (letters, digits, _ . -)")
    for name in ("results_dir", "resume", "topology_file"):
        one_line_path(f"--{flag(FIELDS[name]).replace('_', '-')}", getattr(opts, name))
    if opts.hosts:
        for h in opts.hosts.split(","):
            if h and not re.fullmatch(HOST + r":\d+", h):
                bad("hosts", opts.hosts, f"HOST:SLOTS,... with host names of letters, digits, . and - ({h!r} is not)")
    from xeontl.placement.plan import ENV_NAMES

    for k, v in opts.extra_env.items():  # deny by default: only what the plan itself sets, as text on one line
        if not isinstance(k, str) or not re.fullmatch(ENV_NAME, k):
            raise UserError(f"environment name {k!r}: must be letters, digits and _")
        if k not in ENV_NAMES:
            raise UserError(f"environment name {k!r}: not one the plan sets ({', '.join(sorted(ENV_NAMES))})")
        if not isinstance(v, str) or sanitize.has_unsafe(v):  # C0, DEL, C1, bidi, U+2028/9, ...
            raise UserError(f"environment {k}={v!r}: must be text without control characters")
    if opts.stack != "default" and (opts.native or opts.container == "none"):  # no image: the host's own Python
        raise UserError(f"--stack {opts.stack} runs in its image ({STACK_IMAGES[opts.stack]}); "
                        f"{'--native' if opts.native else '--container none'} runs the Python stack of "
                        f"{'this host' if opts.native else 'the nodes'} (`invoke setup --native` installs the default "
                        f"stack's), which would be recorded as the {opts.stack} stack's: drop one of them")
    if opts.image == DEFAULT_IMAGE:  # the stack's own image, unless another is named
        opts.image = STACK_IMAGES[opts.stack]
    if opts.engine != "slurm" or not Path(opts.image).is_dir():  # Slurm's --image may be an unpacked directory
        imageref.require(opts.image)  # as Docker reads it, or one line (before a build that ends in its refusal)
    require_own_image(opts.image, STACKS[opts.stack], remedy)  # another stack's tag: rebuilt as this stack's image
    if runs_here(opts):  # it runs on this CPU: one it can run on (Slurm's are the nodes')
        require_cpu(STACKS[opts.stack], then)
        if not opts.native:  # the image, whatever its tag, by its TF label (docs/image.md); with --hosts this host
            require_image_cpu(opts.image, then)  # runs the first host's container, on this CPU
    return opts


def runs_here(opts: Options) -> bool:
    """Whether the ranks (of this host, with --hosts) run on this CPU: the local engines', not a --dry-run (which
    runs nothing) nor Slurm's or Kubernetes' (their nodes' CPUs are not this one). What the CPU checks apply to."""
    return opts.engine == "local" and not opts.dry_run


def from_cli(values: dict, **fixed) -> Options:
    """Options from a CLI's values (keyed by flag name), and the values the caller fixes."""
    by_flag = {flag(f): f.name for f in FIELDS.values()}
    given = {by_flag[k]: parse(by_flag[k], v) for k, v in values.items() if k in by_flag}
    return check(Options(**{**given, **fixed}))


# ------------------------------------------------------------------------------------------------ the two CLIs
def invoke_parameters(names: tuple[str, ...] | None = None) -> tuple[list[inspect.Parameter], dict[str, str]]:
    """invoke's parameters and help for the options it offers: a task body gets them as its signature (invoke reads
    the signature for its flags and their kinds)."""
    # Whole numbers reach us as text: invoke's own int cast would answer "--sockets two" with a traceback; parse()
    # answers it in one line.
    params = [inspect.Parameter(flag(f), inspect.Parameter.KEYWORD_ONLY,
                                default=str(_default(f)) if type(_default(f)) is int else _default(f))
              for f in offered(INVOKE, names)]
    return params, {flag(f): f.metadata["help"] for f in offered(INVOKE, names)}


def invoke_task_body(body, names: tuple[str, ...] | None = None, extra: dict | None = None,
                     after: dict | None = None):
    """BODY(c, **values) with the signature invoke reads: the offered options, and EXTRA (name -> default) of the
    task's own (e.g. --set, --fp32), each placed after the option AFTER names for it (None: first; unnamed: last).
    The order is what invoke's short flags are picked by: kept, they stay the letters users know."""
    params, _ = invoke_parameters(names)
    for name, default in reversed(list((extra or {}).items())):
        anchor = (after or {}).get(name)
        at = 0 if anchor is None and name in (after or {}) else next(
            (i + 1 for i, p in enumerate(params) if p.name == anchor), len(params))
        params.insert(at, inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default))
    body.__signature__ = inspect.Signature([inspect.Parameter("c", inspect.Parameter.POSITIONAL_OR_KEYWORD), *params])
    return body


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`python -m xeontl reproduce`'s flags for the options it offers."""
    for f in offered(PYTHON):
        default, name = _default(f), "--" + flag(f).replace("_", "-")
        if f.name == "emulate_sockets":
            parser.add_argument(name, dest=flag(f), nargs="?", const="yes", default="no", choices=tuple(EMULATE),
                                help=f.metadata["help"])
        elif isinstance(default, bool):
            parser.add_argument(name if not default else "--no-" + name[2:], dest=flag(f),
                                action="store_false" if default else "store_true", help=f.metadata["help"])
        else:
            parser.add_argument(name, dest=flag(f), default=default, choices=f.metadata["choices"],
                                help=f.metadata["help"])


def from_argparse(args: argparse.Namespace, **fixed) -> Options:
    return from_cli({flag(f): getattr(args, flag(f)) for f in offered(PYTHON)}, **fixed)
