"""The docker engine: the job in the image on this host, a container with the plan's cpuset and memory nodes, pids and
memory limits sized from the plan, no network but loopback on one host (made and run through the Docker SDK:
xeontl.supply.dockerapi), the launch line inside under a watch that stops it once its launcher is gone (WATCH). The
default engine of `invoke reproduce`."""

from __future__ import annotations

import fcntl
import os
import sys
from pathlib import Path

from xeontl.common.errors import RunError, UserError
from xeontl.engines.base import Job, describe_local
from xeontl.engines.host import HostEngine
from xeontl.launch import guard, outcome, rundir
from xeontl.placement import plan as planlib
from xeontl.placement.topology import cpulist
from xeontl.supply import dockerapi
from xeontl.supply.stacks import DEFAULT, STACKS, build_command, tag_stack


class DockerEngine(HostEngine):
    mode = "docker"
    in_image = True

    def __init__(self, opts):
        super().__init__(opts)
        self.image_info: dict | None = None
        self.container: dockerapi.Container | None = None

    def container_name(self, job: Job) -> str:
        return f"xeontl-{job.run_id}"

    def commands(self, job: Job) -> None:
        self.launch_line(job)
        uid, gid = dockerapi.user_ids()
        self.container = container(job.plan, self.opts.image,
                                   watched(job.inner, f"{planlib.CONTAINER_RESULTS}/{outcome.LAUNCHER_LOG}"),
                                   str(job.staging), f"{uid}:{gid}",
                                   name=self.container_name(job),
                                   resume_host_dir=str(self.opts.resume) if self.opts.resume else None,
                                   extra_env=self.opts.extra_env, read_only=job.read_only)
        job.command = self.container.cli()  # the same container as a `docker run` line: what the launch record shows

    def describe(self, job: Job) -> str:
        return describe_local(job, "inside the container", host_command=True)

    def preflight(self, job: Job) -> None:
        """Docker up, the image built, and built from this checkout when run from one: built here first when it is
        not (`invoke build --offline`, its progress shown), unless --no-build."""
        from xeontl.supply import image as imagelib

        stack = STACKS[self.opts.stack]
        inputs = imagelib.checkout_inputs_hash(stack)
        how = build_command(stack)
        try:
            self.image_info = dockerapi.require_image(self.opts.image, inputs, how)
            return
        except UserError as e:
            dockerapi.check_daemon()  # Docker itself missing or down: building would not help
            if not self.opts.build or inputs is None:
                raise
            print(f"xeontl: {str(e).split(': run')[0]}: building it now ({how}; --no-build refuses instead)",
                  flush=True)
        imagelib.build(tag=self.opts.image, offline=True, stack=stack)
        self.image_info = dockerapi.require_image(self.opts.image, inputs, how)

    def staged(self, staging) -> None:
        os.chmod(staging, 0o700)  # no other host user reads or enters the run while it runs
        if os.getuid() == 0:
            dockerapi.chown_tree(staging, *dockerapi.user_ids())  # the container's non-root user writes here

    def finished(self, staging) -> None:
        # Whoever the image's uid is on this host (a real user when it is one: they could write here all run long),
        # nothing in the run dir is trusted: taken back, links and special files removed, before the launcher (root,
        # perhaps) reads or writes a file there (rundir.take_back).
        removed = rundir.take_back(staging, os.getuid(), os.getgid())
        if removed:
            print(f"xeontl: warning: removed from the run dir what is not a plain file or directory (a link, FIFO, "
                  f"device or hard link the container left): {', '.join(removed[:5])}"
                  f"{' ...' if len(removed) > 5 else ''}", file=sys.stderr)
        os.chmod(staging, 0o755)  # readable as every engine's run dir is, now that it is the launcher's again

    def run(self, job: Job, staging) -> outcome.Ended:
        return run_container(self.container, staging / outcome.LAUNCHER_LOG)

    def execution(self) -> dict:
        from xeontl.supply import archive

        info = self.image_info or {}
        return {"mode": self.mode,
                "image": {"ref": self.opts.image, "id": info.get("Id"), "digests": info.get("RepoDigests"),
                          "labels": info.get("Config", {}).get("Labels") or {},
                          "archive": archive.archived_from(info.get("Id"))},
                "capabilities_added": list(planlib.CAPABILITIES)}


# What a rank may hold, sized from the plan (limits): every rank's threads (TF's intra- and inter-op pools, oneDNN's
# OpenMP team, tf.data's pool: a few per CPU) and processes (mpirun, numactl, the shell), with room to spare; memory:
# the plan's share of this host (its CPUs over the host's), never less than a floor per rank plus /dev/shm.
PIDS_BASE, PIDS_PER_RANK, PIDS_PER_CPU = 512, 256, 8
MEMORY_FLOOR_PER_RANK = 2 << 30
SHM_SIZE = 2 << 30


def limits(plan: planlib.Plan, host_bytes: int, host_cpus: int, shm_bytes: int = SHM_SIZE) -> dict:
    """The container's pids and memory limits for PLAN on a host of HOST_BYTES of memory and HOST_CPUS CPUs, and its
    network: none for a single-host run (Open MPI's shared memory and its launcher's loopback, Gloo's rendezvous on
    127.0.0.1: `lo` is all they use), Docker's default when ranks reach other hosts."""
    pids = PIDS_BASE + sum(PIDS_PER_RANK + PIDS_PER_CPU * len(w.cpus) for w in plan.workers)
    share = min(1.0, len(plan.cpus) / max(1, host_cpus))
    memory = max(int(host_bytes * share), len(plan.workers) * MEMORY_FLOOR_PER_RANK + shm_bytes)
    return {"pids_limit": pids, "memory": min(memory, host_bytes), "network": None if plan.hosts else "none"}


def host_size() -> tuple[int, int]:
    """(bytes of memory, online CPUs) of this host."""
    return os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE"), os.cpu_count() or 1


def container(plan: planlib.Plan, image: str, command: list[str], results_host_dir: str | None, user: str,
              name: str | None = None, shm_size: str = "2g", resume_host_dir: str | None = None,
              extra_env: dict | None = None, read_only: list[str] | tuple = ()) -> dockerapi.Container:
    """The run's container: the plan's cpuset and memory nodes; every capability dropped but the plan's (numactl -m
    needs SYS_NICE), no new privileges, never --privileged; a pids and a memory limit sized from the plan, no network
    but loopback for a single-host run (`limits`). read_only: host paths the config reads (weights, data), mounted
    read-only at the same path."""
    env = {"HOME": "/tmp", **plan.env, **(extra_env or {})}
    mounts = [*([(results_host_dir, planlib.CONTAINER_RESULTS, "rw")] if results_host_dir else []),
              *([(resume_host_dir, planlib.CONTAINER_RESUME, "ro")] if resume_host_dir else []),
              *[(path, path, "ro") for path in read_only]]
    return dockerapi.Container(image=image, command=tuple(command), name=name, cpuset_cpus=cpulist(plan.cpus),
                               cpuset_mems=",".join(map(str, plan.nodes)) or None,
                               cap_add=tuple(planlib.CAPABILITIES), shm_size=shm_size, user=user,
                               env=tuple(env.items()), mounts=tuple(mounts), **limits(plan, *host_size()))


# The run's command inside its container, under a watch on the launcher (sh: POSIX, in every image). The launcher holds
# an exclusive flock on its log (run_container) for as long as it runs; the watch waits for a shared one, which it gets
# only once the launcher is gone, however it went: a cgroup-wide kill (a CI job cancelled, scancel) takes the
# launcher's guardian with it, but not this watch, which lives in the container's own cgroup. It then stops the job
# (SIGTERM, SIGKILL 20 s later) and the container ends. SIGINT/SIGTERM to the container (Ctrl-C: run_container) are
# passed on to the job; the job's exit status is the container's. The job runs with every signal at its default
# (`env --default-signal`, coreutils 8.31+: a shell starts a background job with SIGINT ignored, and Python then
# installs no KeyboardInterrupt handler); sh stays PID 1, so the job, not PID 1, is what the watch signals.
WATCH = " ".join([  # one line: the launch record's `docker run` line stays one line
    'lock=$1; shift;',
    'env --default-signal "$@" & job=$!;',
    "trap 'kill -INT $job 2>/dev/null' INT;",
    "trap 'kill -TERM $job 2>/dev/null' TERM;",
    '(flock -s 9 && { kill -TERM $job 2>/dev/null; sleep 20; kill -KILL $job 2>/dev/null; }) 9<"$lock" &',
    'while :; do wait $job; rc=$?; kill -0 $job 2>/dev/null || exit $rc; done'])


def watched(command: list[str], lock: str) -> list[str]:
    """COMMAND under the launcher's watch (WATCH), LOCK the launcher's log as the container sees it."""
    return ["sh", "-c", WATCH, "xeontl-watch", lock, *command]


def docker_command(*args, **kw) -> list[str]:
    """The run's container (`container`) as the `docker run` line a user could type."""
    return container(*args, **kw).cli()


def open_log(path: Path):
    """The launcher's log, opened for appending by this launcher and held (the flock WATCH waits on is on this
    descriptor): never through a link, never a FIFO or a file with another link, whatever was planted in its place."""
    import stat

    try:
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_NOFOLLOW | os.O_NONBLOCK
                     | getattr(os, "O_CLOEXEC", 0), 0o644)
    except OSError as e:
        raise UserError(f"cannot open the run's log {path} ({e.strerror}): not a regular file") from None
    st = os.fstat(fd)
    if not stat.S_ISREG(st.st_mode) or st.st_nlink != 1:
        os.close(fd)
        raise UserError(f"cannot open the run's log {path}: not a regular file with one link")
    os.set_blocking(fd, True)
    return os.fdopen(fd, "ab")


def run_container(spec: dockerapi.Container, log_path: Path, grace: float = 20.0) -> outcome.Ended:
    """Run SPEC's container to its end, its output (stdout and stderr, as they come) teed to the terminal and
    LOG_PATH. Ctrl-C: SIGINT to the container's main process (mpirun, which stops every rank), SIGKILL after
    GRACE s; ends 'aborted'. A guardian (xeontl.launch.guard) removes the container if this launcher dies first; it
    is removed here however the run ends. A daemon that stops answering mid-run is one line, the run failed."""
    import docker
    import requests

    with open_log(log_path) as log, guard.guarding(container=spec.name):
        try:
            fcntl.flock(log.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)  # held while this launcher lives: WATCH waits
        except OSError as e:
            raise UserError(f"cannot lock {log_path} ({e.strerror}): the run's container is watched through it; "
                            f"choose a --results-dir on a filesystem with flock, not shared with another run") from None
        try:
            ctr = spec.create()
        except docker.errors.ImageNotFound:
            raise UserError(f"image {spec.image} is not built: run "
                            f"`{build_command(tag_stack(spec.image) or DEFAULT)}` first") from None
        except docker.errors.APIError as e:
            raise UserError(f"docker could not create the run's container ({dockerapi.why(e)}): check --image and the "
                            f"plan's CPUs and memory nodes against this host (invoke bench --check-host)") from None
        try:
            output = ctr.attach(stdout=True, stderr=True, stream=True, logs=True)  # before start: nothing lost
            try:
                ctr.start()
            except docker.errors.APIError as e:  # the runtime refused it (a cpuset this host lacks, ...)
                raise UserError(f"docker could not start the run's container ({dockerapi.why(e)}): check the plan's "
                                f"CPUs and memory nodes against this host (invoke bench --check-host)") from None
            try:
                for chunk in output:
                    sys.stdout.buffer.write(chunk)
                    sys.stdout.flush()
                    log.write(chunk)
                return outcome.Ended(int(ctr.wait()["StatusCode"]))
            except KeyboardInterrupt:
                dockerapi.kill(ctr.id, "INT")
                try:
                    ctr.wait(timeout=grace)
                except (requests.exceptions.RequestException, docker.errors.DockerException):
                    dockerapi.kill(ctr.id)
                return outcome.Ended(outcome.ABORTED_EXIT, "aborted")
        except (requests.exceptions.RequestException, docker.errors.DockerException) as e:
            raise RunError(f"the Docker daemon stopped answering during the run ({dockerapi.why(e)}): the container "
                           f"was removed; check the daemon (systemctl status docker)") from None
        finally:
            dockerapi.remove(ctr.id)
