"""The native engine: the job on this host without a container (`--native`), with the launcher's own Python stack."""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

from xeontl.common.errors import UserError
from xeontl.engines.base import Job, describe_local
from xeontl.engines.host import HostEngine, run_teed
from xeontl.launch import outcome


class NativeEngine(HostEngine):
    mode = "native"
    in_image = False

    def commands(self, job: Job) -> None:
        self.launch_line(job)
        job.command = job.inner

    def describe(self, job: Job) -> str:
        return describe_local(job, "native", host_command=False)

    def preflight(self, job: Job) -> None:
        missing = [t for t in ("numactl",) if shutil.which(t) is None]
        try:
            import horovod  # noqa: F401
        except ImportError:
            missing.append("horovod (python package)")
        if missing:
            raise UserError(f"--native needs {', '.join(missing)}: run `invoke setup --native`, or drop --native to "
                            f"use the image")

    def run(self, job: Job, staging) -> outcome.Ended:
        return run_teed(job.command, staging / "logs-launcher.txt", native_env(job.plan.env, self.opts.extra_env))

    def execution(self) -> dict:
        return {"mode": self.mode, "image": None, "capabilities_added": []}


def native_env(*extra: dict) -> dict:
    """The environment of a native command: this launcher's own Python environment (.venv/bin: python, horovodrun)
    first on PATH, so the ranks run the same stack the launcher was installed in, activated or not."""
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ}
    for e in extra:
        env.update(e)
    env["PATH"] = os.pathsep.join([bindir, *[p for p in env.get("PATH", "").split(os.pathsep) if p != bindir]])
    return env
