"""What the MPIJob's launcher pod runs (`python -m xeontl k8s-launch --run-id ID -- mpirun ...`): its mpirun across
the worker pods, then what the local and Slurm engines do after a run, in the pod, on the results volume: the status
settled from the exit (and the rank or node that failed), provenance.json with the pod's own record (job, namespace,
pod, node from the downward API), report.md, and the staged run dir renamed whole."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import time
from datetime import datetime, timezone
from pathlib import Path

from xeontl import launch, outcome, provenance, report
from xeontl.errors import UserError

# The downward API values the rendered launcher gets (k8s.manifest), and the MPIJob it belongs to.
DOWNWARD = {"pod": "XEONTL_POD_NAME", "namespace": "XEONTL_POD_NAMESPACE", "node": "XEONTL_NODE_NAME",
            "job": "XEONTL_MPIJOB", "image": "XEONTL_IMAGE"}


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


def run(run_id: str, results: Path, config_dir: Path, command: list[str]) -> int:
    if not command:
        raise UserError("k8s-launch needs the launch command after --, e.g. -- mpirun ...")
    staging, final = results / f".staging-{run_id}", results / run_id
    if final.exists():
        raise UserError(f"{final} exists: a run id is never reused; nothing was overwritten")
    staging.mkdir(exist_ok=True)  # a restarted launcher pod continues into the same staging dir
    for f in ("config.json", "plan.json"):
        shutil.copy(config_dir / f, staging / f)
    cfg, plan = (json.loads((staging / f).read_text()) for f in ("config.json", "plan.json"))
    (staging / "command.txt").write_text(f"# launcher pod {os.environ.get(DOWNWARD['pod'])}\n{shlex.join(command)}\n")
    started, t0 = datetime.now(timezone.utc).isoformat(), time.time()
    rc, status = launch._run(command, staging / "logs-launcher.txt", dict(os.environ), None)
    status, failure, metrics = launch.settle_status(staging, rc, status)
    if status == "failed" and (failure or {}).get("rank") is None:
        hostfile = Path(os.environ.get("OMPI_MCA_orte_default_hostfile", "/etc/mpi/hostfile"))
        lost = lost_node((staging / "logs-launcher.txt").read_text(errors="replace"),
                         hostfile.read_text() if hostfile.is_file() else "")
        if lost:  # the failure as the run dir records it: the lost node and its ranks
            failure = {**(failure or {}), **lost}
            metrics.update(failure=failure)
            (staging / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    execution = {"mode": "kubernetes",
                 "kubernetes": {k: os.environ.get(v) for k, v in DOWNWARD.items() if k != "image"},
                 "image": {"ref": os.environ.get(DOWNWARD["image"])},
                 "capabilities_added": ["SYS_NICE"]}
    provenance.write(staging, run_id, cfg, plan, status, failure, metrics, provenance.read_probe(staging), started,
                     time.time() - t0, execution)
    report.write(staging)
    os.replace(staging, final)
    print(f"xeontl: {status}: results in {final}")
    return outcome.exit_code(status)
