"""The docker engine: the job in the image on this host, `docker run` with the plan's cpuset and memory nodes, the
launch line inside. The default engine of `invoke reproduce`."""

from __future__ import annotations

import os

from xeontl import dockercli, outcome
from xeontl import plan as planlib
from xeontl.engines.base import Job, describe_local
from xeontl.engines.host import HostEngine, run_teed
from xeontl.topology import cpulist


class DockerEngine(HostEngine):
    mode = "docker"
    in_image = True

    def __init__(self, opts):
        super().__init__(opts)
        self.image_info: dict | None = None

    def container_name(self, job: Job) -> str:
        return f"xeontl-{job.run_id}"

    def commands(self, job: Job) -> None:
        self.launch_line(job)
        uid, gid = dockercli.user_ids()
        job.command = docker_command(job.plan, self.opts.image, job.inner, str(job.staging), f"{uid}:{gid}",
                                     name=self.container_name(job),
                                     resume_host_dir=str(self.opts.resume) if self.opts.resume else None,
                                     extra_env=self.opts.extra_env, read_only=job.read_only)

    def describe(self, job: Job) -> str:
        return describe_local(job, "inside the container", host_command=True)

    def preflight(self, job: Job) -> None:
        """Docker up, the image built, and built from this checkout when run from one: built here first when it is
        not (`invoke build --offline`, its progress shown), unless --no-build."""
        from xeontl import image as imagelib
        from xeontl.errors import UserError

        inputs = imagelib.checkout_inputs_hash()
        try:
            self.image_info = dockercli.require_image(self.opts.image, inputs)
            return
        except UserError as e:
            dockercli.check_daemon()  # Docker itself missing or down: building would not help
            if not self.opts.build or inputs is None:
                raise
            print(f"xeontl: {str(e).split(': run')[0]}: building it now (invoke build --offline; --no-build refuses "
                  f"instead)", flush=True)
        imagelib.build(tag=self.opts.image, offline=True)
        self.image_info = dockercli.require_image(self.opts.image, inputs)

    def staged(self, staging) -> None:
        if os.getuid() == 0:
            dockercli.chown_tree(staging, *dockercli.user_ids())  # the container's non-root user writes here

    def finished(self, staging) -> None:
        if os.getuid() == 0:
            dockercli.chown_tree(staging, 0, 0)  # hand the results back to the invoking user

    def run(self, job: Job, staging) -> outcome.Ended:
        name = self.container_name(job)
        return run_teed(job.command, staging / "logs-launcher.txt", dict(os.environ),
                        stop=lambda sig: dockercli.kill(name, sig), container=name)

    def execution(self) -> dict:
        from xeontl import archive

        info = self.image_info or {}
        return {"mode": self.mode,
                "image": {"ref": self.opts.image, "id": info.get("Id"), "digests": info.get("RepoDigests"),
                          "labels": info.get("Config", {}).get("Labels") or {},
                          "archive": archive.archived_from(info.get("Id"))},
                "capabilities_added": list(planlib.CAPABILITIES)}


def docker_command(plan: planlib.Plan, image: str, command: list[str], results_host_dir: str | None, user: str,
                   name: str | None = None, shm_size: str = "2g", resume_host_dir: str | None = None,
                   extra_env: dict | None = None, read_only: list[str] | tuple = ()) -> list[str]:
    """docker run with the plan's cpuset and memory nodes; only the plan's capabilities (numactl -m needs SYS_NICE),
    never --privileged. read_only: host paths the config reads (weights, data), mounted read-only at the same path."""
    env = {**plan.env, **(extra_env or {})}
    mems = ["--cpuset-mems=" + ",".join(map(str, plan.nodes))] if plan.nodes else []
    return ["docker", "run", "--rm", *(["--name", name] if name else []),
            f"--cpuset-cpus={cpulist(plan.cpus)}", *mems,
            # every capability dropped but the plan's, and no way to gain one back (setuid binaries, file caps)
            "--cap-drop", "ALL", *[a for cap in planlib.CAPABILITIES for a in ("--cap-add", cap)],
            "--security-opt", "no-new-privileges", f"--shm-size={shm_size}", "--user", user,
            "-e", "HOME=/tmp", *[a for k, v in env.items() for a in ("-e", f"{k}={v}")],
            *(["-v", f"{results_host_dir}:{planlib.CONTAINER_RESULTS}"] if results_host_dir else []),
            *(["-v", f"{resume_host_dir}:{planlib.CONTAINER_RESUME}:ro"] if resume_host_dir else []),
            *[a for path in read_only for a in ("-v", f"{path}:{path}:ro")], image, *command]
