"""The software stacks the image can be built on, and what differs between them at run time, chosen here and nowhere
else: the default stack (Intel-TF 2.14, the newest with Keras 2, on Debian 12's Python 3.11) and the paper's own
(Intel-tensorflow-avx512 2.10.0, the release the paper names, on Debian 11's Python 3.9). `invoke build --stack
paper` builds the second, `invoke reproduce --stack paper` runs on it; provenance records which ran.

Light on purpose (no TensorFlow, no Docker): the launcher's options, the image build and the trainer all read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from xeontl.common.errors import UserError

ROOT = Path(__file__).resolve().parents[3]


@dataclass(frozen=True)
class Stack:
    """A software stack the image can be built on: its Debian release (the bases), that release's Python (what the
    wheelhouse is fetched for), its lock file, its wheelhouse and the release tag its app image gets."""
    name: str
    suite: str
    python: str                # pip download --python-version: Debian's python3 of that release
    lock: str                  # requirements/<lock>, sha256-pinned (`invoke lock [--stack NAME]`)
    tag: str
    versions: dict             # the deps image's io.xeontl.versions.* labels
    paper: bool                # the TensorFlow release the paper ran
    wheels: str = "docker/wheelhouse"
    cpu: tuple = ()            # CPU flags without which its TensorFlow cannot run, nor its image be built (below)

    @property
    def lock_path(self) -> Path:
        return ROOT / self.lock

    @property
    def wheelhouse(self) -> Path:
        return ROOT / self.wheels

    def base_tag(self, kind: str) -> str:
        return f"xeontl-base:{self.suite}-{kind}"


# The default stack is the newest Intel-TF with Keras 2 (Horovod's Keras callbacks break on Keras 3); the paper's is
# the release it names ("Intel-tensorflow-avx512 2.10.0" on Ubuntu 22.04.1), here on Debian 11's Python 3.9 (the
# newest Debian whose Python has that release's wheels: cp37-cp310).
STACKS = {
    "default": Stack("default", "bookworm", "3.11", "requirements/lock.txt", "xeontl:latest",
                     {"tensorflow": "intel-tensorflow 2.14.0", "horovod": "0.28.1",
                      "mpi": "OpenMPI 4.1 (Debian 12 bookworm)", "python": "3.11 (Debian 12 bookworm)"}, paper=False),
    "paper": Stack("paper", "bullseye", "3.9.2", "requirements/paper-lock.txt", "xeontl:paper",
                   {"tensorflow": "intel-tensorflow-avx512 2.10.0", "horovod": "0.28.1",
                    "mpi": "OpenMPI 4.1 (Debian 11 bullseye)", "python": "3.9 (Debian 11 bullseye)"}, paper=True,
                   wheels="docker/wheelhouse-paper", cpu=("avx512f",)),
}
DEFAULT = STACKS["default"]
STACK_IMAGES = {name: s.tag for name, s in STACKS.items()}

# ------------------------------------------------------------------------------------- the CPU a stack needs
# intel-tensorflow-avx512 is compiled for AVX-512: without AVX512F its import aborts ("The TensorFlow library was
# compiled to use AVX512F instructions, but these aren't available on your machine", TF's cpu_feature_guard), and
# so does its image's build, which imports it (Horovod's CMake asks TensorFlow for its flags: horovod/horovod
# cmake/Modules/FindTensorflow.cmake). The default stack ran on an AVX2-only AMD EPYC (Zen 1). So `--stack paper` on
# a CPU without it is refused before anything is built or run (docs/image.md, "CPUs without AVX-512").
CPU_NAMES = {"avx512f": "AVX-512 (avx512f)"}
# Tests only: a file in /proc/cpuinfo's format read instead of it, to play another CPU kind on this one (a Zen 1:
# avx2, no avx512*, no bf16, no amx; with ONEDNN_MAX_CPU_ISA=AVX2 oneDNN's kernels too). docs/image.md says how.
CPUINFO_ENV = "XEONTL_TEST_CPUINFO"
# The real CPU's, which a played one can only take features away from where something is built or run (run_cpu).
# Tests that play a CPU which has what a path needs, to reach it on any host, set this too (in their own process).
REAL_CPUINFO = "/proc/cpuinfo"


def cpu_fields(path: str | None = None) -> dict:
    """The first processor's model name, vendor, family, model, clock and flags, from PATH, else /proc/cpuinfo (or
    the file $XEONTL_TEST_CPUINFO names); flags empty and "error" saying why when none can be read."""
    where = path or os.environ.get(CPUINFO_ENV) or "/proc/cpuinfo"
    error = None
    try:
        text = Path(where).read_text()
    except (OSError, UnicodeDecodeError) as e:  # unreadable, or not text at all
        text, error = "", f"{where}: {getattr(e, 'strerror', None) or type(e).__name__}"
    kv = {k.strip(): v.strip() for k, _, v in (ln.partition(":") for ln in text.split("\n\n")[0].splitlines())}
    if not error and "flags" not in kv:
        error = f"{where}: no flags line"
    return {"model_name": kv.get("model name"), "vendor": kv.get("vendor_id"), "family": kv.get("cpu family"),
            "model": kv.get("model"), "mhz": kv.get("cpu MHz"), "flags": kv.get("flags", "").split(), "error": error}


def played() -> str | None:
    """Tests only: how this process plays another CPU kind (XEONTL_TEST_CPUINFO, ONEDNN_MAX_CPU_ISA), and the real
    CPU it runs on; None when it does not."""
    env = {k: os.environ[k] for k in (CPUINFO_ENV, "ONEDNN_MAX_CPU_ISA") if os.environ.get(k)}
    if not env:
        return None
    real = cpu_fields(path=REAL_CPUINFO)
    return (f"a CPU played for tests ({', '.join(f'{k}={v}' for k, v in env.items())}) on a "
            f"{real['model_name'] or 'CPU of unknown model'}: what follows is the played CPU's, not this one's")


def run_cpu() -> dict:
    """The CPU a decision that builds or runs something on this host is held to (the stack's check, an image's, the
    precision's): this one. A CPU played for tests (CPUINFO_ENV) only takes features away there: its flags are those
    it shares with the real CPU's, never more, and a played CPU that claims more is named as played on this one."""
    cpu = cpu_fields()
    if not os.environ.get(CPUINFO_ENV):
        return cpu
    real = cpu_fields(path=REAL_CPUINFO)
    have = set(real["flags"])
    kept = [f for f in cpu["flags"] if f in have]
    model = cpu["model_name"] or "model unknown"
    if len(kept) < len(cpu["flags"]):
        model = f"{model}, played on {real['model_name'] or 'a CPU of unknown model'}, which lacks some of its flags"
    return {**cpu, "flags": kept, "model_name": model, "error": cpu["error"] or real["error"]}


class CpuLacks(UserError):
    """This CPU cannot run the stack: said as it is, also where a record named the stack (`--resume`)."""


def cpu_lacks(stack: Stack, flags=None) -> list[str]:
    """The CPU flags the stack needs that this CPU (or FLAGS) lacks; all of them when its flags cannot be read."""
    have = set(cpu_fields()["flags"] if flags is None else flags)
    return [f for f in stack.cpu if f not in have]


def require_cpu(stack: Stack, then=None) -> None:
    """One line, before anything is built or run, when this CPU (run_cpu) cannot run the stack's TensorFlow. THEN:
    the line's last sentence, from the stacks that do run here (default: the --stack to give instead)."""
    cpu = run_cpu()
    missing = cpu_lacks(stack, cpu["flags"])
    if missing:
        if cpu["error"]:
            raise CpuLacks(f"--stack {stack.name}: could not read this CPU's flags ({cpu['error']}), so whether it "
                            f"has {', '.join(CPU_NAMES.get(f, f) for f in missing)}, without which "
                            f"{stack.versions['tensorflow']} aborts on import, is unknown; nothing was built or run")
        runs = [s.name for s in STACKS.values() if not cpu_lacks(s, cpu["flags"])]
        then = then or (lambda runs: f"The stack that runs on this CPU: "
                                     f"{' or '.join(f'--stack {n}' for n in runs) or 'none'}")
        raise CpuLacks(f"--stack {stack.name}: this CPU ({cpu['model_name'] or 'model unknown'}) lacks "
                        f"{', '.join(CPU_NAMES.get(f, f) for f in missing)}: {stack.versions['tensorflow']} aborts "
                        f"on import without it, and so does its image's build (Horovod's compile imports it); nothing "
                        f"was built or run. {then(runs)}")


def build_command(stack: Stack) -> str:
    """The command that builds the stack's image offline, as a missing or stale image's line names it."""
    return "invoke build --offline" + (f" --stack {stack.name}" if stack is not DEFAULT else "")


def tag_stack(ref: str) -> Stack | None:
    """The stack whose own tag REF is (xeontl:latest, xeontl:paper), in any spelling Docker reads as that tag
    (docker.io/library/xeontl:paper, a digest after it: xeontl.supply.imageref); None for any other reference."""
    from xeontl.supply import imageref

    return next((s for s in STACKS.values() if imageref.same_tag(ref, s.tag)), None)


def require_own_image(ref: str, stack: Stack, remedy: str | None = None) -> None:
    """One line when REF is another stack's own tag than STACK's: run on STACK, that image would be held to STACK's
    sources (and rebuilt from them under its tag when stale), not run as the image it names."""
    owner = tag_stack(ref)
    if owner and owner is not stack:
        raise UserError(f"--image {ref} is the {owner.name} stack's image (`{build_command(owner)}` builds it), and "
                        f"this run is on the {stack.name} stack (its image: {stack.tag}): "
                        f"{remedy or f'give --stack {owner.name} to run it, or drop --image'}; nothing was built or "
                        f"run")


# An image names its stack in its deps image's label (docker/deps.Dockerfile, inherited by the app image): an image
# of the paper stack under any tag (`--image xeontl:paper`, `--image mine:1`) is held to the same CPU check.
TF_LABEL = "io.xeontl.versions.tensorflow"


def image_stack(labels: dict | None) -> Stack | None:
    """The stack whose TensorFlow an image's labels name (None: no label, or neither stack's)."""
    tf = (labels or {}).get(TF_LABEL)
    return next((s for s in STACKS.values() if s.versions["tensorflow"] == tf), None)


def by_image(runs: list[str]) -> str:
    """require_cpu's last sentence for a command that takes --image, not --stack (smoke, compose-env)."""
    return f"The image that runs on this CPU: {' or '.join(f'--image {STACKS[n].tag}' for n in runs) or 'none'}"


def require_image_cpu(ref: str, then=None) -> None:
    """One line, before the image REF runs on this CPU, when it holds a stack this CPU cannot run (its TF label says
    which). An image not here, or no Docker daemon, is left to the run itself, which names it."""
    from xeontl.supply import dockerapi

    try:
        data = dockerapi.inspect(ref)
    except UserError:
        return
    labels = ((data or {}).get("Config") or {}).get("Labels") or {}
    stack = image_stack(labels)
    if stack:
        try:
            require_cpu(stack, then)
        except CpuLacks as e:
            raise CpuLacks(f"--image {ref} ({TF_LABEL}={labels[TF_LABEL]}): {e}") from None


# ------------------------------------------------------------------------------------- what differs at run time
# The paper's software of record (shared/paper.md, "Hardware of record"): "Ubuntu 22.04.1, kernel 5.15.0-48,
# Intel-tensorflow-avx512 2.10.0".
PAPER_TENSORFLOW = ("intel-tensorflow-avx512", "2.10.0")
PAPER_OS = "Ubuntu 22.04.1, kernel 5.15.0-48"
# The distributions TensorFlow comes as, Intel's first: the first one installed is the one that runs.
TF_DISTRIBUTIONS = ("intel-tensorflow", "intel-tensorflow-avx512", "tensorflow", "tensorflow-cpu")


def _release(version: str) -> tuple[int, ...]:
    return tuple(int(p) for p in version.split("+")[0].split(".")[:2] if p.isdigit())


def amp_option(tf_version: str) -> str:
    """The grappler option of TF's oneDNN BF16 auto mixed precision (the paper's AMP) under the name this release
    takes. One pass, two names: Intel's kit, written for TF 2.10, sets `auto_mixed_precision_mkl`; TF 2.14 knows it
    as `auto_mixed_precision_onednn_bfloat16` (grappler's meta optimizer maps both names to AutoMixedPrecision(BF16)
    in the releases that have both). The paper's release gets the kit's name, as the paper ran it; TF 2.10 runs it
    and says (measured in the paper stack's image) "auto_mixed_precision_mkl is deprecated. Please use
    auto_mixed_precision_onednn_bfloat16 instead", and dispatched brgconv:avx512_core_bf16 on a Zen 4 under it."""
    return "auto_mixed_precision_mkl" if _release(tf_version) < (2, 11) else "auto_mixed_precision_onednn_bfloat16"


def tensorflow_distribution() -> dict:
    """Which TensorFlow distribution is installed (name, version), from the packages' own metadata."""
    from importlib import metadata

    for name in TF_DISTRIBUTIONS:
        try:
            return {"name": name, "version": metadata.version(name)}
        except metadata.PackageNotFoundError:
            continue
    return {"name": None, "version": None}


def stack_of(distribution: dict) -> str | None:
    """The stack whose TensorFlow this is (None: neither of this bundle's)."""
    have = f"{distribution.get('name')} {distribution.get('version')}"
    return next((name for name, s in STACKS.items() if s.versions["tensorflow"] == have), None)


def difference(software: dict) -> str | None:
    """The report's line on the software, when it is not the paper's (None when it is, but for the OS it runs on,
    which is said too)."""
    dist = software.get("tensorflow_distribution") or {}
    python = software.get("python")
    if (dist.get("name"), dist.get("version")) != PAPER_TENSORFLOW:
        return (f"Software: {dist.get('name') or 'tensorflow'} {dist.get('version') or software.get('tensorflow')} on "
                f"Python {python} (this bundle's default stack), not the paper's {' '.join(PAPER_TENSORFLOW)}: "
                f"oneDNN, its graph rewrites and Keras differ between the releases (`--stack paper` runs the paper's "
                f"release).")
    return (f"Software: the paper's {' '.join(PAPER_TENSORFLOW)}, on Debian 11's Python {python} in the image "
            f"(the paper: {PAPER_OS}).")
