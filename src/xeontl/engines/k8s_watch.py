"""`invoke reproduce --engine k8s`: the MPIJob rendered (kubernetes.render), applied with `kubectl apply`, and
watched through the API server with `kubectl get -o json` (the user's kubectl and kubeconfig: no client library, no
credentials of ours) until the operator ends it, or until a worker pod shows what the operator never acts on:

- a worker pod Failed (the kubelet's admission refusing it: TopologyAffinityError, SMTAlignmentError,
  UnexpectedAdmissionError, OutOfcpu...; or Evicted). The operator (kubeflow/mpi-operator v0.8.2,
  pkg/controller/mpi_job_controller.go) fails the job only when a worker is Evicted, recreates only missing pods, and
  with launcherCreationPolicy WaitForWorkersReady creates no launcher while a worker is not Ready: the job would wait
  for ever. Ends within one poll (POLL_SECONDS) of the pod's status;
- a worker Pending (unscheduled, or its containers not started: ContainerCreating on a volume it cannot attach,
  ImagePullBackOff) for more than PENDING_SECONDS since its creation (XEONTL_K8S_PENDING_SECONDS, default 900: room for
  a first pull of the image on every node): ends within PENDING_SECONDS + POLL_SECONDS;
- the launcher Job failing for good: the MPIJob's Failed condition (BackoffLimitExceeded...).
A frozen worker is the launcher's watchdog's (mpijob_launcher.Watchdog: XEONTL_STALL_SECONDS), which ends mpirun and
so the MPIJob. Each verdict is one line naming the pod and the reason; the MPIJob is then deleted (the run dir on the
claim is the launcher's and stays)."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from datetime import datetime, timezone

from xeontl.common.errors import RunError, UserError

PENDING_ENV, PENDING_SECONDS, POLL_SECONDS = "XEONTL_K8S_PENDING_SECONDS", 900, 5


def _age(pod: dict, now: float) -> float:
    created = pod.get("metadata", {}).get("creationTimestamp")
    if not created:
        return 0.0
    return now - datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


def _waiting(pod: dict) -> str | None:
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        w = (c.get("state") or {}).get("waiting")
        if w:
            return f"{w.get('reason', 'Waiting')}" + (f": {w['message']}" if w.get("message") else "")
    return None


def judge(pods: list[dict], job: dict | None, now: float, pending: float) -> tuple[str, str]:
    """("running" | "succeeded" | "failed", why) from the run's pods (kubectl get pods -o json's items) and its
    MPIJob; NOW in epoch seconds, PENDING the bound on a Pending worker."""
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name = pod["metadata"]["name"]
        role = (pod["metadata"].get("labels") or {}).get("xeontl/role")
        status = pod.get("status") or {}
        if role != "worker":
            continue
        if status.get("phase") == "Failed":
            return "failed", (f"worker pod {name} Failed: {status.get('reason', 'no reason given')}"
                              + (f": {status['message']}" if status.get("message") else ""))
        if status.get("phase") == "Pending" and _age(pod, now) > pending:
            cond = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"
                         and c.get("status") == "False"), None)
            why = (f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}".rstrip(": ") if cond
                   else _waiting(pod) or "no reason given")
            return "failed", f"worker pod {name} Pending for more than {pending:.0f} s: {why}"
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Succeeded", "Failed"):
            state = cond["type"].lower()
            return state, f"MPIJob {job['metadata']['name']} {cond['type']}: {cond.get('reason', '')}: " \
                          f"{cond.get('message', '')}".rstrip(": ")
    return "running", ""


def kubectl(*args: str) -> str:
    r = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        last = ((r.stderr or r.stdout).strip().splitlines() or ["no output"])[-1]
        raise RunError(f"kubectl {' '.join(args[:2])} failed (exit {r.returncode}): {last}")
    return r.stdout


def watch(name: str, run_id: str, pending: float | None = None, poll: float = POLL_SECONDS,
          say=print) -> tuple[str, str]:
    """Until the MPIJob NAME ends or a worker's status fails it (judge); the verdict and its line."""
    pending = float(os.environ.get(PENDING_ENV, PENDING_SECONDS)) if pending is None else pending
    last = None
    while True:
        pods = json.loads(kubectl("get", "pods", "-l", f"xeontl/run-id={run_id}", "-o", "json")).get("items", [])
        job = json.loads(kubectl("get", "mpijob", name, "-o", "json"))
        state, why = judge(pods, job, time.time(), pending)
        if state != "running":
            return state, why
        phases = ", ".join(f"{p['metadata']['name']} {(p.get('status') or {}).get('phase', '?')}"
                           for p in sorted(pods, key=lambda p: p["metadata"]["name"]))
        if phases != last:
            say(f"xeontl: {phases or 'no pods yet'}")
            last = phases
        time.sleep(poll)


def reproduce(opts, render) -> int:
    """Render (RENDER(opts) -> the manifest's path), apply, watch; 0 when the MPIJob succeeded, else one line."""
    import yaml

    if opts.dry_run:  # the manifest and what it needs, nothing applied
        render(opts)
        return 0
    if not shutil.which("kubectl"):
        raise UserError("--engine k8s runs the MPIJob with kubectl, which is not on PATH (invoke render --engine k8s "
                        "writes the manifest alone)")
    path = render(opts)
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    job = next(d for d in docs if d["kind"] == "MPIJob")
    name, run_id = job["metadata"]["name"], job["metadata"]["labels"]["xeontl/run-id"]
    kubectl("apply", "-f", str(path))
    print(f"xeontl: applied {path}: MPIJob {name}; watching its pods (a worker Pending beyond "
          f"{os.environ.get(PENDING_ENV, PENDING_SECONDS)} s or Failed ends it)", flush=True)
    state, why = watch(name, run_id)
    if state == "succeeded":
        print(f"xeontl: {why} (the run dir is on the results claim)")
        return 0
    subprocess.run(["kubectl", "delete", "mpijob", name, "--wait=false"], capture_output=True, timeout=120)
    raise RunError(f"{why} (MPIJob {name} deleted; the run dir, if any, stays on the results claim)")
