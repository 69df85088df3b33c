"""`invoke reproduce --engine k8s`: the MPIJob rendered (kubernetes.render), applied with `kubectl apply`, and
watched through the API server with `kubectl get -o json` (the user's kubectl and kubeconfig: no client library, no
credentials of ours) until the operator ends it, or until a worker pod shows what the operator never acts on:

- a worker pod Failed (the kubelet's admission refusing it: TopologyAffinityError, SMTAlignmentError,
  UnexpectedAdmissionError, OutOfcpu...; or Evicted). The operator (kubeflow/mpi-operator v0.8.2,
  pkg/controller/mpi_job_controller.go) fails the job only when a worker is Evicted, recreates only missing pods, and
  with launcherCreationPolicy WaitForWorkersReady creates no launcher while a worker is not Ready: the job would wait
  for ever. Ends within one poll (POLL_SECONDS) of the pod's status;
- a pod (worker or launcher) stuck for more than PENDING_SECONDS (XEONTL_K8S_PENDING_SECONDS, default 900: room for
  a first pull of the image on every node): Pending since its creation (unscheduled, or its containers not started:
  ContainerCreating on a volume it cannot attach, ImagePullBackOff), Terminating since its deletion (its node lost:
  the launcher Job's PodReplacementPolicy Failed waits for the old pod to be gone), Running but not Ready since the
  Ready condition's last change (sshd silent, node NotReady): ends within PENDING_SECONDS + POLL_SECONDS;
- the workers on more or fewer distinct nodes than the layout's (the MPIJob's xeontl/nodes label);
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
from xeontl.engines import k8s_cpu, k8s_nodes

PENDING_ENV, PENDING_SECONDS, POLL_SECONDS = "XEONTL_K8S_PENDING_SECONDS", 900, 5
# kubectl itself failing (an API server restarting, a network blip, a kubectl hanging past KUBECTL_SECONDS): retried
# until GET_RETRY_SECONDS pass without one answer, then the watch ends failed in one line.
KUBECTL_SECONDS, GET_RETRY_SECONDS = 60, 300
NODES_LABEL = "xeontl/nodes"  # kubernetes.NODES_LABEL: the nodes the workers must span


def pending_seconds(env: dict | None = None) -> float:
    """XEONTL_K8S_PENDING_SECONDS: a positive, finite number of seconds, or one line."""
    import math

    text = (os.environ if env is None else env).get(PENDING_ENV)
    if text is None:
        return float(PENDING_SECONDS)
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value) or value <= 0:
        raise UserError(f"{PENDING_ENV}={text!r}: must be a positive number of seconds (default {PENDING_SECONDS})")
    return value


def _when(stamp: str | None) -> float | None:
    if not stamp:
        return None
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).astimezone(timezone.utc).timestamp()


def _age(pod: dict, now: float) -> float:
    created = _when(pod.get("metadata", {}).get("creationTimestamp"))
    return 0.0 if created is None else now - created


def _waiting(pod: dict) -> str | None:
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        w = (c.get("state") or {}).get("waiting")
        if w:
            return f"{w.get('reason', 'Waiting')}" + (f": {w['message']}" if w.get("message") else "")
    return None


def _terminated(pod: dict) -> str | None:
    """A failed container's own last words: its termination message (the line a worker's CPU check wrote, kept by
    terminationMessagePolicy FallbackToLogsOnError), else its reason and exit code."""
    for c in (pod.get("status") or {}).get("containerStatuses") or []:
        t = (c.get("state") or {}).get("terminated")
        if t and t.get("exitCode"):
            said = [ln.strip() for ln in (t.get("message") or "").splitlines() if ln.strip()]
            return said[-1].removeprefix("xeontl: error: ") if said else f"{t.get('reason', 'Error')} (exit " \
                                                                          f"{t['exitCode']})"
    return None


def _stuck(pod: dict, now: float, pending: float) -> str | None:
    """Why POD has been in a state the operator never acts on for more than PENDING seconds, or None: Pending
    (unscheduled, or its containers never started), Terminating (deleted, its node lost: the kubelet never confirms),
    or Running but not Ready (its sshd silent, its node NotReady)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    deleted = _when(meta.get("deletionTimestamp"))
    if deleted is not None and now - deleted > pending:
        return f"Terminating for more than {pending:.0f} s (its node lost? the kubelet never confirmed the deletion)"
    if status.get("phase") == "Pending" and _age(pod, now) > pending:
        cond = next((c for c in status.get("conditions") or [] if c.get("type") == "PodScheduled"
                     and c.get("status") == "False"), None)
        why = (f"{cond.get('reason', 'Unschedulable')}: {cond.get('message', '')}".rstrip(": ") if cond
               else _waiting(pod) or "no reason given")
        return f"Pending for more than {pending:.0f} s: {why}" + (k8s_cpu.hint(pod) if cond else "")
    if status.get("phase") == "Running":
        ready = next((c for c in status.get("conditions") or [] if c.get("type") == "Ready"), None)
        if ready is not None and ready.get("status") != "True":
            since = _when(ready.get("lastTransitionTime"))
            if (now - since if since is not None else _age(pod, now)) > pending:
                return (f"Running but not Ready for more than {pending:.0f} s"
                        + (f": {ready['reason']}" if ready.get("reason") else "")
                        + (f": {ready['message']}" if ready.get("message") else ""))
    return None


def judge(pods: list[dict], job: dict | None, now: float, pending: float, started: float | None = None
          ) -> tuple[str, str]:
    """("running" | "succeeded" | "failed", why) from the run's pods (kubectl get pods -o json's items) and its
    MPIJob; NOW in epoch seconds, PENDING the bound on a pod stuck where the operator never acts, and on worker pods
    that do not exist that long after the MPIJob's creation (or STARTED, the watch's start, if it shows none): the
    operator creates none while the job is Suspended (Kueue), stops at the first Create a ResourceQuota refuses, and
    a cluster without a running operator creates nothing. The MPIJob's own terminal condition wins (cleanPodPolicy
    leaves pods behind whatever they show)."""
    for cond in ((job or {}).get("status") or {}).get("conditions") or []:
        if cond.get("status") == "True" and cond.get("type") in ("Succeeded", "Failed"):
            state = cond["type"].lower()
            return state, f"MPIJob {job['metadata']['name']} {cond['type']}: {cond.get('reason', '')}: " \
                          f"{cond.get('message', '')}".rstrip(": ")
    workers = []
    for pod in sorted(pods, key=lambda p: p["metadata"]["name"]):
        name = pod["metadata"]["name"]
        role = (pod["metadata"].get("labels") or {}).get("xeontl/role")
        status = pod.get("status") or {}
        if role not in ("worker", "launcher"):
            continue
        if role == "worker" and status.get("phase") == "Failed":
            reason, message = status.get("reason"), status.get("message")
            why = (reason + (f": {message}" if message else "") if reason  # the kubelet's: admission, eviction
                   else _terminated(pod) or message or "no reason given")  # else its container's own
            return "failed", f"worker pod {name} Failed: {why}"
        why = _stuck(pod, now, pending)
        if why:
            return "failed", f"{role} pod {name} {why}"
        if role == "worker":
            workers.append(pod)
    replicas = (((job or {}).get("spec") or {}).get("mpiReplicaSpecs", {}).get("Worker") or {}).get("replicas")
    created = _when(((job or {}).get("metadata") or {}).get("creationTimestamp")) or started
    made = len(workers)  # every worker pod: one Failed or stuck has ended the judgement above
    if replicas and made < int(replicas) and created is not None and now - created > pending:
        held = next((f": {c.get('type')}: {c.get('reason', '')} {c.get('message', '')}".rstrip() for c in
                     ((job or {}).get("status") or {}).get("conditions") or []
                     if c.get("type") == "Suspended" and c.get("status") == "True"), "")
        return "failed", (f"MPIJob {job['metadata']['name']}: {made} of {replicas} worker pods exist {pending:.0f} s "
                          f"after its creation{held} (the MPI Operator creates them: is it running? a ResourceQuota "
                          f"refusing them shows in kubectl get events)")
    want = ((job or {}).get("metadata", {}).get("labels") or {}).get(NODES_LABEL)
    placed = {(p.get("spec") or {}).get("nodeName") for p in workers}
    every = not replicas or made == int(replicas)  # the node count of some workers says nothing yet
    if want and workers and every and None not in placed and "" not in placed and len(placed) != int(want):
        # the spread constraint fills every eligible node before doubling up: more eligible nodes than --nodes
        return "failed", (f"worker pods on {len(placed)} nodes ({', '.join(sorted(placed))}), the layout is "
                          f"{want}: name exactly {want} nodes with --node-selector (the rendered spread places a "
                          f"worker on every eligible node before a second on any)")
    return "running", ""


def kubectl(*args: str) -> str:
    """kubectl ARGS' output, or RunError in one line (its last line; a kubectl that hangs past KUBECTL_SECONDS)."""
    try:
        r = subprocess.run(["kubectl", *args], capture_output=True, text=True, timeout=KUBECTL_SECONDS)
    except subprocess.TimeoutExpired:
        raise RunError(f"kubectl {' '.join(args[:2])} did not answer within {KUBECTL_SECONDS} s") from None
    if r.returncode != 0:
        last = ((r.stderr or r.stdout).strip().splitlines() or ["no output"])[-1]
        raise RunError(f"kubectl {' '.join(args[:2])} failed (exit {r.returncode}): {last}")
    return r.stdout


def watch(name: str, run_id: str, pending: float | None = None, poll: float = POLL_SECONDS,
          say=print, get=kubectl, clock=time.time, sleep=time.sleep,
          retry: float = GET_RETRY_SECONDS) -> tuple[str, str]:
    """Until the MPIJob NAME ends or a pod's status fails it (judge); the verdict and its line. A kubectl that fails
    or hangs is asked again until RETRY seconds pass with no answer (GET, CLOCK, SLEEP: the tests')."""
    pending = pending_seconds() if pending is None else pending
    last, answered = None, clock()
    started = answered
    while True:
        try:
            pods = json.loads(get("get", "pods", "-l", f"xeontl/run-id={run_id}", "-o", "json")).get("items", [])
            job = json.loads(get("get", "mpijob", name, "-o", "json"))
        except (RunError, ValueError) as e:
            if clock() - answered > retry:
                return "failed", f"no answer from the API server for {retry:.0f} s: {e}"
            say(f"xeontl: {e} (asking again)")
            sleep(poll)
            continue
        answered = clock()
        state, why = judge(pods, job, clock(), pending, started)
        if state != "running":
            return state, why
        phases = ", ".join(f"{p['metadata']['name']} {(p.get('status') or {}).get('phase', '?')}"
                           for p in sorted(pods, key=lambda p: p["metadata"]["name"]))
        if phases != last:
            say(f"xeontl: {phases or 'no pods yet'}")
            last = phases
        sleep(poll)


def check_nodes(job: dict, get=kubectl, say=print) -> None:
    """Before anything is applied: the cluster's nodes (kubectl get nodes) can give the MPIJob's layout
    (k8s_nodes.layout_problem), or UserError in one line. A user who may not list nodes (RBAC) is told that the
    placement is then checked once the workers are placed (judge)."""
    worker = job["spec"]["mpiReplicaSpecs"]["Worker"]
    count = int(job["metadata"]["labels"][NODES_LABEL])
    try:
        nodes = json.loads(get("get", "nodes", "-o", "json"))["items"]
        if not isinstance(nodes, list) or not all(isinstance(n, dict) for n in nodes):
            raise ValueError(f"not a NodeList: items {type(nodes).__name__}")
    except (RunError, ValueError, KeyError, TypeError) as e:
        say(f"xeontl: the cluster's nodes were not read ({e}): the workers' nodes are checked once they are placed")
        return
    problem = k8s_nodes.layout_problem(worker["template"]["spec"], nodes, count, worker["replicas"] // count)
    if problem:
        raise UserError(f"--nodes {count}: {problem}; nothing applied")


def reproduce(opts, render, get=kubectl, run=subprocess.run) -> int:
    """Render (RENDER(opts) -> the manifest's path), apply, watch; 0 when the MPIJob succeeded, else one line. The
    MPIJob is deleted on every other way out (failed, kubectl unanswering, interrupted): nothing left running."""
    import yaml

    if opts.dry_run:  # the manifest and what it needs, nothing applied
        render(opts)
        return 0
    if not shutil.which("kubectl"):
        raise UserError("--engine k8s runs the MPIJob with kubectl, which is not on PATH (invoke render --engine k8s "
                        "writes the manifest alone)")
    pending = pending_seconds()  # before anything is applied
    path = render(opts)
    docs = [d for d in yaml.safe_load_all(path.read_text()) if d]
    job = next(d for d in docs if d["kind"] == "MPIJob")
    name, run_id = job["metadata"]["name"], job["metadata"]["labels"]["xeontl/run-id"]
    try:
        check_nodes(job, get)
    except UserError:
        path.unlink()  # render's, just written: nothing of a run that never was
        raise
    objects = [(d["kind"], d["metadata"]["name"]) for d in docs][::-1]  # deleted MPIJob first: it reads the ConfigMap
    state, why = "failed", "interrupted"
    try:
        get("apply", "-f", str(path))
        print(f"xeontl: applied {path}: MPIJob {name}; watching its pods (a pod stuck beyond {pending:.0f} s, worker "
              f"pods missing as long, or a worker Failed ends it)", flush=True)
        state, why = watch(name, run_id, pending, get=get)
    except RunError as e:
        why = str(e)
    finally:
        if state != "succeeded":  # whatever the apply made: the MPIJob (its pods with it) and its ConfigMap
            left = []
            for kind, obj in objects:
                try:
                    r = run(["kubectl", "delete", kind.lower(), obj, "--wait=false", "--ignore-not-found"],
                            capture_output=True, text=True, timeout=KUBECTL_SECONDS)
                    # a kind the API server does not know (no MPI Operator's CRD): nothing of it was ever made
                    if getattr(r, "returncode", 0) and "have a resource type" not in (getattr(r, "stderr", "") or ""):
                        left.append(f"{kind} {obj}")
                except (OSError, subprocess.TimeoutExpired):
                    left.append(f"{kind} {obj}")
            gone = (f"{', '.join(f'{k} {o}' for k, o in objects)} deleted" if not left else
                    f"NOT deleted: {', '.join(left)} (kubectl delete ...)")
    if state == "succeeded":
        print(f"xeontl: {why} (the run dir is on the results claim)")
        return 0
    raise RunError(f"{why} ({gone}; the run dir, if any, stays on the results claim)")
