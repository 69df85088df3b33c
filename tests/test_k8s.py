"""Kubernetes: the plan rendered as a Kubeflow MPIJob, checked against the MPIJob CRD's published schema (vendored),
Kubernetes' own schemas (kubernetes-validate) and the pinning rules; bad variants must fail the check."""

import copy
import json
import shlex

import pytest
import yaml

from conftest import SPR, invoke, one_line_error
from xeontl import config, topology
from xeontl import plan as planlib
from xeontl.engines import kubernetes as k8s
from xeontl.errors import UserError


def spr_docs(nodes=2, sockets=2):
    plan = planlib.make_plan(topology.load_file(SPR), sockets, node_count=nodes, relative=True)
    return plan, k8s.manifest(plan, config.resolve("paper"), "20261125-000000-paper-2s-abcd", "registry/xeontl:1",
                              "xeontl-results")


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
    assert job["apiVersion"] == "kubeflow.org/v2beta1" and spec["slotsPerWorker"] == 2
    assert spec["sshAuthMountPath"] == "/home/xeontl/.ssh" and spec["mpiReplicaSpecs"]["Worker"]["replicas"] == 2
    worker = spec["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    c = worker["containers"][0]
    assert c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": "224", "memory": "16Gi"}
    assert c["command"] == ["xeontl-entrypoint", "node"] and c["image"] == "registry.example/xeontl:1"
    assert {"name": "XEONTL_AUTHORIZED_KEYS", "value": "/home/xeontl/.ssh/authorized_keys"} in c["env"]
    assert c["securityContext"]["capabilities"] == {"drop": ["ALL"], "add": ["SYS_NICE"]}
    launcher = spec["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
    cmd = launcher["command"]
    # the launcher pod's own step around its mpirun: it settles, records (provenance, report) and renames the run
    assert cmd[:5] == ["xeontl-entrypoint", "python", "-m", "xeontl", "k8s-launch"]
    mpirun = cmd[cmd.index("--") + 1:]
    assert mpirun[:3] == ["mpirun", "-np", "4"] and "-x" in mpirun and "KMP_AFFINITY" in mpirun
    for name in ("PATH", "PYTHONPATH"):  # the image's env reaches the ranks that ssh starts
        assert mpirun[mpirun.index(name) - 1] == "-x", name
    fields = {e["name"]: e["valueFrom"]["fieldRef"]["fieldPath"] for e in launcher["env"] if "valueFrom" in e}
    assert fields == {"XEONTL_POD_NAME": "metadata.name", "XEONTL_POD_NAMESPACE": "metadata.namespace",
                      "XEONTL_NODE_NAME": "spec.nodeName"}
    wrapper = cmd[cmd.index("xeontl-rank") - 1]
    # the paper's pinning per socket, planned from the workers' topology (--topology), not the launcher pod's
    assert "0) exec env OMP_NUM_THREADS=54 numactl -C +0-55,112-167 -m +0 python -m xeontl train" in wrapper
    assert "1) exec env OMP_NUM_THREADS=54 numactl -C +56-111,168-223 -m +1" in wrapper
    assert "--config /etc/xeontl/config.json" in wrapper and "--intra-threads 54" in wrapper
    assert shlex.split(wrapper)  # a well-formed shell word list


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


def privileged(docs):
    worker_container(docs)["securityContext"]["privileged"] = True


def no_shm(docs):
    c = worker_container(docs)
    c["volumeMounts"] = [m for m in c["volumeMounts"] if m["mountPath"] != "/dev/shm"]


def no_anti_affinity(docs):
    del job_of(docs)["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["affinity"]


def slots(docs):
    job_of(docs)["spec"]["slotsPerWorker"] = 1


@pytest.mark.parametrize("spoil,needle", [
    (fractional, "not a whole number"), (burstable, "requests != limits"), (slots, "slotsPerWorker 1 != 2"),
    (privileged, "SYS_NICE only"), (no_shm, "Memory-backed emptyDir"), (no_anti_affinity, "anti-affinity"),
])
def test_bad_variants_fail_the_pinning_check(spoil, needle):
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
