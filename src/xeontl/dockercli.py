"""Everything xeontl asks the Docker CLI, in one place: is it there, is the daemon up, what is an image, and is the
image built from this checkout. Every answer a user can act on is one UserError line."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from xeontl.errors import UserError

INPUTS_LABEL = "io.xeontl.inputs"  # the inputs hash (image.inputs_hash) the image was built from
IMAGE_UID = 1000  # the image's non-root user (docker/deps.Dockerfile's useradd)


def user_ids() -> tuple[int, int]:
    """Who the containers run as: the invoking user, so results are theirs; root invokers get the image's user."""
    return (IMAGE_UID, IMAGE_UID) if os.getuid() == 0 else (os.getuid(), os.getgid())


def chown_tree(path: Path, uid: int, gid: int) -> None:
    for p in [path, *path.rglob("*")]:
        os.lchown(p, uid, gid)


def require_cli(fix: str = "run natively with --native") -> None:
    if shutil.which("docker") is None:
        raise UserError(f"the docker CLI is not installed: install Docker Engine (Debian: apt-get install docker.io), "
                        f"or {fix}")


def inspect(ref: str) -> dict | None:
    """`docker image inspect REF`: its data, or None when there is no such image; a daemon that is down or does not
    answer is one line."""
    require_cli()
    try:
        out = subprocess.run(["docker", "image", "inspect", ref], capture_output=True, text=True, timeout=60)
    except subprocess.TimeoutExpired:
        raise UserError("the Docker daemon does not answer: start it (systemctl start docker) or use "
                        "--native") from None
    if out.returncode == 0:
        return json.loads(out.stdout)[0]
    if "No such image" not in out.stderr and ("Cannot connect" in out.stderr or "daemon" in out.stderr.lower()):
        raise UserError(f"the Docker daemon is not reachable ({out.stderr.strip().splitlines()[-1]}): start it, "
                        f"or run natively with --native")
    return None


def exists(ref: str) -> bool:
    return inspect(ref) is not None


def label(info: dict, key: str) -> str | None:
    return ((info.get("Config") or {}).get("Labels") or {}).get(key)


def check_daemon() -> None:
    require_cli("install it")
    r = subprocess.run(["docker", "info", "--format", "{{.ServerVersion}}"], capture_output=True, text=True)
    if r.returncode != 0 or not r.stdout.strip():
        raise UserError("the Docker daemon is not reachable: start it (systemctl start docker / dockerd)")


def require_image(ref: str, inputs: str | None = None) -> dict:
    """The image exists (and, given this checkout's inputs hash, was built from it). Returns its inspect data.
    A stale image would run other code than the checkout's, and config.json could differ from what ran."""
    info = inspect(ref)
    if info is None:
        raise UserError(f"image {ref} is not built: run `invoke build --offline` (or `invoke build`) first")
    built = label(info, INPUTS_LABEL)
    if inputs is not None and built != inputs:
        was = f"inputs {built}" if built else "sources this checkout cannot identify"
        raise UserError(f"image {ref} was built from {was}, this checkout is inputs {inputs}: run "
                        f"`invoke build --offline` (or `invoke build`) so the image runs this code")
    return info


def kill(container: str, signal: str | None = None) -> None:
    subprocess.run(["docker", "kill", *(["--signal", signal] if signal else []), container], capture_output=True)
