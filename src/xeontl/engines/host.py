"""What the engines that run on this host share: the checks of a local launch, the CPU lock, horovodrun's launch line
and the teed run that forwards Ctrl-C to every rank. docker.py and native.py are the two engines built on it (the
docker engine's container is run by xeontl.supply.dockerapi, with the same tee and Ctrl-C)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

from xeontl.common.errors import UserError
from xeontl.engines.base import Engine, Job
from xeontl.launch import cpulock, guard, outcome
from xeontl.placement import plan as planlib
from xeontl.placement import topology

SCHEDULER_ONLY = (("--nodes", "nodes", lambda v: v != 1), ("--partition", "partition", bool),
                  ("--time-limit", "time_limit", bool), ("--container", "container", bool))


class HostEngine(Engine):
    """An engine that runs the job from this host: the plan pins this machine's CPUs (or those of --hosts)."""

    def check(self) -> None:
        given = [flag for flag, key, set_ in SCHEDULER_ONLY if set_(getattr(self.opts, key))]
        if given:
            raise UserError(f"{', '.join(given)}: only with --engine slurm (the local engine runs on this host, in the "
                            f"image or --native; several hosts of your own: --hosts HOST:SLOTS,...)")

    def fits(self, plan: planlib.Plan) -> None:
        if not self.opts.topology_file or not self.opts.dry_run:
            planlib.check_fits(plan, topology.live())  # a recorded topology may only be *run* if it fits here

    def hold(self, job: Job):
        # Hold the plan's CPUs for the whole run: a second run on the same cores is refused (or waits with --wait).
        return cpulock.hold([] if job.plan.hosts else job.plan.cpus, job.run_id, wait=self.opts.wait)

    def launch_line(self, job: Job) -> None:
        rank_args = self.rank_args(job)
        job.inner = launch_command(job.plan, rank_args)
        job.ranks = [planlib.worker_command(w, rank_args(w)) for w in job.plan.workers]


def launch_command(plan: planlib.Plan, rank_args) -> list[str]:
    """The command that runs the whole job on this host, or across the plan's hosts (multi-node layout).

    On one host over MPI: the mpirun line horovodrun would exec (its flags for OpenMPI, loopback as the interface it
    finds for local hosts), run directly. horovodrun first checks that Horovod was built with MPI by importing
    TensorFlow in a spawned process: 5.8 of its 6.4 s before mpirun, on every run (Zen 4, in the image); the image
    build checks that once (`horovodrun --check-build`). Across hosts, and for Gloo, horovodrun itself: it finds the
    hosts' common interfaces, or runs Gloo's rendezvous."""
    if not plan.horovod:  # one process; positions (numactl '+') through its shell's lists, which it records
        if plan.workers[0].relative:
            return planlib.rank_wrapper(plan, rank_args)
        return planlib.worker_command(plan.workers[0], rank_args(plan.workers[0]))
    n = plan.total_workers
    if plan.controller == "mpi" and not plan.hosts:
        return ["mpirun", "--allow-run-as-root", "--tag-output", "-np", str(n), "-H", f"localhost:{n}",
                *planlib.MPI_ARGS, "-mca", "btl_tcp_if_include", "lo", "-x", "NCCL_SOCKET_IFNAME=lo",
                *planlib.rank_wrapper(plan, rank_args)]
    return ["horovodrun", "-np", str(n), "-H", ",".join(plan.hosts) or f"localhost:{n}", f"--{plan.controller}",
            *([f"--binding-args={' '.join(planlib.MPI_ARGS[:4])}"] if plan.controller == "mpi" else []),
            *planlib.rank_wrapper(plan, rank_args)]


def run_teed(command: list[str], log_path: Path, env: dict, monitor=None) -> outcome.Ended:
    """Run, teeing output to a log; on Ctrl-C stop every rank and end 'aborted'. A guardian (xeontl.launch.guard)
    stops the ranks' session if this launcher dies first; MONITOR(proc), if given, watches the run from a thread of
    its own (the MPIJob launcher's watchdog)."""
    with open(log_path, "ab") as log, guard.guarding() as watch:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # own process group: we stop all ranks together
        watch(proc.pid)
        if monitor is not None:
            threading.Thread(target=monitor, args=(proc,), daemon=True).start()
        try:
            for line in proc.stdout:
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
                log.write(line)
            return outcome.Ended(proc.wait())
        except KeyboardInterrupt:
            try:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            return outcome.Ended(outcome.ABORTED_EXIT, "aborted")
        except BaseException:  # the launcher itself failed (its log on a full disk): the ranks stop with it
            guard.kill_session(proc.pid)
            proc.wait()
            raise
