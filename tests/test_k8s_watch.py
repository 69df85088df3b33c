"""The Kubernetes run's bounds, as tables: the launcher's watchdog (a fake clock, beat files with set mtimes), the
watch of `invoke reproduce --engine k8s` (pods and MPIJobs as the API server returns them, a kubectl that fails or
hangs), the results claim's write check, and render's input and sizing checks (headroom for DaemonSets, the assets a
profile reads, the reserved set)."""

import json
import os
import time
from datetime import datetime, timezone
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, SPR, invoke, one_line_error, scaled
from xeontl.common.errors import RunError, UserError
from xeontl.engines import k8s_watch
from xeontl.engines import kubernetes as k8s
from xeontl.engines import mpijob_launcher as ml

T0 = 2_000_000_000.0


# ------------------------------------------------------------------------------------------------ the watchdog
class Clock:
    def __init__(self, now):
        self.now = now

    def __call__(self):
        return self.now


WATCHDOG = [  # (what, looks: [(seconds since the watchdog's start, {rank: its beat file's mtime, as seconds since
    #           the start; negative: an earlier attempt's})], stalled at the last look?); stall 10, first progress 30
    ("no beat yet, within the first-progress bound", [(29, {})], False),
    ("no beat ever: frozen in hvd.init or the model build", [(30, {})], True),
    ("an earlier attempt's beat only: not this run's", [(30, {0: -100})], True),
    ("an earlier attempt's beat, within the first-progress bound", [(5, {0: -100})], False),
    ("the files touched when made, the first step's graph still building", [(3, {0: 2, 1: 2}), (29, {0: 2, 1: 2})],
     False),
    ("an earlier attempt's file, then this attempt's rank touching it when made: no progress yet",
     [(1, {0: -100}), (3, {0: 2}), (25, {0: 2})], False),
    ("touched when made, never progressed", [(3, {0: 2}), (30, {0: 2})], True),
    ("progressed, a beat 9 s ago", [(3, {0: 2}), (41, {0: 40}), (49, {0: 40})], False),
    ("progressed, the last beat 10 s ago", [(3, {0: 2}), (41, {0: 40}), (50, {0: 40})], True),
    ("the newest rank counts", [(3, {0: 2, 1: 2}), (46, {0: 5, 1: 45}), (50, {0: 5, 1: 45})], False),
]


@pytest.mark.parametrize("what, looks, stalled", WATCHDOG, ids=[w[0] for w in WATCHDOG])
def test_the_watchdog_times_a_stall_from_its_start_and_this_attempts_beats(tmp_path, what, looks, stalled):
    (tmp_path / "heartbeat").mkdir()
    clock = Clock(T0)
    dog = ml.Watchdog(tmp_path, tmp_path / "hostfile", stall=10, clock=clock, first=30)
    for after, beats in looks:
        for rank, at in beats.items():
            p = tmp_path / "heartbeat" / f"rank-{rank}"
            p.touch()
            os.utime(p, (T0 + at, T0 + at))
        clock.now = T0 + after
        got = dog.stalled()
    assert got is stalled


class Proc:
    pid = 4242

    def __init__(self):
        self.polls = 0

    def poll(self):
        self.polls += 1
        return None if self.polls < 50 else 0


@pytest.mark.parametrize("answers, node, rank", [
    ({"w0": None, "w1": "does not answer on port 2222 (TimeoutError)"}, "w1", 2),
    ({"w0": None, "w1": None}, None, None)])
def test_the_watchdog_stops_mpirun_and_names_the_silent_worker(tmp_path, monkeypatch, answers, node, rank):
    """No rank ever beats: the watchdog fires at the first-beat bound (not never, as when it waited for a first
    beat), names the worker whose sshd is silent with its ranks, and stops mpirun's session."""
    (tmp_path / "hostfile").write_text("w0 slots=2\nw1 slots=2\n")
    killed = []
    monkeypatch.setattr(ml, "sshd_answers", lambda host: answers[host])
    monkeypatch.setattr(ml.guard, "kill_session", lambda pid, sig: killed.append(pid))
    clock = Clock(T0)
    monkeypatch.setattr(time, "sleep", lambda s: setattr(clock, "now", clock.now + s))
    dog = ml.Watchdog(tmp_path, tmp_path / "hostfile", stall=10, every=2, clock=clock, first=30)
    dog(Proc())
    assert killed == [4242, 4242] and 30 <= clock.now - T0 <= 40
    assert dog.lost.get("node") == node and dog.lost.get("rank") == rank and "no rank progressed" in dog.lost["why"]


# How a worker that stops answering looks to the watchdog's probe, over real sockets on 127.0.0.1 (the MPIJob runs
# in test_k8s_run freeze one end to end; a worker cut off the network is this probe's first row: the headless
# Service drops its name, getaddrinfo fails). (name, server: what the port does, words the probe says; None: healthy)
def _serve(behaviour):
    import socket
    import threading

    srv = socket.socket()
    srv.bind(("127.0.0.1", 0))
    port = srv.getsockname()[1]
    if behaviour == "closed":
        srv.close()
        return port, None
    srv.listen(4)

    def loop():
        while True:
            try:
                conn, _ = srv.accept()
            except OSError:
                return
            if behaviour != "silent":
                conn.sendall(b"SSH-2.0-OpenSSH_9.2p1 Debian-2\r\n" if behaviour == "sshd" else b"HTTP/1.1 400 Bad\r\n")
            threading.Event().wait(3) if behaviour == "silent" else conn.close()
    threading.Thread(target=loop, daemon=True).start()
    return port, srv


@pytest.mark.parametrize("name,host,behaviour,words", [
    ("cut off: the name is gone", "xeontl-x-worker-1.xeontl-x.invalid", "sshd", "does not resolve"),
    ("frozen: the port is open, nothing answers", "127.0.0.1", "silent", "does not answer on port"),
    ("no sshd: the port is closed", "127.0.0.1", "closed", "ConnectionRefusedError"),
    ("another server on the port", "127.0.0.1", "http", "answers, but not as sshd"),
    ("a healthy worker", "127.0.0.1", "sshd", None),
])
def test_the_watchdogs_probe_says_how_a_worker_stopped_answering(name, host, behaviour, words):
    port, srv = _serve(behaviour)
    try:
        why = ml.sshd_answers(host, port=port, timeout=1.0)
    finally:
        if srv:
            srv.close()
    assert (why is None) if words is None else (words in why), why


# ------------------------------------------------------------------------------------------------ the watch
def stamp(ago):
    return datetime.fromtimestamp(T0 - ago, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod(name, phase, role="worker", age=0.0, node=None, ready=None, deleted=None, **status):
    meta = {"name": name, "labels": {"xeontl/role": role}, "creationTimestamp": stamp(age)}
    if deleted is not None:
        meta["deletionTimestamp"] = stamp(deleted)
    if ready is not None:  # (status, seconds since it last changed)
        status.setdefault("conditions", []).append({"type": "Ready", "status": ready[0],
                                                    "lastTransitionTime": stamp(ready[1])})
    return {"metadata": meta, "spec": {"nodeName": node} if node else {}, "status": {"phase": phase, **status}}


def job(nodes=None, cond=None, replicas=None, age=None, reason=None):
    """An MPIJob as the API server returns it: its layout label, its workers' replicas, its age (seconds before T0),
    a condition of the operator's (reason MPIJob<cond> unless REASON)."""
    labels = {"xeontl/nodes": str(nodes)} if nodes else {}
    meta = {"name": "j", "labels": labels, **({"creationTimestamp": stamp(age)} if age is not None else {})}
    return {"metadata": meta, **({"spec": {"mpiReplicaSpecs": {"Worker": {"replicas": replicas}}}} if replicas else {}),
            "status": {"conditions": [{"type": cond, "status": "True", "reason": reason or f"MPIJob{cond}"}]
                       if cond else []}}


def paper_worker(name, phase, **status):
    """A worker pod of the paper stack's manifest (k8s_cpu.require: NFD's AVX512F label required, the CPU checked at
    start)."""
    from xeontl.engines import k8s_cpu
    from xeontl.supply.stacks import STACKS

    p = pod(name, phase, **status)
    p["spec"] = {"containers": [{"name": "worker", "command": ["xeontl-entrypoint", "node"]}]}
    k8s_cpu.require(p["spec"], STACKS["paper"])
    return p


CHECK_LINE = ("xeontl: error: --stack paper: the node of this worker lacks avx512f, without which "
              "intel-tensorflow-avx512 2.10.0 aborts on import; nothing was run")
NO_NODE = {"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
           "message": "0/3 nodes are available: 3 node(s) didn't match Pod's node affinity/selector."}


def terminated(code, reason="Error", message=None):
    return [{"name": "worker", "state": {"terminated": {"exitCode": code, "reason": reason,
                                                        **({"message": message} if message else {})}}}]


JUDGE = [  # (what, pods, MPIJob, verdict, words); the bound 600 s
    # the paper stack on a node without AVX-512: its check's line (the container's termination message), or the pod
    # no node takes, named by the flag it needs, not the scheduler's words alone
    ("a paper-stack worker on a node without avx512f",
     [paper_worker("j-worker-0", "Failed", containerStatuses=terminated(2, message=CHECK_LINE + "\n"))], job(),
     "failed", "worker pod j-worker-0 Failed: --stack paper: the node of this worker lacks avx512f, without which"),
    ("a paper-stack worker no node takes, beyond the bound",
     [paper_worker("j-worker-0", "Pending", age=601, conditions=[NO_NODE])], job(), "failed",
     "worker pod j-worker-0 Pending for more than 600 s: Unschedulable: 0/3 nodes are available: 3 node(s) didn't "
     "match Pod's node affinity/selector. (it needs a node whose CPU has avx512f: labelled "
     "feature.node.kubernetes.io/cpu-cpuid.AVX512F=true by Node Feature Discovery, or by hand"),
    ("a paper-stack worker no node takes yet", [paper_worker("j-worker-0", "Pending", age=30, conditions=[NO_NODE])],
     job(), "running", ""),
    ("a worker whose container failed, no message", [pod("j-worker-0", "Failed", containerStatuses=terminated(137))],
     job(), "failed", "worker pod j-worker-0 Failed: Error (exit 137)"),
    ("the kubelet's reason first", [pod("j-worker-0", "Failed", reason="OutOfcpu", message="Node didn't have enough",
                                        containerStatuses=terminated(2, message=CHECK_LINE))], job(), "failed",
     "worker pod j-worker-0 Failed: OutOfcpu: Node didn't have enough"),
    ("(A) a worker Running, not Ready beyond the bound, no launcher",
     [pod("j-worker-0", "Running", ready=("False", 601), age=2000)], job(), "failed",
     "worker pod j-worker-0 Running but not Ready for more than 600 s"),
    ("a worker not Ready for a while", [pod("j-worker-0", "Running", ready=("False", 30), age=2000)], job(),
     "running", ""),
    ("(B) a worker Terminating on a lost node", [pod("j-worker-1", "Running", deleted=601, ready=("True", 900))],
     job(), "failed", "worker pod j-worker-1 Terminating for more than 600 s"),
    ("a worker being deleted", [pod("j-worker-1", "Running", deleted=30)], job(), "running", ""),
    ("(C) the launcher Terminating on a lost node", [pod("j-launcher-x", "Running", role="launcher", deleted=700)],
     job(), "failed", "launcher pod j-launcher-x Terminating"),
    ("the launcher not Ready (its node NotReady)",
     [pod("j-launcher-x", "Running", role="launcher", ready=("False", 601))], job(), "failed",
     "launcher pod j-launcher-x Running but not Ready"),
    ("the launcher Pending beyond the bound", [pod("j-launcher-x", "Pending", role="launcher", age=601)], job(),
     "failed", "launcher pod j-launcher-x Pending for more than 600 s"),
    ("a Succeeded job wins over a worker Failed after cleanPodPolicy",
     [pod("j-worker-0", "Failed", reason="Error")], job(cond="Succeeded"), "succeeded", "MPIJob j Succeeded"),
    ("a Failed job wins too", [pod("j-worker-0", "Running")], job(cond="Failed"), "failed", "MPIJob j Failed"),
    ("workers spread over 3 nodes for a 2-node layout",
     [pod(f"j-worker-{i}", "Running", node=f"n{i % 3}") for i in range(4)], job(nodes=2), "failed",
     "worker pods on 3 nodes (n0, n1, n2), the layout is 2"),
    ("workers on the layout's 2 nodes", [pod(f"j-worker-{i}", "Running", node=f"n{i % 2}") for i in range(4)],
     job(nodes=2), "running", ""),
    ("a worker not yet scheduled", [pod("j-worker-0", "Running", node="n0"), pod("j-worker-1", "Pending")],
     job(nodes=2), "running", ""),
    ("three placed on the layout's 2 nodes, the fourth not yet scheduled: no verdict on the nodes yet",
     [*(pod(f"j-worker-{i}", "Running", node=f"n{i % 2}") for i in range(3)), pod("j-worker-3", "Pending")],
     job(nodes=2, replicas=4), "running", ""),
    ("every worker on one node for a 2-node layout (a user who may not list nodes)",
     [pod(f"j-worker-{i}", "Running", node="n0") for i in range(4)], job(nodes=2, replicas=4), "failed",
     "worker pods on 1 nodes (n0), the layout is 2"),
    ("two of four workers created, their nodes not the verdict yet", [pod(f"j-worker-{i}", "Running", node=f"n{i}")
                                                                      for i in range(2)],
     job(nodes=2, replicas=4, age=30), "running", ""),
    ("one of four workers created: one node says nothing of the layout", [pod("j-worker-0", "Running", node="n0")],
     job(nodes=2, replicas=4, age=30), "running", ""),
    ("two of four workers created beyond the bound (a ResourceQuota refusing the rest)",
     [pod(f"j-worker-{i}", "Running", node=f"n{i}") for i in range(2)], job(nodes=2, replicas=4, age=601), "failed",
     "MPIJob j: 2 of 4 worker pods exist 600 s after its creation (the MPI Operator creates them: is it running?"),
    ("three of four workers created beyond the bound", [pod(f"j-worker-{i}", "Running", node=f"n{i % 2}")
                                                        for i in range(3)], job(nodes=2, replicas=4, age=601),
     "failed", "MPIJob j: 3 of 4 worker pods exist 600 s after its creation"),
    ("a worker whose Ready is Unknown (its node unreachable) beyond the bound",
     [pod("j-worker-0", "Running", ready=("Unknown", 601), age=2000)], job(), "failed",
     "worker pod j-worker-0 Running but not Ready for more than 600 s"),
    ("no pods beyond the bound (no operator running)", [], job(nodes=2, replicas=4, age=601), "failed",
     "MPIJob j: 0 of 4 worker pods exist 600 s after its creation (the MPI Operator"),
    ("suspended (Kueue) beyond the bound, named", [], job(nodes=2, replicas=4, age=601, cond="Suspended",
                                                          reason="MPIJobSuspended"), "failed",
     "MPIJob j: 0 of 4 worker pods exist 600 s after its creation: Suspended: MPIJobSuspended"),
    ("no pods yet, within the bound", [], job(nodes=2, replicas=4, age=599), "running", ""),
]


@pytest.mark.parametrize("what, pods, mpijob, state, words", JUDGE, ids=[j[0] for j in JUDGE])
def test_the_watch_bounds_every_state_the_operator_never_acts_on(what, pods, mpijob, state, words):
    got, why = k8s_watch.judge(pods, mpijob, T0, 600)
    assert (got, words in why, "\n" in why) == (state, True, False), why


def test_an_mpijob_that_shows_no_creation_time_is_bounded_from_the_watchs_start():
    assert k8s_watch.judge([], job(replicas=2), T0, 600, started=T0 - 599)[0] == "running"
    assert k8s_watch.judge([], job(replicas=2), T0, 600, started=T0 - 601)[0] == "failed"


class Api:
    """kubectl as the tests' API server: SCRIPT is what each `get` answers in turn (an exception is raised)."""

    def __init__(self, script, nodes=({"metadata": {"name": "n1", "labels": {"kubernetes.io/hostname": "n1"}},
                                       "status": {"allocatable": {"cpu": "4", "memory": "8Gi"}}},)):
        self.script, self.calls, self.now, self.nodes = list(script), [], T0, list(nodes)

    def get(self, *args):
        self.calls.append(args)
        if args[0] != "get":
            return ""
        if args[1] == "nodes":
            return json.dumps({"kind": "NodeList", "items": self.nodes})
        answer = self.script.pop(0) if len(self.script) > 1 else self.script[0]
        if isinstance(answer, BaseException):
            raise answer
        return json.dumps(answer if args[1] == "mpijob" else {"items": []})

    def sleep(self, s):
        self.now += s


@pytest.mark.parametrize("script, state, words", [
    ([RunError("kubectl get pods failed (exit 1): connection refused"), ValueError("half a JSON"),
      job(cond="Succeeded")], "succeeded", "MPIJob j Succeeded"),
    ([RunError("kubectl get pods did not answer within 60 s")], "failed",
     "no answer from the API server for 300 s: kubectl get pods did not answer"),
])
def test_the_watch_asks_again_within_its_bound(script, state, words):
    api = Api(script)
    said = []
    got, why = k8s_watch.watch("j", "r", 600, poll=5, say=said.append, get=api.get, clock=lambda: api.now,
                               sleep=api.sleep)
    assert (got, words in why) == (state, True), why
    assert api.now - T0 <= 300 + 2 * 5


def test_a_hanging_kubectl_is_one_line(tmp_path, monkeypatch):
    (tmp_path / "kubectl").write_text("#!/bin/sh\nsleep 30\n")
    (tmp_path / "kubectl").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setattr(k8s_watch, "KUBECTL_SECONDS", 1)
    with pytest.raises(RunError, match="kubectl get pods did not answer within 1 s"):
        k8s_watch.kubectl("get", "pods")


def test_the_watch_bounds_silence_from_the_last_answer_not_from_its_start():
    """Ten minutes of answers, then one kubectl that fails: asked again, not the end of the run."""
    api = Api([job()] * 240 + [RunError("kubectl get pods failed (exit 1): connection refused"),
                               job(cond="Succeeded")])
    state, why = k8s_watch.watch("j", "r", 600, get=api.get, clock=lambda: api.now, sleep=api.sleep,
                                 say=lambda *a: None)
    assert state == "succeeded" and api.now - T0 > 600, (state, why)


@pytest.mark.parametrize("stderr, says", [
    ('error: the server doesn\'t have a resource type "mpijob"',
     "MPIJob xeontl-r, ConfigMap xeontl-r-config deleted"),
    ("error: You must be logged in to the server (Unauthorized)",
     "NOT deleted: MPIJob xeontl-r, ConfigMap xeontl-r-config (kubectl delete ...)")])
def test_what_could_not_be_deleted_is_named(tmp_path, monkeypatch, stderr, says):
    """An apply that failed (no MPI Operator CRD: the MPIJob kind unknown, nothing of it made) is not reported as an
    MPIJob left behind; a delete that failed is."""
    import subprocess

    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump_all([{"kind": "ConfigMap", "metadata": {"name": "xeontl-r-config"}}, {
        "kind": "MPIJob", "metadata": {"name": "xeontl-r", "labels": {"xeontl/run-id": "r", "xeontl/nodes": "1"}},
        "spec": {"mpiReplicaSpecs": {"Worker": {"replicas": 2, "template": {"spec": {"containers": [{"resources": {
            "requests": {"cpu": "1", "memory": "1Gi"}}}]}}}}}}]))
    monkeypatch.setattr(k8s_watch.shutil, "which", lambda _: "/bin/kubectl")
    monkeypatch.delenv(k8s_watch.PENDING_ENV, raising=False)
    api = Api([job()])

    def get(*args):
        if args[0] == "apply":
            raise RunError('kubectl apply -f failed (exit 1): no matches for kind "MPIJob" in version '
                           '"kubeflow.org/v2beta1"')
        return api.get(*args)

    def run(cmd, **kw):  # the ConfigMap was made by the half-done apply and deletes, unless nothing does
        failed = "mpijob" in cmd or "Unauthorized" in stderr
        return subprocess.CompletedProcess(cmd, int(failed), "", stderr if failed else "")

    with pytest.raises(RunError) as e:
        k8s_watch.reproduce(type("O", (), {"dry_run": False})(), lambda o: manifest, get=get, run=run)
    assert says in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("answer, ends", [(KeyboardInterrupt(), KeyboardInterrupt),
                                          (job(cond="Failed"), RunError)])
def test_reproduce_deletes_the_mpijob_on_every_way_out(tmp_path, monkeypatch, answer, ends):
    manifest = tmp_path / "m.yaml"
    manifest.write_text(yaml.safe_dump_all([{"kind": "ConfigMap", "metadata": {"name": "xeontl-r-config"}}, {
        "kind": "MPIJob", "metadata": {"name": "xeontl-r", "labels": {
        "xeontl/run-id": "r", "xeontl/nodes": "1"}}, "spec": {"mpiReplicaSpecs": {"Worker": {
            "replicas": 2, "template": {"spec": {"containers": [{"resources": {"requests": {
                "cpu": "1", "memory": "1Gi"}}}]}}}}}}]))
    monkeypatch.setattr(k8s_watch.shutil, "which", lambda _: "/bin/kubectl")
    monkeypatch.setattr(k8s_watch.time, "sleep", lambda s: None)
    monkeypatch.delenv(k8s_watch.PENDING_ENV, raising=False)
    ran = []
    opts = type("O", (), {"dry_run": False})()
    with pytest.raises(ends) as e:
        k8s_watch.reproduce(opts, lambda o: manifest, get=Api([answer]).get, run=lambda cmd, **kw: ran.append(cmd))
    assert ran == [["kubectl", "delete", "mpijob", "xeontl-r", "--wait=false", "--ignore-not-found"],
                   ["kubectl", "delete", "configmap", "xeontl-r-config", "--wait=false", "--ignore-not-found"]]
    if ends is RunError:
        assert "MPIJob xeontl-r, ConfigMap xeontl-r-config deleted" in str(e.value) and "\n" not in str(e.value)


@pytest.mark.parametrize("value, seconds", [(None, 900.0), ("30", 30.0), ("abc", None), ("-1", None), ("0", None),
                                            ("nan", None), ("inf", None)])
def test_the_pending_bound_from_the_environment(value, seconds):
    env = {} if value is None else {k8s_watch.PENDING_ENV: value}
    if seconds is None:
        with pytest.raises(UserError, match=f"{k8s_watch.PENDING_ENV}=.*must be a positive number"):
            k8s_watch.pending_seconds(env)
    else:
        assert k8s_watch.pending_seconds(env) == seconds


# ------------------------------------------------------------------------------------------------ the claim
def test_the_claim_is_writable_as_the_kernel_says_unless_root(tmp_path):
    """Not root: the kernel's answer (os.access: an ACL or NFS may allow or refuse what the mode bits say); root: the
    mode bits as they apply to uid 0 (os.access says yes to root)."""
    claim = tmp_path / "claim"
    claim.mkdir()
    st = claim.stat()
    other = st.st_gid + 1
    cases = [  # (mode, uid, groups, the kernel's answer, writable)
        (0o755, 4242, {other}, True, True),  # a POSIX ACL grants uid 4242: the mode bits would refuse
        (0o777, 4242, {other}, False, False),  # NFS refuses (read-only export, squashed ids): the bits would allow
        (0o755, 0, {other}, True, st.st_uid == 0),  # root: the bits, as owner if it owns the root
        (0o757, 0, {other}, True, True), (0o775, 0, {st.st_gid}, False, True), (0o555, 0, {other}, True, False),
    ]
    for mode, uid, gids, kernel, ok in cases:
        claim.chmod(mode)
        asked = []

        def access(path, how, kernel=kernel, asked=asked):
            asked.append(how)
            return kernel

        if ok:
            ml.writable(claim, uid, gids, access=access)
        else:
            with pytest.raises(UserError, match="not writable by uid"):
                ml.writable(claim, uid, gids, access=access)
        assert asked == ([os.W_OK | os.X_OK] if uid else []), (mode, uid)


# ------------------------------------------------------------------------------------------------ render's input
def render(tmp_path, *args):
    out = tmp_path / f"job-{len(list(tmp_path.iterdir()))}.yaml"
    return out, invoke("render", "--engine", "k8s", "--topology", str(SPR), "--output", str(out), *args,
                            timeout=scaled(120))


@pytest.mark.parametrize("args, needle", [
    (("--kube-version", "1.2", "--assets-claim", "a"), ("--kube-version '1.2': must be a Kubernetes version whose",)),
    (("--kube-version", "abc", "--assets-claim", "a"), ("--kube-version 'abc': must be a Kubernetes version MAJOR",)),
    (("--node-selector", "a=b,a=c", "--assets-claim", "a"), ("label key 'a' given twice (a=b, a=c)",)),
    (("--node-selector", "kubernetes.io/arch=arm64", "--assets-claim", "a"),
     ("kubernetes.io/arch=arm64: the image runs on kubernetes.io/arch=amd64 only",)),
    (("--daemonset-cpus", "lots", "--assets-claim", "a"), ("--daemonset-cpus 'lots': must be a CPU quantity",)),
    (("--daemonset-cpus", "3", "--cores-per-socket", "55", "--assets-claim", "a"),
     ("2 worker pods of 110 CPUs leave 1.5 of the node's 222 allocatable CPUs", "less than --daemonset-cpus 3",
      "use --cores-per-socket 54 or fewer")),
    ((), ("profile paper reads weights savedmodel:assets/weights/resnet50_v1_5 and dataset tfds, which no pod can "
          "see: give --assets-claim",)),
])
def test_render_refuses_in_one_line(tmp_path, args, needle):
    out, r = render(tmp_path, *args)
    one_line_error(r, *needle)
    assert not out.exists()


def worker_cpus(text):
    docs = [d for d in yaml.safe_load_all(text) if d]
    job_ = next(d for d in docs if d["kind"] == "MPIJob")
    return int(job_["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["resources"][
        "requests"]["cpu"]), job_


@pytest.mark.parametrize("args, cpus, left", [
    ((), 110, "leaving 1.5 for DaemonSets' requests (--daemonset-cpus 0.5)"),
    (("--daemonset-cpus", "2"), 108, "leaving 5.5 for DaemonSets' requests (--daemonset-cpus 2)"),
    (("--daemonset-cpus", "1500m", "--sockets", "1", "--nodes", "1"), 110, "leaving 111.5 for"),
])
def test_render_leaves_room_for_daemonsets_and_says_so(tmp_path, args, cpus, left):
    out, r = render(tmp_path, "--assets-claim", "xeontl-assets", *args)
    assert r.returncode == 0, r.stderr
    got, job_ = worker_cpus(out.read_text())
    assert got == cpus and left in r.stdout
    assert job_["spec"]["runPolicy"]["activeDeadlineSeconds"] == 100 * k8s.EPOCH_SECONDS + k8s.SETUP_SECONDS
    assert "ReadOnlyMany (or ReadWriteMany) PVC xeontl-assets" in r.stdout


def test_a_reserved_set_of_one_hyperthread_takes_its_whole_core_and_the_harness_agrees(tmp_path):
    """--reserved-cpus 0 on the SPR node: CPU 112 (its sibling) stays in the shared pool, so core 0 is no whole free
    core (the static policy's available physical CPUs under full-pcpus-only): 55 cores a pod, and the harness's
    kubelet, reserving CPU 0 alone, places every worker without CPU 112."""
    import mpijob_harness as h

    out, r = render(tmp_path, "--nodes", "2", "--sockets", "2", "--reserved-cpus", "0", "--profile", "smoke")
    assert r.returncode == 0, r.stderr
    got, job_ = worker_cpus(out.read_text())
    assert got == 110
    claims = {"xeontl-results": h.ClaimSpec(tmp_path, ("ReadWriteMany",))}
    cluster = h.nodes(2, SPR, [0], [0], memory_gib={0: 256, 1: 256}, reserved_memory_gib={0: 2148 / 1024},
                      memory_reservation_gib=2148 / 1024)
    placed = h.plan(out, cluster, "restricted", claims).placed
    workers = {p: v for p, v in placed.items() if "-worker-" in p}
    assert len(workers) == 4 and all(0 not in v["cpus"] and 112 not in v["cpus"] for v in workers.values())


def test_the_reserved_memory_goes_to_the_reserved_cpus_numa_node(tmp_path):
    out, r = render(tmp_path, "--reserved-cpus", "56,168", "--assets-claim", "a")
    assert r.returncode == 0, r.stderr
    header = next(line for line in out.read_text().splitlines() if line.startswith("# kubelet on every node: "))
    assert "--reserved-memory=1:memory=2148Mi" in header.split() and "--reserved-cpus=56,168" in header.split()


def test_reproduce_on_k8s_takes_renders_options(tmp_path):
    """`invoke reproduce --engine k8s --dry-run` renders with the options `invoke render` takes (declared once in
    launch/options.py): node selector, assets claim, results claim, reserved CPUs, headroom."""
    r = invoke("reproduce", "--engine", "k8s", "--dry-run", "--nodes", "2", "--topology", str(SPR), "--profile",
               "paper", "--results-dir", str(tmp_path), "--node-selector", "pool=paper", "--assets-claim", "assets",
               "--results-claim", "res", "--reserved-cpus", "0,112", "--daemonset-cpus", "2", "--memory-per-rank", "4",
               timeout=scaled(300))
    assert r.returncode == 0, r.stderr
    manifest, = tmp_path.glob("*.mpijob.yaml")
    cpus, job_ = worker_cpus(manifest.read_text())
    worker = job_["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    claims = {v["persistentVolumeClaim"]["claimName"] for v in worker["volumes"] if "persistentVolumeClaim" in v}
    assert worker["nodeSelector"] == {**k8s.IMAGE_PLATFORM, "pool": "paper"}
    assert claims == {"res", "assets"} and cpus == 108
    assert worker["containers"][0]["resources"]["requests"]["memory"] == "4Gi"


def test_the_docs_name_the_bounds():
    text = (ROOT / "docs" / "engines.md").read_text()
    for words in ("XEONTL_FIRST_BEAT_SECONDS", "activeDeadlineSeconds", "--daemonset-cpus", "ReadOnlyMany",
                  "Running but not Ready", "Terminating"):
        assert words in text, words
    assert Path(k8s_watch.__file__).is_file()
