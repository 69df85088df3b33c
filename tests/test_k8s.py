"""Kubernetes: the plan rendered as a Kubeflow MPIJob, checked against the MPIJob CRD's published schema (vendored),
Kubernetes' own schemas (kubernetes-validate) and the rules the kubelet and admission hold pods to; bad variants
fail the check, and a pod no socket's allocatable share can hold is refused in one line."""

import copy
import json

import pytest
import yaml

from conftest import SPR, invoke, one_line_error
from xeontl.common.errors import UserError
from xeontl.engines import kubernetes as k8s
from xeontl.experiment import config
from xeontl.placement import plan as planlib
from xeontl.placement import topology


def spr_docs(nodes=2, sockets=2):
    topo = topology.load_file(SPR)
    cores, cpus = k8s.pod_cores(topo, k8s.default_reserved(topo))
    plan = planlib.make_plan(topo, sockets, cores_per_socket=cores, node_count=nodes, relative=True)
    return plan, k8s.manifest(plan, config.resolve("paper"), "20261125-000000-paper-2s-abcd", "registry/xeontl:1",
                              "xeontl-results", worker_cpus=cpus)


def job_of(docs):
    return next(d for d in docs if d["kind"] == "MPIJob")


def test_render_writes_an_mpijob_that_passes_every_check(tmp_path):
    out = tmp_path / "job.yaml"
    r = invoke("render", "--engine", "k8s", "--nodes", "2", "--sockets", "2", "--topology", str(SPR),
               "--image", "registry.example/xeontl:1", "--output", str(out), timeout=120)
    assert r.returncode == 0, r.stderr
    assert "MPIJob: kubeflow/mpi-operator v2beta1 CRD schema" in r.stdout and "kubernetes-validate" in r.stdout
    docs = list(yaml.safe_load_all(out.read_text()))
    cm, job = docs
    assert cm["kind"] == "ConfigMap" and json.loads(cm["data"]["config.json"]) == config.resolve("paper")
    spec = job["spec"]
    # a pod per socket, 4 in all: each one socket's share once the kubelet's reserved CPUs (0 and its sibling 112)
    # are out: 55 whole cores x 2 threads = 110 CPUs, which socket 0 and socket 1 can both hold
    assert job["apiVersion"] == "kubeflow.org/v2beta1" and spec["slotsPerWorker"] == 1
    assert spec["sshAuthMountPath"] == "/home/xeontl/.ssh" and spec["mpiReplicaSpecs"]["Worker"]["replicas"] == 4
    worker = spec["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    c = worker["containers"][0]
    assert c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": "110", "memory": "8Gi"}
    assert c["command"] == ["xeontl-entrypoint", "node"] and c["image"] == "registry.example/xeontl:1"
    assert {"name": "XEONTL_AUTHORIZED_KEYS", "value": "/home/xeontl/.ssh/authorized_keys"} in c["env"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"]}  # no SYS_NICE: the kubelet pins
    assert c["readinessProbe"]["tcpSocket"]["port"] == 2222
    assert worker["securityContext"]["fsGroup"] == 1000 and worker["securityContext"]["fsGroupChangePolicy"] == \
        "OnRootMismatch"
    assert worker["topologySpreadConstraints"][0]["topologyKey"] == "kubernetes.io/hostname"
    launcher = spec["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    cmd = launcher["command"]
    # the launcher pod's own step around its mpirun: it waits for the workers, runs it under a watchdog, settles,
    # records (provenance, report) and renames the run
    assert cmd[:5] == ["xeontl-entrypoint", "python", "-m", "xeontl", "k8s-launch"]
    mpirun = cmd[cmd.index("--") + 1:]
    assert mpirun[:3] == ["mpirun", "-np", "4"] and "-x" in mpirun and "KMP_AFFINITY" in mpirun
    for name in ("PATH", "PYTHONPATH", "XEONTL_HEARTBEAT"):  # the env reaches the ranks that ssh starts
        assert mpirun[mpirun.index(name) - 1] == "-x", name
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in launcher["env"] if "valueFrom" in e}
    assert fields == {"XEONTL_POD_NAME": "metadata.name", "XEONTL_POD_NAMESPACE": "metadata.namespace",
                      "XEONTL_NODE_NAME": "spec.nodeName"}
    env = {e["name"]: e["value"] for e in launcher["env"] if "value" in e}
    assert env["XEONTL_WORKER_WAIT_SECONDS"] == "600" and env["XEONTL_STALL_SECONDS"] == "600"
    rank = mpirun[mpirun.index("env"):]
    # every rank alike, the threads of a 55-core socket share (the paper's cores - 2), no numactl
    assert rank[:5] == ["env", "OMP_NUM_THREADS=53", "python", "-m", "xeontl"] and "numactl" not in mpirun
    assert rank[rank.index("--intra-threads") + 1] == "53" and "/etc/xeontl/config.json" in rank
    header = out.read_text().splitlines()[1]
    assert header.startswith("# kubelet on every node: --cpu-manager-policy=static --reserved-cpus=0,112 ")
    assert "--topology-manager-policy=single-numa-node" in header and "--memory-manager-policy=Static" in header
    assert "kubelet on every node:" in r.stdout


def test_a_pod_that_no_socket_can_hold_is_refused_in_one_line(tmp_path):
    one_line_error(invoke("render", "--engine", "k8s", "--nodes", "2", "--topology", str(SPR), "--cores-per-socket",
                          "56", "--output", str(tmp_path / "a.yaml")),
                   "--cores-per-socket 56: a worker pod would request 112 CPUs, but with the kubelet's reserved CPUs "
                   "0,112 the smallest socket's allocatable share is 55 whole cores")
    one_line_error(invoke("render", "--engine", "k8s", "--topology", str(SPR), "--reserved-cpus", "0-55,112-167",
                          "--output", str(tmp_path / "b.yaml")), "leave socket(s) 0 no whole core")
    one_line_error(invoke("render", "--engine", "k8s", "--topology", str(SPR), "--reserved-cpus", "999",
                          "--output", str(tmp_path / "c.yaml")), "CPU(s) 999 are not on the node")
    assert list(tmp_path.iterdir()) == []


def test_reserved_cpus_elsewhere_size_the_pods_by_the_smallest_share():
    topo = topology.load_file(SPR)
    assert k8s.default_reserved(topo) == [0, 112]
    assert k8s.pod_cores(topo, [0, 112]) == (55, 110)
    assert k8s.pod_cores(topo, [0, 1, 112, 113, 56, 168]) == (54, 108)  # 2 cores of socket 0, 1 of socket 1
    assert k8s.pod_cores(topo, [0, 112], wanted=40) == (40, 80)


def test_the_vendored_crd_schema_rejects_a_malformed_mpijob():
    _, docs = spr_docs()
    job_of(docs)["spec"]["slotsPerWorker"] = "two"
    with pytest.raises(UserError, match="MPIJob CRD schema at spec/slotsPerWorker"):
        k8s.check(docs, 2)
    _, docs = spr_docs()
    del job_of(docs)["spec"]["mpiReplicaSpecs"]
    with pytest.raises(UserError, match="CRD schema"):
        k8s.check(docs, 2)


def test_kubernetes_schemas_reject_a_malformed_pod_template():
    pytest.importorskip("kubernetes_validate")
    _, docs = spr_docs()
    job_of(docs)["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["imagePullPolicyy"] = "x"
    with pytest.raises(UserError, match="Worker pod template is not valid Kubernetes"):
        k8s.check(docs, 2)


def worker_container(docs):
    return job_of(docs)["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]


def fractional(docs):
    worker_container(docs)["resources"] = {"requests": {"cpu": "1500m", "memory": "8Gi"},
                                           "limits": {"cpu": "1500m", "memory": "8Gi"}}


def burstable(docs):
    worker_container(docs)["resources"]["limits"]["cpu"] = "300"


def sys_nice(docs):
    worker_container(docs)["securityContext"]["capabilities"]["add"] = ["SYS_NICE"]


def no_shm(docs):
    c = worker_container(docs)
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["mountPath"] != "/dev/shm"]


def no_spread(docs):
    del job_of(docs)["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["topologySpreadConstraints"]


def slots(docs):
    job_of(docs)["spec"]["slotsPerWorker"] = 2


def no_fs_group(docs):
    del job_of(docs)["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["securityContext"]["fsGroup"]


def no_probe(docs):
    del worker_container(docs)["readinessProbe"]


def unconfined(docs):
    worker_container(docs)["securityContext"]["seccompProfile"] = {"type": "Unconfined"}


@pytest.mark.parametrize("spoil,needle", [
    (fractional, "not a whole number"), (burstable, "requests != limits"), (slots, "slotsPerWorker 2"),
    (sys_nice, "SYS_NICE is not even baseline's"), (no_shm, "Memory-backed emptyDir"), (no_spread, "spread"),
    (no_fs_group, "needs a pod fsGroup"), (no_probe, "readiness probe on its sshd"),
    (unconfined, "seccompProfile RuntimeDefault"),
])
def test_bad_variants_fail_the_kubelet_and_admission_check(spoil, needle):
    _, docs = spr_docs()
    assert k8s.check(copy.deepcopy(docs), 2)  # the rendered one passes
    spoil(docs)
    with pytest.raises(UserError, match=needle):
        k8s.check(docs, 2)


def test_render_bad_input_is_one_line(tmp_path):
    one_line_error(invoke("render", "--engine", "nomad", "--topology", str(SPR), timeout=120), "--engine nomad")
    out = tmp_path / "job.yaml"
    out.write_text("keep me")
    one_line_error(invoke("render", "--topology", str(SPR), "--output", str(out), timeout=120), "exists")
    assert out.read_text() == "keep me"
