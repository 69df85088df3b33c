"""One run per CPU: `invoke reproduce` holds an flock on every CPU its plan pins, for the whole run.

Two runs pinned to the same cores would each get half the cores and both report wrong speeds, so a second run that
needs a held CPU stops with a one-line message naming the holder, or queues behind it with `--wait`. The locks are
kernel flocks on files in $XEONTL_LOCK_DIR (default /tmp/xeontl-locks): released by the kernel when the launcher
exits, however it exits, so a crash never leaves a stale lock.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import time
from pathlib import Path

from xeontl.errors import UserError
from xeontl.topology import cpulist


def lock_dir() -> Path:
    d = Path(os.environ.get("XEONTL_LOCK_DIR", "/tmp/xeontl-locks"))
    d.mkdir(mode=0o1777, parents=True, exist_ok=True)
    return d


def _holder(f) -> str:
    f.seek(0)
    try:
        h = json.loads(f.read() or "{}")
    except ValueError:
        return "another run"
    return f"run {h.get('run_id', '?')} (pid {h.get('pid', '?')})"


@contextlib.contextmanager
def hold(cpus: list[int], run_id: str, wait: bool = False, poll_s: float = 2.0):
    """Lock every CPU (in ascending order, so two waiters never deadlock) or raise UserError naming the holder."""
    files, busy = [], {}
    try:
        for cpu in sorted(set(cpus)):
            path = lock_dir() / f"cpu-{cpu}.lock"
            f = open(path, "a+")
            with contextlib.suppress(OSError):
                os.chmod(path, 0o666)  # other users' runs must be able to take it too
            files.append(f)
            announced = False
            while True:
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not wait:
                        busy.setdefault(_holder(f), []).append(cpu)
                        break
                    if not announced:
                        print(f"xeontl: CPU {cpu} is in use by {_holder(f)}: waiting (--wait)", flush=True)
                        announced = True
                    time.sleep(poll_s)
        if busy:
            who = "; ".join(f"CPUs {cpulist(c)} by {h}" for h, c in busy.items())
            raise UserError(f"the cores this plan pins are in use ({who}): wait for that run to finish, "
                            f"or add --wait to queue behind it")
        for f in files:
            f.seek(0)
            f.truncate()
            f.write(json.dumps({"run_id": run_id, "pid": os.getpid(), "since": time.time()}))
            f.flush()
        yield
    finally:
        for f in files:
            f.close()  # closing the file releases its flock
