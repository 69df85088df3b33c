"""The run outlives no launcher. A launcher killed outright (SIGKILL, the OOM killer, a closed terminal) runs none of
its cleanup, and the kernel releases its CPU locks at once: a container started with `docker run` (or ranks in their
own process group, natively) would keep the cores while the next run is told they are free.

So every local run has a guardian: a small process of its own session, holding the read end of a pipe whose write
end only the launcher holds. The launcher says "done" when it has stopped its run itself; if the pipe closes without
it (the launcher is gone, however it went), the guardian stops what the run started: the container killed and
removed (through the Docker SDK), SIGKILL to the ranks' session. Measured bound in tests/test_security.py (the
killed-launcher tests).
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
from pathlib import Path


def kill_session(sid: int, sig: int = signal.SIGKILL) -> None:
    """SIG to every process of session SID (the run's, started with start_new_session): mpirun puts each of its ssh
    children in a process group of its own, and one to a frozen node lives on, holding the run's output open."""
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            if int((d / "stat").read_text().rsplit(")", 1)[1].split()[3]) == sid:
                os.kill(int(d.name), sig)
        except (OSError, ValueError, IndexError):
            continue


@contextlib.contextmanager
def guarding(container: str | None = None, group: int | None = None):
    """Hold a guardian while the block runs; `set_group(pgid)` names a process group once it exists. Leaving the
    block normally (or by an exception the launcher handles) tells the guardian its job is done."""
    proc = subprocess.Popen([sys.executable, "-m", "xeontl.launch.guard",
                             *(["--container", container] if container else [])],
                            stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)  # Ctrl-C in the terminal is the launcher's to handle, not its

    def set_group(pgid: int) -> None:
        proc.stdin.write(f"group {pgid}\n".encode())
        proc.stdin.flush()

    if group is not None:
        set_group(group)
    try:
        yield set_group
    finally:
        try:
            proc.stdin.write(b"done\n")
            proc.stdin.close()
        except OSError:
            pass
        proc.wait()


def main(argv: list[str]) -> int:
    container = argv[argv.index("--container") + 1] if "--container" in argv else None
    group = None
    for line in sys.stdin:  # until the launcher says done, or its end of the pipe closes
        word, _, arg = line.strip().partition(" ")
        if word == "done":
            return 0
        if word == "group":
            group = int(arg)
    # the launcher is gone without stopping its run: stop it
    if container:
        from xeontl.supply import dockerapi

        dockerapi.remove(container)  # killed and removed: nothing of the run keeps its cores
    if group:
        kill_session(group)  # the run's session: its process group and every group mpirun made in it
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
