"""The MPIJob's launcher pod (`python -m xeontl k8s-launch`): it stages the run dir on the results volume from the
run's ConfigMap, waits until every worker's name resolves and its sshd answers, runs its mpirun across the worker pods
under a watchdog that ends the run when a worker stops answering, then ends the run as every engine does
(launch.conclude: settled, recorded with the pod's own record, reported, renamed). The manifest it runs in is
engines/kubernetes.py's."""

from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from xeontl.common import records, sanitize
from xeontl.common.errors import RunError, UserError
from xeontl.common.heartbeat import Beats, bounds
from xeontl.engines.base import Engine, Job
from xeontl.engines.host import run_teed
from xeontl.engines.kubernetes import (
    SSH_PORT,
    WAIT_ENV,
    WAIT_SECONDS,
)
from xeontl.experiment import config
from xeontl.launch import guard
from xeontl.launch.options import Options

# The downward API values the rendered launcher gets (manifest), and the MPIJob it belongs to.
DOWNWARD = {"pod": "XEONTL_POD_NAME", "namespace": "XEONTL_POD_NAMESPACE", "node": "XEONTL_NODE_NAME",
            "job": "XEONTL_MPIJOB", "image": "XEONTL_IMAGE"}




def hostfile_hosts(hostfile: Path) -> list[tuple[str, int]]:
    """(host, slots) of the operator's hostfile, in order."""
    out = []
    for line in hostfile.read_text().splitlines():
        if line.strip():
            slots = re.search(r"slots=(\d+)", line)
            out.append((line.split()[0], int(slots[1]) if slots else 1))
    return out


def sshd_answers(host: str, port: int = SSH_PORT, timeout: float = 3.0) -> str | None:
    """None when HOST resolves and its sshd sends its banner, else why not (unresolved, unreachable, silent)."""
    import socket

    try:
        addr = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][4]
    except OSError:
        return "does not resolve (the headless Service publishes a pod only once it is Ready)"
    try:
        with socket.create_connection(addr[:2], timeout=timeout) as conn:
            conn.settimeout(timeout)
            if not conn.recv(64).startswith(b"SSH-"):
                return "answers, but not as sshd"
    except (TimeoutError, OSError) as e:
        return f"does not answer on port {port} ({type(e).__name__})"
    return None


def wait_for_workers(hostfile: Path, seconds: float, every: float = 2.0) -> None:
    """Until every hostfile name resolves and its sshd answers: the operator creates the launcher once the worker
    pods are Ready, but their names reach DNS later (kubeflow/mpi-operator #443, #481: "ssh: Could not resolve
    hostname" and a launcher with backoffLimit 0 fails for good). Bounded; the names waited for are in its log."""
    import time

    deadline, pending, said = time.monotonic() + seconds, [h for h, _ in hostfile_hosts(hostfile)], None
    while True:
        why = {h: w for h in pending if (w := sshd_answers(h))}
        if not why:
            return
        if time.monotonic() > deadline:
            raise RunError(f"worker(s) {'; '.join(f'{h} {w}' for h, w in why.items())} after {seconds:.0f} s: "
                           f"check the worker pods (kubectl describe pod); nothing was run")
        if list(why) != said:  # the first wait said too, then each change
            print(sanitize.text(f"xeontl: waiting for {', '.join(why)}: {next(iter(why.values()))}"), flush=True)
            said = list(why)
        pending = list(why)
        time.sleep(every)


class Watchdog(Beats):
    """The run ends failed, never hangs, when a worker stops answering: frozen (its processes stopped), or cut off
    (its node gone from the network). Neither closes a connection, so mpirun and Horovod would wait for it forever.
    The ranks touch heartbeat/rank-N as their batches complete (callbacks.Heartbeat); when none has for STALL seconds
    (common.heartbeat.Beats) the launcher asks every worker's sshd for its banner, names the one that does not answer
    (its node, its ranks, from the hostfile), and stops mpirun."""

    def __init__(self, staging: Path, hostfile: Path, stall: float, every: float = 2.0, clock=None,
                 first: float | None = None):
        super().__init__(staging, stall, first=first, clock=clock)
        self.hostfile, self.every = hostfile, every
        self.lost: dict | None = None

    def __call__(self, proc) -> None:
        import signal
        import time

        while proc.poll() is None:
            time.sleep(self.every)
            if not self.stalled():
                continue
            hosts = hostfile_hosts(self.hostfile)
            first, silent = 0, None
            for host, slots in hosts:
                why = sshd_answers(host)
                if why:
                    silent = {"node": host, "rank": first, "ranks": list(range(first, first + slots)),
                              "why": f"no rank progressed for {self.stall:.0f} s and its sshd {why}"}
                    break
                first += slots
            self.lost = silent or {"why": f"no rank progressed for {self.stall:.0f} s (every worker's sshd answers)"}
            print(f"xeontl: stopping the run: {self.lost.get('node', 'a worker')}: {self.lost['why']}", flush=True)
            guard.kill_session(proc.pid, signal.SIGTERM)  # mpirun and its ssh children, each in a group of its own
            time.sleep(5)
            guard.kill_session(proc.pid, signal.SIGKILL)
            return


class LauncherPod(Engine):
    """The engine as its launcher pod runs it: its mpirun across the worker pods; the pod's own record."""

    mode = "kubernetes"

    def __init__(self, opts):
        super().__init__(opts)
        self.watchdog: Watchdog | None = None

    def run(self, job: Job, staging: Path):
        hostfile = Path(os.environ.get("OMPI_MCA_orte_default_hostfile", "/etc/mpi/hostfile"))
        if hostfile.is_file():
            wait_for_workers(hostfile, float(os.environ.get(WAIT_ENV, WAIT_SECONDS)))
            stall, first = bounds()
            self.watchdog = Watchdog(staging, hostfile, stall, first=first)
        return run_teed(job.command, staging / "logs-launcher.txt", dict(os.environ), monitor=self.watchdog)

    def execution(self) -> dict:
        return {"mode": self.mode,
                "kubernetes": {k: os.environ.get(v) for k, v in DOWNWARD.items() if k != "image"},
                "image": {"ref": os.environ.get(DOWNWARD["image"])},
                "capabilities_added": []}  # the pods add none: the kubelet pins them

    def stopped(self) -> dict | None:
        return self.watchdog.lost if self.watchdog else None

    def explain(self, log: str) -> dict | None:
        hostfile = Path(os.environ.get("OMPI_MCA_orte_default_hostfile", "/etc/mpi/hostfile"))
        return lost_node(log, hostfile.read_text() if hostfile.is_file() else "")


def lost_node(log: str, hostfile: str) -> dict | None:
    """mpirun's word when a worker pod (its node) is lost: the node, and the ranks it ran (--map-by slot fills each
    host of the hostfile with its slots, in order)."""
    # Which one mpirun prints depends on when the daemon's loss is seen (each form seen in the tests' runs): ORTE's
    # "lost communication" report, ssh's own line for the orted session it carried, an MPI peer's disconnect notice.
    for pattern in (r"Remote daemon:\s*\[\[\d+,\d+\],\d+\] on node (\S+)",
                    r"Connection to (\S+) closed by remote host", r"^\s*Peer host:\s*(\S+)"):
        m = re.search(pattern, log, re.M)
        if m:
            break
    else:
        return None
    node = m[1].rstrip(".")
    first = 0
    for line in hostfile.splitlines():
        host, _, slots = line.partition(" slots=")
        n = int(slots or 1)
        if host.split(".")[0] == node.split(".")[0]:
            return {"node": node, "rank": first, "ranks": list(range(first, first + n))}
        first += n
    return {"node": node}


def attempt_dir(results: Path, run_id: str) -> tuple[Path, int]:
    """(the run dir this launcher pod concludes into, its attempt). The launcher Job retries a failed pod
    (runPolicy.backoffLimit): a first attempt that concluded has already renamed its staging dir to RESULTS/RUN_ID,
    so a retry is attempt N, concluding into RUN_ID-attempt-N (the first one kept whole); a pod that died with its
    node before concluding leaves RUN_ID absent and its retry continues in the same staging dir."""
    final = results / run_id
    if not final.exists():
        return final, 1
    n = 2
    while (results / f"{run_id}-attempt-{n}").exists():
        n += 1
    return results / f"{run_id}-attempt-{n}", n


def writable(results: Path, uid: int | None = None, gids: set[int] | None = None, access=os.access) -> None:
    """The results claim's root must be writable by this pod's user (UID, GIDS: default this process's): the kubelet
    applies the pod's fsGroup only where the volume plugin supports it (a CSI driver whose fsGroupPolicy allows it;
    never in-tree NFS), so the run does not rely on it: one line, nothing run, when it is not. Not root: the kernel's
    answer (ACCESS, os.access: POSIX ACLs, NFS's server-side rules, ids mapped). Root, which os.access says yes to
    wherever the mode bits would not stop it: the root's owner and mode bits, as they apply to uid 0."""
    uid = os.getuid() if uid is None else uid
    gids = {os.getgid(), *os.getgroups()} if gids is None else gids
    st = results.stat()
    mode = st.st_mode & 0o7777
    if uid != 0:
        ok = access(results, os.W_OK | os.X_OK)
    elif st.st_uid == uid:
        ok = mode & 0o300 == 0o300
    elif st.st_gid in gids:
        ok = mode & 0o030 == 0o030
    else:
        ok = mode & 0o003 == 0o003
    if ok:
        return
    raise UserError(f"{results} (the results claim) is not writable by uid {uid} (groups "
                    f"{','.join(map(str, sorted(gids)))}; the claim's root is {st.st_uid}:{st.st_gid} {mode:o}): the "
                    f"pod's fsGroup was not applied (the volume plugin's fsGroupPolicy, or NFS): make the root owned "
                    f"by or group-writable to {uid}; nothing was run")


def launch_pod(run_id: str, results: Path, config_dir: Path, command: list[str]) -> int:
    """`python -m xeontl k8s-launch`: stage the run dir on the results volume from the ConfigMap, run the mpirun,
    then end the run as every engine does (launch.conclude)."""
    import time
    from datetime import datetime, timezone

    from xeontl.launch import launch

    if not command:
        raise UserError("k8s-launch needs the launch command after --, e.g. -- mpirun ...")
    staging = results / f".staging-{run_id}"
    final, attempt = attempt_dir(results, run_id)
    missing = [f for f in ("config.json", "plan.json") if not (config_dir / f).is_file()]
    if missing:
        raise UserError(f"{config_dir} lacks {', '.join(missing)}: mount the run's ConfigMap there (the rendered "
                        f"manifest does)")
    writable(results)
    if attempt > 1:
        print(f"xeontl: attempt {attempt} of run {run_id} (the launcher Job's retry; {run_id} is the first "
              f"attempt's, kept): this one concludes into {final.name}", flush=True)
    # the ConfigMap's records as their schemas allow them, before anything is written
    cfg, plan = config.load(config_dir / "config.json"), records.read_record(config_dir / "plan.json", "plan")
    staging.mkdir(exist_ok=True)  # a restarted launcher pod continues into the same staging dir
    for beat in (staging / "heartbeat").glob("rank-*"):  # the earlier attempt's beats are not this one's
        beat.unlink(missing_ok=True)
    for f in ("config.json", "plan.json"):
        (staging / f).write_bytes((config_dir / f).read_bytes())
    (staging / "command.txt").write_text(f"# launcher pod {os.environ.get(DOWNWARD['pod'])}, attempt {attempt}\n"
                                         f"{shlex.join(command)}\n")
    engine = LauncherPod(Options())
    job = Job(engine.opts, cfg, topo=None, plan=None, run_id=run_id, staging=staging, command=command, engine=engine)
    started, t0 = datetime.now(timezone.utc).isoformat(), time.time()
    ended = engine.run(job, staging)
    return launch.conclude(engine, staging, final, cfg, plan, ended, started, t0)[0]
