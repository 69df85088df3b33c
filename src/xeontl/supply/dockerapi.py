"""Everything xeontl asks the Docker daemon, in one place, through the Docker SDK for Python (`docker`): is the daemon
up; what is an image, and was it built from this checkout; build, import, tag, save, load and export images; a job's
container with the plan's cpuset, memory nodes, capabilities, user, mounts and shared memory (`Container`; run,
streamed, Ctrl-C forwarded and removed by engines/docker.py). The daemon's answers come back as the SDK's typed
exceptions (NotFound, APIError, ImageLoadError), never parsed CLI text; every one a user can act on is one UserError
line.

No `docker` subprocess is left in the package. One request the SDK has no method for, `docker save` of several images
into one tarball (their shared layers once), is the Engine API's own endpoint (GET /images/get?names=...) sent
through the SDK's session."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import os
import sys
import tarfile
import threading
from pathlib import Path
from typing import IO, Callable, Iterable, Iterator

from xeontl.common.errors import UserError

INPUTS_LABEL = "io.xeontl.inputs"  # the inputs hash (image.inputs_hash) the image was built from
IMAGE_UID = 1000  # the image's non-root user (docker/deps.Dockerfile's useradd)
CONTROL_TIMEOUT = 60  # s: an inspect, tag or kill the daemon does not answer in this long is a daemon that hangs
CHUNK = 1 << 20

_clients: dict[bool, object] = {}


def user_ids() -> tuple[int, int]:
    """Who the containers run as: the invoking user, so results are theirs; root invokers get the image's user."""
    return (IMAGE_UID, IMAGE_UID) if os.getuid() == 0 else (os.getuid(), os.getgid())


def chown_tree(path: Path, uid: int, gid: int) -> None:
    for p in [path, *path.rglob("*")]:
        os.lchown(p, uid, gid)


def why(e: BaseException) -> str:
    """The reason in an SDK or requests exception, short: its last clause, not the urllib3 chain."""
    text = getattr(e, "explanation", None) or str(e)
    for known, say in (("Permission denied", "permission denied on the Docker socket"),
                       ("No such file or directory", "no Docker socket"), ("Connection refused", "connection refused"),
                       ("Read timed out", "it did not answer in time")):
        if known in text:
            return say
    return text.strip().splitlines()[-1][:200] if text.strip() else type(e).__name__


def client(stream: bool = False):
    """The SDK's client for DOCKER_HOST (or the local socket), its API version the daemon's own (docker 20.10
    speaks 1.41). Two of them: control requests time out after CONTROL_TIMEOUT; STREAM is for what runs as long as it
    takes (a build, a run's output, a save), whose silences are no fault: an epoch prints nothing for minutes."""
    if stream not in _clients:
        import docker

        try:
            _clients[stream] = docker.from_env(timeout=None if stream else CONTROL_TIMEOUT)  # asks the API version
        except docker.errors.DockerException as e:
            fix = ("add your user to the docker group (then log in again)" if "Permission denied" in str(e)
                   else "start it (systemctl start docker), or run natively with --native")
            raise UserError(f"the Docker daemon is not reachable ({why(e)}): {fix}") from None
    return _clients[stream]


@contextlib.contextmanager
def answers(what: str, fix: str = "check the Docker daemon (systemctl status docker) and its disk space"):
    """The daemon's refusals and silences inside the block as one line: WHAT failed (why): FIX."""
    import docker
    import requests

    try:
        yield
    except (docker.errors.DockerException, requests.exceptions.RequestException) as e:
        raise UserError(f"{what} failed ({why(e)}): {fix}") from None


def check_daemon() -> None:
    with answers("asking the Docker daemon", "start it (systemctl start docker), or run natively with --native"):
        client().ping()


def inspect(ref: str) -> dict | None:
    """The image's inspect data (what `docker image inspect` prints), or None when there is no such image."""
    import docker

    with answers(f"inspecting image {ref}", "start the Docker daemon (systemctl start docker), or use --native"):
        try:
            return client().api.inspect_image(ref)
        except docker.errors.ImageNotFound:
            return None
        except docker.errors.APIError as e:
            if e.status_code in (400, 404):  # an invalid reference names no image either
                return None
            raise


def exists(ref: str) -> bool:
    return inspect(ref) is not None


def label(info: dict, key: str) -> str | None:
    return ((info.get("Config") or {}).get("Labels") or {}).get(key)


def require_image(ref: str, inputs: str | None = None, build: str = "invoke build --offline") -> dict:
    """The image exists (and, given this checkout's inputs hash, was built from it). Returns its inspect data.
    A stale image would run other code than the checkout's, and config.json could differ from what ran. `build` is
    the command that builds it (the paper stack's names its stack); its online form is the other way."""
    info = inspect(ref)
    online = build.replace(" --offline", "")
    if info is None:
        raise UserError(f"image {ref} is not built: run `{build}` (or `{online}`) first")
    built = label(info, INPUTS_LABEL)
    if inputs is not None and built != inputs:
        was = f"inputs {built}" if built else "sources this checkout cannot identify"
        raise UserError(f"image {ref} was built from {was}, this checkout is inputs {inputs}: run "
                        f"`{build}` (or `{online}`) so the image runs this code")
    return info


def tag(source: str, ref: str) -> None:
    """`docker tag SOURCE REF` (a tag REF held moves)."""
    from docker.utils import parse_repository_tag

    repository, tag_ = parse_repository_tag(ref)
    with answers(f"tagging {source[:19]} as {ref}"):
        client().api.tag(source, repository, tag_ or "latest", force=True)


def remove_image(ref: str) -> None:
    import docker

    with contextlib.suppress(docker.errors.NotFound):
        with answers(f"removing image {ref}"):
            client().api.remove_image(ref, force=True)


def _best_effort():
    """What kill and remove ignore: a container already gone or stopped, a daemon that no longer answers."""
    import docker
    import requests

    return contextlib.suppress(docker.errors.DockerException, requests.exceptions.RequestException)


def kill(container: str, signal: str | None = None) -> None:
    """Send SIGNAL (default SIGKILL) to the container's main process; a container already gone or stopped is fine."""
    with _best_effort():
        client().api.kill(container, signal=f"SIG{signal}" if signal and not signal.startswith("SIG") else signal)


def remove(container: str) -> None:
    """Kill and remove the container (`docker rm -f`); one already gone is fine."""
    with _best_effort():
        client().api.remove_container(container, force=True)


def build(context: IO[bytes], dockerfile: str, ref: str, args: dict, labels: dict | None,
          show: Callable[[str], None]) -> None:
    """Build REF from CONTEXT (a tar of exactly the build's files) with the daemon's builder; every line of its output
    goes to SHOW. Docker 20.10's API builds with the legacy builder (BuildKit needs a session the SDK has no client
    for), as `DOCKER_BUILDKIT=0 docker build` did: the same steps, the same layer cache."""
    tail: list[str] = []
    with answers(f"docker build of {ref}"):
        for chunk in client(stream=True).api.build(fileobj=context, custom_context=True, dockerfile=dockerfile,
                                                     tag=ref, buildargs=args, labels=labels or None, rm=True,
                                                     decode=True):
            if "error" in chunk:
                sys.stdout.write("".join(tail))
                detail = (chunk.get("errorDetail") or {}).get("message") or chunk["error"]
                raise UserError(f"docker build of {ref} failed ({detail.strip().splitlines()[-1]}): see the lines "
                                f"above; {ref} was not made")
            for line in (chunk.get("stream") or "").splitlines(keepends=True):
                tail = (tail + [line])[-30:]
                show(line)
    if inspect(ref) is None:
        raise UserError(f"docker build of {ref} ended without an image (see the lines above)")


def import_rootfs(chunks: Iterable[bytes], ref: str, changes: list[str]) -> None:
    """`docker import - REF` of a root filesystem's tar stream, with Dockerfile CHANGES (LABEL, CMD)."""
    import json

    with answers(f"docker import of {ref}", "is the Docker daemon running with enough disk?"):
        said = client(stream=True).api.import_image_from_stream(chunks, *_split(ref), changes=changes)
    for line in said.splitlines():
        err = json.loads(line).get("error") if line.strip().startswith("{") else None
        if err:
            raise UserError(f"docker import of {ref} failed ({err}): is the Docker daemon running with enough disk?")


def _split(ref: str) -> tuple[str, str]:
    from docker.utils import parse_repository_tag

    repository, tag_ = parse_repository_tag(ref)
    return repository, tag_ or "latest"


def save(refs: list[str], out: IO[bytes]) -> None:
    """`docker save REFS...` into OUT: one tarball, layers the images share written once. The SDK's get_image saves one
    image; the Engine API's /images/get takes several names, asked here through the SDK's own session."""
    api = client(stream=True).api
    with answers(f"docker save of {', '.join(refs)}", "free disk space where the archive is written, then try again"):
        res = api.get(f"{api.base_url}/v{api.api_version}/images/get", params={"names": refs}, stream=True)
        if res.status_code != 200:
            raise UserError(f"docker save of {', '.join(refs)} failed ({res.text.strip()[:200]}): is each image built?")
        for chunk in res.iter_content(CHUNK):
            out.write(chunk)


def load(chunks: Iterable[bytes]) -> None:
    """`docker load` of a save's tar stream."""
    with answers("docker load", "check the Docker daemon and its disk space"):
        client(stream=True).images.load(chunks)


def export_image(image: str, out: IO[bytes]) -> None:
    """The image's filesystem as one tar stream into OUT (`docker create` + `docker export`), the container removed."""
    api = client(stream=True).api
    with answers(f"exporting the filesystem of {image}", "free disk space, or check the Docker daemon"):
        cid = api.create_container(image, ["true"])["Id"]
        try:
            for chunk in api.export(cid, chunk_size=CHUNK):
                out.write(chunk)
        finally:
            remove(cid)


def read_files(image: str, directory: str) -> dict[str, bytes]:
    """The regular files in the image's DIRECTORY, by name (from a created container, never started)."""
    api = client(stream=True).api
    with answers(f"reading {directory} in {image}"):
        cid = api.create_container(image, ["true"])["Id"]
        try:
            stream, _ = api.get_archive(cid, directory)
            with tarfile.open(fileobj=io.BytesIO(b"".join(stream))) as tar:
                return {Path(m.name).name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}
        finally:
            remove(cid)


def chunks_of(f: IO[bytes]) -> Iterator[bytes]:
    """A file object as the SDK sends a request body: chunk by chunk (a generator is sent chunked, never whole)."""
    while chunk := f.read(CHUNK):
        yield chunk


def chunks_written(writer: Callable[[IO[bytes]], None]) -> Iterator[bytes]:
    """What WRITER(out) writes, as chunks, while it writes (a pipe and a thread: nothing held whole in memory)."""
    r, w = os.pipe()
    failed: list[BaseException] = []

    def produce():
        with open(w, "wb") as out:
            try:
                writer(out)
            except BaseException as e:  # handed to the reader below
                failed.append(e)

    t = threading.Thread(target=produce, daemon=True)
    t.start()
    with open(r, "rb") as src:
        yield from chunks_of(src)
    t.join()
    if failed:
        raise failed[0]


@dataclasses.dataclass(frozen=True)
class Container:
    """A job's container: what it runs and how it is confined, given once. `create()` makes it through the SDK; `cli()`
    is the same container as the `docker run` line a user could type (the dry run and the launch record show it)."""

    image: str
    command: tuple[str, ...]
    name: str | None = None
    cpuset_cpus: str | None = None
    cpuset_mems: str | None = None
    cap_add: tuple[str, ...] = ()
    shm_size: str = "2g"
    user: str | None = None
    env: tuple[tuple[str, str], ...] = ()
    mounts: tuple[tuple[str, str, str], ...] = ()  # (host path, container path, "rw" | "ro")
    pids_limit: int | None = None  # processes and threads the container may hold at once (a fork bomb stops there)
    memory: int | None = None  # bytes of memory, swap included (--memory-swap the same: no swap beyond it)
    network: str | None = None  # "none": loopback only (a single-host run's MPI needs no more); None: Docker's default

    def cli(self) -> list[str]:
        return ["docker", "run", "--rm", *(["--name", self.name] if self.name else []),
                *([f"--cpuset-cpus={self.cpuset_cpus}"] if self.cpuset_cpus else []),
                *([f"--cpuset-mems={self.cpuset_mems}"] if self.cpuset_mems else []),
                # every capability dropped but the plan's, and no way to gain one back (setuid binaries, file caps)
                "--cap-drop", "ALL", *[a for cap in self.cap_add for a in ("--cap-add", cap)],
                "--security-opt", "no-new-privileges", f"--shm-size={self.shm_size}",
                *([f"--pids-limit={self.pids_limit}"] if self.pids_limit else []),
                *([f"--memory={self.memory}", f"--memory-swap={self.memory}"] if self.memory else []),
                *([f"--network={self.network}"] if self.network else []),
                *(["--user", self.user] if self.user else []),
                *[a for k, v in self.env for a in ("-e", f"{k}={v}")],
                *[a for bind in self.binds() for a in ("-v", bind)],
                self.image, *self.command]

    def binds(self) -> list[str]:
        """The mounts as the daemon records them (HostConfig.Binds) and as `-v` spells them: read-write is the
        default, only read-only is written out."""
        return [f"{host}:{inside}" + (":ro" if mode == "ro" else "") for host, inside, mode in self.mounts]

    def create(self):
        """The container, created (not started) with exactly what cli() says."""
        return client(stream=True).containers.create(
            self.image, list(self.command), name=self.name, cpuset_cpus=self.cpuset_cpus,
            cpuset_mems=self.cpuset_mems, cap_drop=["ALL"], cap_add=list(self.cap_add) or None,
            security_opt=["no-new-privileges"], shm_size=self.shm_size, user=self.user, environment=dict(self.env),
            volumes=self.binds(), pids_limit=self.pids_limit, mem_limit=self.memory, memswap_limit=self.memory,
            network_mode=self.network)
