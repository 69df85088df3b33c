"""`invoke build [--offline]`: the image, from nothing, with or without a container registry.

Two images, so that a change to the package's sources does not rebuild its dependencies:
  xeontl-deps:<deps hash>  docker/deps.Dockerfile: Python venv with Intel-TF + the Horovod wheel (compiled here,
                           once per lock: the host's `invoke setup --native` installs that same wheel), OpenMPI,
                           numactl, sshd.
                           Its hash covers only deps.Dockerfile and requirements/; built only when no image has it.
  xeontl:latest            docker/Dockerfile: the package on top, from a context of the few files it copies (a tar
                           on stdin: the legacy builder would otherwise send the 358 MB wheelhouse on every build).
Offline (this bundle's CI; hosts with Docker but no registry and no internet), for the deps image:
  1. bases: debootstrap bookworm (minbase) twice, a runtime base and a builder base (compilers), `docker import`ed
     under the tags deps.Dockerfile's BASE_IMAGE / BUILDER_IMAGE args name; the two debootstraps run in parallel;
  2. wheelhouse: `pip download` of requirements/lock.txt (sha256-pinned) + the Horovod sdist into docker/wheelhouse;
  3. docker build with PIP_OFFLINE=1: pip installs --no-index from the wheelhouse, hashes required.
Online: deps.Dockerfile's defaults (debian:bookworm-slim + apt + PyPI), the same lock file and hashes.

The image is tagged by content (inputs hash) first and moved to the release tag only after its build-time checks
passed, so a failed build never leaves a half-built image under the release tag.
"""

from __future__ import annotations

import hashlib
import io
import json
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import IO

from xeontl.common.errors import UserError
from xeontl.supply import dockerapi, imageref
from xeontl.supply.stacks import DEFAULT, TF_LABEL, Stack, tag_stack

ROOT = Path(__file__).resolve().parents[3]
HOROVOD_LOCK = ROOT / "requirements" / "horovod.txt"
MLLOG_LOCK = ROOT / "requirements" / "mllog.txt"  # MLPerf's log writer, without its checkers' dependencies
RUNTIME_PACKAGES = ["python3", "python3-venv", "openmpi-bin", "libopenmpi3", "numactl", "procps", "openssh-client",
                    "openssh-server", "ca-certificates"]
# automake: libltdl-dev (via libopenmpi-dev) needs the virtual automake-1.16, which debootstrap cannot resolve itself.
BUILDER_PACKAGES = RUNTIME_PACKAGES + ["python3-dev", "g++", "make", "cmake", "libopenmpi-dev", "automake"]
KINDS = {"runtime": RUNTIME_PACKAGES, "builder": BUILDER_PACKAGES}
DEPS_REPO = "xeontl-deps"


# Files whose content defines each image: a change to any of them means a rebuild of that image (and of the app image
# on top of a rebuilt deps image). README.md is not one: the package takes no long description.
APP_INPUTS = ["docker/Dockerfile", "docker/entrypoint.sh", "docker/ssh_config", "src/xeontl"]


def deps_inputs(stack: Stack = DEFAULT) -> list[str]:
    return ["docker/deps.Dockerfile", stack.lock, "requirements/horovod.txt", "requirements/mllog.txt"]


DEPS_INPUTS = deps_inputs()
INPUTS = DEPS_INPUTS + APP_INPUTS


def _run(cmd: list[str], step: str, fix: str, **kw) -> subprocess.CompletedProcess:
    r = subprocess.run(cmd, **kw)
    if r.returncode != 0:
        out = (r.stderr or "") + (r.stdout or "") if isinstance(r.stderr, str) else ""
        tail = "\n".join(ln for ln in out.splitlines() if ln.strip())[-400:]
        raise UserError(f"{step} failed (exit {r.returncode}){': ' + tail.splitlines()[-1] if tail else ''}: {fix}")
    return r


def debian_mirror() -> str | None:
    """The Debian mirror the host's apt uses (the only one reachable here); None when its sources name none, and
    debootstrap then uses its own default (no registry host is named in this code)."""
    for f in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        text = f.read_text() if f.is_file() else ""
        m = re.search(r"^URIs:\s*(\S*debian)\s*$", text, re.M) or re.search(r"^deb\s+(?:\[[^]]*\]\s+)?(\S+debian)\s+",
                                                                              text, re.M)
        if m:
            return m[1]
    return None


def build_base(kind: str, force: bool = False, stack: Stack = DEFAULT) -> str:
    """debootstrap + docker import; labelled with its package list so a changed list is rebuilt."""
    tag, packages = stack.base_tag(kind), KINDS[kind]
    want = hashlib.sha256(" ".join(packages).encode()).hexdigest()[:16]
    info = None if force else dockerapi.inspect(tag)
    if info is not None:
        if dockerapi.label(info, "xeontl.packages") == want:
            print(f"[base] {tag} up to date")
            return tag
    if shutil.which("debootstrap") is None:
        raise UserError("debootstrap is not installed: apt-get install debootstrap (needed by --offline)")
    mirror = debian_mirror()
    where = mirror or "debootstrap's default mirror (the host's apt sources name none)"
    print(f"[base] debootstrap {stack.suite} ({kind}: {len(packages)} packages) from {where} ...", flush=True)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix=f"xeontl-{kind}-") as d:
        root = Path(d) / "root"
        _run(["debootstrap", "--variant=minbase", f"--include={','.join(packages)}", stack.suite, str(root),
              *([mirror] if mirror else [])], f"debootstrap of the {kind} base",
             "check the Debian mirror in /etc/apt/sources.list",
             capture_output=True, text=True)
        for junk in ("var/cache/apt/archives", "var/lib/apt/lists"):
            for p in (root / junk).glob("*"):
                if p.is_file():
                    p.unlink()
        # tar keeps debootstrap's owners, modes and device nodes as they are; the daemon imports its stream
        tar = subprocess.Popen(["tar", "-C", str(root), "-c", "."], stdout=subprocess.PIPE)
        try:
            dockerapi.import_rootfs(dockerapi.chunks_of(tar.stdout), tag,
                                    changes=[f"LABEL xeontl.packages={want}", 'CMD ["bash"]'])
        finally:
            tar.stdout.close()
            tar.wait()
    print(f"[base] {tag} imported in {time.time() - t0:.0f} s")
    return tag


# The wheels Debian 11's Python takes (glibc 2.31): pip download for another Python than the host's needs them named.
PLATFORMS = ["manylinux_2_31_x86_64", "manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux2010_x86_64", "manylinux1_x86_64", "linux_x86_64"]


def wheelhouse(stack: Stack = DEFAULT) -> None:
    """Every locked wheel/sdist into the stack's wheelhouse, for the stack's Python (the host's may be another),
    hashes checked by pip against the lock file."""
    where = stack.wheelhouse
    where.mkdir(exist_ok=True)
    print(f"[wheelhouse] pip download -r {stack.lock_path.name} for Python {stack.python} (hashes required) ...",
          flush=True)
    release = "".join(stack.python.split(".")[:2])
    abi = "cp" + release
    # the host's own Python takes the wheels pip picks for it; another Python's (the paper stack's 3.9) are named
    target = [] if release == f"{sys.version_info[0]}{sys.version_info[1]}" else [
        "--python-version", stack.python, "--implementation", "cp", "--abi", abi, "--abi", "abi3", "--abi", "none",
        *[a for p in PLATFORMS for a in ("--platform", p)]]
    for lock in (stack.lock_path, HOROVOD_LOCK, MLLOG_LOCK):
        extra = ["--no-deps", "--no-binary", ":all:"] if lock == HOROVOD_LOCK else ["--no-deps", *target]
        r = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--require-hashes", "-r", str(lock),
                            *extra, "-d", str(where)], capture_output=True, text=True)
        if r.returncode != 0:
            # pip names the mismatching file on the line before its "Expected sha256 ..." line
            lines = [ln.strip() for ln in (r.stderr + r.stdout).splitlines() if ln.strip()]
            bad = [lines[i - 1] for i, ln in enumerate(lines) if ln.startswith("Expected sha256") and i]
            what = f"hash mismatch for {bad[0]}" if bad else (lines[-1] if lines else "no output")
            raise UserError(f"pip download into the wheelhouse failed ({what}): check PyPI access; a hash mismatch "
                            f"means the lock file or the index changed (re-run `invoke lock`)")
    print(f"[wheelhouse] {len(list(where.glob('*.whl')))} wheels, "
          f"{sum(p.stat().st_size for p in where.iterdir()) >> 20} MiB")


def _files(inputs: list[str]) -> list[Path]:
    out = []
    for rel in inputs:
        p = ROOT / rel
        out += sorted(f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts
                      and not any(part.endswith(".egg-info") for part in f.parts)) if p.is_dir() else [p]
    return out


def inputs_hash(inputs: list[str] | None = None) -> str:
    h = hashlib.sha256()
    for f in _files(INPUTS if inputs is None else inputs):
        h.update(str(f.relative_to(ROOT)).encode() + b"\0" + f.read_bytes())
    return h.hexdigest()[:12]


def deps_tag(stack: Stack = DEFAULT) -> str:
    return f"{DEPS_REPO}:{inputs_hash(deps_inputs(stack))}"


def stack_inputs(stack: Stack = DEFAULT) -> list[str]:
    """What the stack's app image is built from: its deps image's inputs and the package's."""
    return deps_inputs(stack) + APP_INPUTS


def _context(inputs: list[str], extra_dirs: dict[str, str] | None = None,
             extra_files: dict[str, bytes] | None = None) -> IO[bytes]:
    """A build context of exactly these files (and dirs, and in-memory files), as the tar the daemon's builder reads
    (nothing else of the checkout is sent)."""
    f = tempfile.TemporaryFile()
    # GNU format, as when the context went through `docker build -` (whose stdin sniffing took a PAX header for a
    # Dockerfile): the same context bytes as images built before the SDK, so their layer cache still applies.
    with tarfile.open(fileobj=f, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for path in _files(inputs):
            tar.add(path, arcname=str(path.relative_to(ROOT)), recursive=False)
        for d, arcname in (extra_dirs or {}).items():  # a dir under the name the Dockerfile copies it from
            (ROOT / d).mkdir(parents=True, exist_ok=True)
            tar.add(ROOT / d, arcname=arcname)
        for name, content in (extra_files or {}).items():
            info = tarfile.TarInfo(name)
            info.size, info.mtime, info.mode = len(content), int(time.time()), 0o644
            tar.addfile(info, io.BytesIO(content))
    f.seek(0)
    return f


def _docker_build(dockerfile: str, tag: str, args: dict, context, label: str, labels: dict | None = None) -> None:
    print(f"[build] {label}: docker build -f {dockerfile} -t {tag} "
          + " ".join(f"--build-arg {k}={v}" for k, v in args.items())
          + "".join(f" --label {k}={v}" for k, v in (labels or {}).items()) + " -", flush=True)

    def show(line: str) -> None:  # the legacy builder's "Step N/M" lines are the progress display
        if line.startswith(("Step ", "Successfully", " ---> Running")) or "xeontl-check" in line:
            print(f"[build] {label}: " + line.rstrip(), flush=True)

    dockerapi.build(context, dockerfile, tag, args, labels, show)


def build_deps(offline: bool, force: bool = False, stack: Stack = DEFAULT) -> tuple[str, dict]:
    """The stack's dependency image for its lock, reused when an image has its hash; returns its tag and timings."""
    tag, timings = deps_tag(stack), {}
    if not force and dockerapi.exists(tag):
        print(f"[build] dependencies unchanged: reusing {tag}")
        return tag, timings
    args: dict = {}
    if offline:
        t0 = time.time()
        # The two debootstraps and the wheelhouse are independent downloads + unpacks: run side by side, they take
        # about the longest one's time (121 s for the builder base here) instead of the sum (87 + 121 + 16 s).
        with ThreadPoolExecutor(3) as pool:
            timed = lambda f, *a: (f(*a), round(time.time() - t0))  # noqa: E731
            jobs = [pool.submit(timed, build_base, k, force, stack) for k in ("runtime", "builder")]
            wheels = pool.submit(timed, wheelhouse, stack)
            (args["BASE_IMAGE"], timings["runtime_base_s"]), (args["BUILDER_IMAGE"], timings["builder_base_s"]) = \
                [j.result() for j in jobs]
            timings["wheelhouse_s"] = wheels.result()[1]
        timings["bases_and_wheelhouse_s"] = round(time.time() - t0)
        args["PIP_OFFLINE"] = "1"
    else:  # a registry's slim image of the stack's Debian release, apt and PyPI
        args["BASE_IMAGE"] = args["BUILDER_IMAGE"] = f"debian:{stack.suite}-slim"
    t0 = time.time()
    # the stack's lock and versions as build args (one ARG step each in the builder and the runtime stage)
    args.update(LOCK=stack.lock_path.name, **{f"V_{k.upper()}": v for k, v in stack.versions.items()})
    with _context(deps_inputs(stack), {stack.wheels: "docker/wheelhouse"}) as ctx:
        _docker_build("docker/deps.Dockerfile", tag, args, ctx, "deps", {"io.xeontl.deps": tag.split(":")[1]})
    timings["deps_build_s"] = round(time.time() - t0)
    return tag, timings


def time_source_rebuild() -> dict:
    """The bench's source-only rebuild: the app image built on this lock's deps image from the checkout's sources
    plus one changed file (as an edit would), under a scratch tag removed afterwards. Returns seconds, context size."""
    tag, deps = "xeontl:bench-rebuild", deps_tag()
    if not dockerapi.exists(deps):
        raise UserError(f"no {deps} image: run `invoke build --offline` first")
    stamp = datetime.now(timezone.utc).isoformat().encode()
    t0 = time.time()
    with _context(APP_INPUTS, extra_files={"src/xeontl/_rebuild_probe.txt": stamp}) as ctx:
        ctx.seek(0, 2)
        size = ctx.tell()
        ctx.seek(0)
        _docker_build("docker/Dockerfile", tag, {"DEPS_IMAGE": deps, **label_args(inputs_hash())}, ctx,
                      "rebuild probe")
    seconds = time.time() - t0
    info = dockerapi.inspect(tag) or {}
    dockerapi.remove_image(tag)
    return {"seconds": seconds, "context_bytes": size, "layers": info.get("RootFS", {}).get("Layers", [])}


def horovod_wheel(dest: Path) -> Path:
    """The deps image's Horovod wheel (its one compiled build), copied to dest for the host's --native stack."""
    tag = deps_tag()
    if not dockerapi.exists(tag):
        raise UserError(f"no {tag} image to take the Horovod wheel from: run `invoke build --offline` first")
    dest.mkdir(parents=True, exist_ok=True)
    wheels = {n: b for n, b in dockerapi.read_files(tag, "/opt/xeontl/wheels").items() if n.endswith(".whl")}
    if not wheels:
        raise UserError(f"{tag} has no wheel in /opt/xeontl/wheels: rebuild it (invoke build --offline --force)")
    name, body = sorted(wheels.items())[0]
    (dest / name).write_bytes(body)
    return dest / name


def label_args(inputs: str, stack: Stack = DEFAULT) -> dict[str, str]:
    """The app image's labels, as the build args docker/Dockerfile's one LABEL step reads: the inputs hash (what the
    stale check compares), and OCI's revision (the checkout's commit, "-dirty" when an image input differs from it),
    created, version and source (the checkout's remote when it is a URL; left out, never a placeholder)."""
    def git(*args: str) -> str:
        r = subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True)
        return r.stdout.strip() if r.returncode == 0 else ""

    revision = git("rev-parse", "HEAD")
    if revision and git("status", "--porcelain", "--", *stack_inputs(stack)):
        revision += "-dirty"
    remote = git("remote", "get-url", "origin")
    version = re.search(r'^version = "([^"]+)"', (ROOT / "pyproject.toml").read_text(), re.M)
    return {"XEONTL_INPUTS": inputs, "OCI_REVISION": revision,
            "OCI_CREATED": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            "OCI_VERSION": version[1] if version else "",
            "OCI_SOURCE": remote if re.match(r"^(https?|ssh|git)://|^git@", remote) else ""}


def checkout_inputs_hash(stack: Stack = DEFAULT) -> str | None:
    """The inputs hash of the checkout this package runs from, for the stack's image; None for an installed copy
    (e.g. inside the image)."""
    checkout = (ROOT / "docker" / "Dockerfile").is_file() and (ROOT / "src" / "xeontl").is_dir()
    return inputs_hash(stack_inputs(stack)) if checkout else None


def check_tag(tag: str, stack: Stack, what: str = "nothing was built or tagged") -> None:
    """One line when TAG is another stack's own tag (xeontl:paper, xeontl:latest): an image of STACK under it would
    be run, and recorded, as that stack's TensorFlow (`--stack paper` runs xeontl:paper as the paper's release).
    A TAG Docker would refuse is refused first (imageref), before a build that would end in its refusal."""
    ref = imageref.require(tag, "--tag", what)
    if ref.digest:
        raise UserError(f"--tag {tag}: a digest names an image's content, a tag is moved to it; {what}")
    other = tag_stack(tag)  # any spelling of it (docker.io/library/xeontl:paper)
    if other and other is not stack:
        raise UserError(f"{tag} is the {other.name} stack's own tag ({other.versions['tensorflow']}): the {stack.name} "
                        f"stack's image ({stack.versions['tensorflow']}) is not given it; {what} (--stack "
                        f"{other.name} builds that stack's image; name another tag for this one)")


def _tag_as(content_tag: str, tag: str, stack: Stack) -> None:
    """Move TAG to CONTENT_TAG's image once its TensorFlow label is the stack's: a content tag moved by hand (or an
    image of another stack under it) is not passed on under the stack's name."""
    label = dockerapi.label(dockerapi.inspect(content_tag) or {}, TF_LABEL)
    if label != stack.versions["tensorflow"]:
        raise UserError(f"{content_tag} holds {TF_LABEL}={label or '(none)'}, not the {stack.name} stack's "
                        f"{stack.versions['tensorflow']}: not tagged {tag} (rebuild it: invoke build --force"
                        f"{'' if stack is DEFAULT else ' --stack ' + stack.name})")
    dockerapi.tag(content_tag, tag)


def build(tag: str | None = None, offline: bool = False, force: bool = False, stack: Stack = DEFAULT) -> dict:
    """Build (or reuse) the stack's image (tagged `tag`, default the stack's own, never another stack's); returns
    timings. Moves `tag` only after the build-time checks passed, and only to an image of the stack's TensorFlow."""
    tag = tag or stack.tag
    check_tag(tag, stack)
    dockerapi.check_daemon()
    timings, t_start = {}, time.time()
    inputs = inputs_hash(stack_inputs(stack))
    content_tag = f"xeontl:inputs-{inputs}"
    if not force and dockerapi.exists(content_tag):
        _tag_as(content_tag, tag, stack)
        print(f"[build] inputs unchanged: reusing {content_tag} as {tag}")
        return {"reused": content_tag}
    deps, deps_timings = build_deps(offline, force, stack)
    timings.update(deps_timings)
    # The labels in one LABEL step from build args (the legacy builder makes a step of every --label).
    t0 = time.time()
    with _context(APP_INPUTS) as ctx:
        _docker_build("docker/Dockerfile", content_tag, {"DEPS_IMAGE": deps, **label_args(inputs, stack)}, ctx,
                      f"xeontl ({stack.name} stack)")
    timings["docker_build_s"] = round(time.time() - t0)
    _tag_as(content_tag, tag, stack)
    timings.update(total_s=round(time.time() - t_start), image_bytes=int(dockerapi.inspect(tag)["Size"]), tag=tag,
                   content_tag=content_tag)
    print(f"[build] {tag} ({timings['image_bytes'] / 1e9:.2f} GB) in {timings['total_s']} s: {json.dumps(timings)}")
    return timings
