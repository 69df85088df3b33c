"""Kubernetes: the plan rendered as a Kubeflow MPIJob, checked against the MPIJob CRD's published schema (vendored),
Kubernetes' own schemas (kubernetes-validate) and the rules the kubelet and admission hold pods to; bad variants
fail the check, and a pod no socket's allocatable share can hold is refused in one line."""

import copy
import json

import pytest
import yaml

from conftest import ROOT, SPR, invoke, one_line_error, render_in_process, scaled
from xeontl.common.errors import UserError
from xeontl.engines import k8s_policy
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
               "--image", "registry.example/xeontl:1", "--output", str(out), "--assets-claim", "xeontl-assets",
               timeout=scaled(120))
    assert r.returncode == 0, r.stderr
    assert "MPIJob: kubeflow/mpi-operator v2beta1 CRD schema" in r.stdout and "kubernetes-validate" in r.stdout
    docs = list(yaml.safe_load_all(out.read_text()))
    cm, job = docs
    assert cm["kind"] == "ConfigMap" and json.loads(cm["data"]["config.json"]) == k8s.assets_on_claim(
        config.resolve("paper"))
    spec = job["spec"]
    # a pod per socket, 4 in all: each one socket's share once the kubelet's reserved CPUs (0 and its sibling 112)
    # are out: 55 whole cores x 2 threads = 110 CPUs, which socket 0 and socket 1 can both hold
    assert job["apiVersion"] == "kubeflow.org/v2beta1" and spec["slotsPerWorker"] == 1
    assert spec["sshAuthMountPath"] == "/home/xeontl/.ssh" and spec["mpiReplicaSpecs"]["Worker"]["replicas"] == 4
    worker = spec["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    c = worker["containers"][0]
    assert c["resources"]["requests"] == c["resources"]["limits"] == {"cpu": "110", "memory": "8Gi"}
    # the paper profile's bf16: its check before the entrypoint (tests/test_node_checks.py)
    assert c["command"][3:] == ["xeontl-cpu-check", "xeontl-entrypoint", "node"]
    assert c["image"] == "registry.example/xeontl:1"
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
    (sys_nice, r"non-default capabilities \(container \"worker\" must not include SYS_NICE"),
    (no_shm, "Memory-backed emptyDir"), (no_spread, "placement"),
    (no_fs_group, "needs a pod fsGroup"), (no_probe, "readiness probe on its sshd"),
    (unconfined, "restricted:latest.: seccompProfile"),
])
def test_bad_variants_fail_the_kubelet_and_admission_check(spoil, needle):
    _, docs = spr_docs()
    assert k8s.check(copy.deepcopy(docs), 2)  # the rendered one passes
    spoil(docs)
    with pytest.raises(UserError, match=needle):
        k8s.check(docs, 2)


def test_render_bad_input_is_one_line(tmp_path):
    one_line_error(invoke("render", "--engine", "nomad", "--topology", str(SPR), timeout=scaled(120)), "--engine nomad")
    out = tmp_path / "job.yaml"
    out.write_text("keep me")
    one_line_error(invoke("render", "--topology", str(SPR), "--output", str(out), timeout=scaled(120)), "exists")
    assert out.read_text() == "keep me"


# ------------------------------------------------------------------------------------------------ issue 40
def render_docs(tmp_path, *args, topo=SPR):
    out = tmp_path / f"job-{len(list(tmp_path.iterdir()))}.yaml"
    assets = () if "--profile" in args else ("--assets-claim", "xeontl-assets")  # the paper profile reads files
    r = render_in_process("--engine", "k8s", "--topology", str(topo), "--output", str(out), *args, *assets)
    return r, [d for d in yaml.safe_load_all(out.read_text()) if d], out.read_text()


def pod_of(docs, role):
    return job_of(docs)["spec"]["mpiReplicaSpecs"][role]["template"]["spec"]


def test_the_launcher_is_burstable_outside_the_exclusive_pool_and_whole_cores_are_checked():
    """policy_static.go Allocate under full-pcpus-only: a Guaranteed request not a multiple of the threads per core
    is SMTAlignmentError; a Burstable pod gets no exclusive CPUs at all (guaranteedCPUs 0)."""
    _, docs = spr_docs()
    launcher = pod_of(docs, "Launcher")["containers"][0]["resources"]
    assert "cpu" not in launcher["limits"] and launcher["requests"]["cpu"] == "500m"  # Burstable
    cases = [  # (launcher resources, threads per core, the problem or None)
        ({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}, 2, "SMTAlignmentError"),
        ({"requests": {"cpu": "3", "memory": "1Gi"}, "limits": {"cpu": "3", "memory": "1Gi"}}, 2, "SMTAlignmentError"),
        ({"requests": {"cpu": "2", "memory": "1Gi"}, "limits": {"cpu": "2", "memory": "1Gi"}}, 2, None),
        ({"requests": {"cpu": "1", "memory": "1Gi"}, "limits": {"cpu": "1", "memory": "1Gi"}}, 1, None),
        (k8s.LAUNCHER_RESOURCES, 2, None), (k8s.LAUNCHER_RESOURCES, 4, None),
    ]
    for resources, threads, problem in cases:
        d = copy.deepcopy(docs)
        pod_of(d, "Launcher")["containers"][0]["resources"] = copy.deepcopy(resources)
        found = [p for p in k8s_policy.pinning_problems(d, threads) if p.startswith("Launcher")]
        assert (problem is None and not found) or (problem and any(problem in p for p in found)), (resources, found)
    worker_threads = [(110, 2, False), (111, 2, True), (110, 4, True)]  # the workers' own requests too
    for cpus, threads, bad in worker_threads:
        d = copy.deepcopy(docs)
        pod_of(d, "Worker")["containers"][0]["resources"] = k8s._resources(cpus, 8)
        assert any("SMTAlignmentError" in p for p in k8s_policy.pinning_problems(d, threads)) == bad, (cpus, threads)


PLACEMENT = [  # (nodes, sockets, topology, the worker's placement, pods a node)
    (1, 2, SPR, "podAffinity", 2), (2, 1, SPR, "podAntiAffinity", 1), (2, 2, SPR, "spread", 2),
    (1, 2, ROOT / "tests" / "topologies" / "snc2-2s-ht.lscpu", "podAffinity", 4),
    (2, 1, ROOT / "tests" / "topologies" / "snc2-2s-ht.lscpu", "spread", 2),
]


def test_placement_schedules_on_a_cluster_with_other_nodes(tmp_path):
    """The user's nodes (--node-selector) on every pod; the one-node layout held on one node by a required
    podAffinity (the first pod passes on its own terms: interpodaffinity/filtering.go satisfyPodAffinity), one worker
    a node by a required podAntiAffinity, otherwise a spread counting only eligible nodes (Honor, Honor)."""
    for nodes, sockets, topo, kind, per_node in PLACEMENT:
        _, docs, _ = render_docs(tmp_path, "--nodes", str(nodes), "--sockets", str(sockets), "--node-selector",
                                 "node.xeontl.example/pool=spr-8480,tier=hpc", topo=topo)
        worker, launcher = pod_of(docs, "Worker"), pod_of(docs, "Launcher")
        assert worker["nodeSelector"] == launcher["nodeSelector"] == {  # the image's platform, then the user's
            "kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux", "node.xeontl.example/pool": "spr-8480",
            "tier": "hpc"}
        assert job_of(docs)["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == nodes * per_node, (nodes, topo)
        sel = {"matchLabels": {"xeontl/run-id": job_of(docs)["metadata"]["labels"]["xeontl/run-id"],
                               "xeontl/role": "worker"}}
        # the nodes' CPU, the paper profile's bf16 (tests/test_node_checks.py): beside the placement
        placed = {k: v for k, v in worker.get("affinity", {}).items() if k != "nodeAffinity"}
        if kind == "spread":
            assert worker["topologySpreadConstraints"] == [{
                "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
                "labelSelector": sel, "nodeAffinityPolicy": "Honor", "nodeTaintsPolicy": "Honor"}]
            assert placed == {}
        else:
            assert placed == {kind: {"requiredDuringSchedulingIgnoredDuringExecution": [
                {"labelSelector": sel, "topologyKey": "kubernetes.io/hostname"}]}}
            assert "topologySpreadConstraints" not in worker


def test_a_spread_that_counts_every_node_is_refused():
    _, docs = spr_docs()
    for field, value in (("nodeTaintsPolicy", "Ignore"), ("nodeAffinityPolicy", "Ignore"),
                         ("whenUnsatisfiable", "ScheduleAnyway")):
        d = copy.deepcopy(docs)
        pod_of(d, "Worker")["topologySpreadConstraints"][0][field] = value
        with pytest.raises(UserError, match="count only eligible nodes"):
            k8s.check(d, 2)
    d = copy.deepcopy(docs)
    del pod_of(d, "Worker")["topologySpreadConstraints"][0]["nodeTaintsPolicy"]  # its default is Ignore
    with pytest.raises(UserError, match="count only eligible nodes"):
        k8s.check(d, 2)


@pytest.mark.parametrize("selector,needle", [
    ("pool", "is not KEY=VALUE"), ("Pool.Example/x=y", "prefix must be a DNS subdomain"), ("a/b/c=d", "one '/'"),
    ("-x=y", "name must be"), ("x=" + "v" * 64, "label value"), ("x=bad value", "label value"),
])
def test_a_node_selector_that_is_not_a_label_is_one_line(tmp_path, selector, needle):
    one_line_error(invoke("render", "--engine", "k8s", "--topology", str(SPR), "--node-selector", selector,
                          "--output", str(tmp_path / "x.yaml")), needle)
    assert not (tmp_path / "x.yaml").exists()


def test_snc_nodes_get_a_pod_per_numa_node_that_one_numa_node_holds(tmp_path):
    """single-numa-node admits a pod only if one NUMA node holds it: on SNC-2 (4 CPUs a NUMA node, core 0 reserved),
    each pod is sized to the smallest NUMA node's free whole cores, never a socket's."""
    snc = ROOT / "tests" / "topologies" / "snc2-2s-ht.lscpu"
    r, docs, text = render_docs(tmp_path, "--nodes", "2", "--sockets", "2", topo=snc)
    topo = topology.load_file(snc)
    free = {}
    for c in topo.cpus:
        if c.cpu not in (0, 8):
            free[c.node] = free.get(c.node, 0) + 1
    cpus = int(pod_of(docs, "Worker")["containers"][0]["resources"]["requests"]["cpu"])
    assert cpus <= min(free.values()) and cpus % 2 == 0 and cpus == 2
    assert job_of(docs)["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"] == 8
    assert "2 NUMA nodes a socket" in r.stdout and "NUMA nodes 0: CPUs 0-1,8-9" in text
    one_line_error(invoke("render", "--engine", "k8s", "--topology", str(snc), "--cores-per-socket", "2",
                          "--output", str(tmp_path / "y.yaml")), "smallest socket's allocatable share is 1 whole")


def kubelet_flags(text):
    header = next(line for line in text.splitlines() if line.startswith("# kubelet on every node: "))
    return dict(f[2:].split("=", 1) for f in header.split(": ", 1)[1].split())


def mib(q):
    import re

    m = re.fullmatch(r"(\d+)(Mi|Gi)", q)
    return int(m[1]) * (1024 if m[2] == "Gi" else 1)


def test_reserved_memory_sums_to_what_node_allocatable_holds_back(tmp_path):
    """memorymanager validateReservedMemory: the --reserved-memory total equals kube-reserved + system-reserved + the
    hard eviction threshold for memory; NewPolicyStatic refuses a zero total. Read from what render prints."""
    for topo, numa in ((SPR, "0"), (ROOT / "tests" / "topologies" / "snc2-2s-ht.lscpu", "0")):
        _, _, text = render_docs(tmp_path, topo=topo)
        flags = kubelet_flags(text)
        node, _, memory = flags["reserved-memory"].partition(":")
        total = mib(memory.split("=")[1])
        evict = dict(x.split("<") for x in flags["eviction-hard"].split(","))
        want = mib(flags["kube-reserved"].split("=")[1]) + mib(flags["system-reserved"].split("=")[1]) + \
            mib(evict["memory.available"])
        assert node == numa and total == want > 0, flags
        assert set(evict) == {"memory.available", "nodefs.available", "imagefs.available", "nodefs.inodesFree"}
        assert flags["memory-manager-policy"] == "Static"


def test_the_results_claim_must_be_read_write_many_where_pods_share_it(tmp_path):
    r, docs, _ = render_docs(tmp_path, "--nodes", "2")
    assert "must be ReadWriteMany" in r.stdout and "never in-tree NFS" in r.stdout
    for args in (("--nodes", "2", "--claim-mode", "ReadWriteOnce"), ("--nodes", "1", "--claim-mode",
                                                                     "ReadWriteOncePod")):
        one_line_error(invoke("render", "--engine", "k8s", "--topology", str(SPR), *args, "--output",
                              str(tmp_path / "rwo.yaml")), "it must be ReadWriteMany")
    one_line_error(invoke("render", "--engine", "k8s", "--topology", str(SPR), "--claim-mode", "RWX", "--output",
                          str(tmp_path / "rwo.yaml")), "--claim-mode 'RWX': one of")
    assert not (tmp_path / "rwo.yaml").exists()
    _, docs, _ = render_docs(tmp_path, "--nodes", "1", "--claim-mode", "ReadWriteOnce")
    assert pod_of(docs, "Launcher")["affinity"]["podAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"][0][
        "labelSelector"]["matchLabels"]["xeontl/role"] == "worker"  # RWO: the launcher on the workers' node


# Pod Security "restricted": each case spoils the rendered worker pod as one of pod-security-admission's checks
# (staging/src/k8s.io/pod-security-admission/policy/check_*.go) refuses, with PSA's own forbidden reason.
def c0(pod):
    return pod["containers"][0]


def init(pod):
    pod["initContainers"] = [{"name": "init", "image": "x", "securityContext": {"runAsNonRoot": True}}]


def ephemeral(pod):
    pod["ephemeralContainers"] = [{"name": "debug", "image": "x", "securityContext": {
        "allowPrivilegeEscalation": False, "capabilities": {"drop": ["ALL"]}, "privileged": True}}]


PSA = [
    (lambda p: c0(p)["securityContext"].update(runAsNonRoot=False), "runAsNonRoot != true"),
    (lambda p: p["securityContext"].update(runAsNonRoot=False), "runAsNonRoot != true"),
    (lambda p: (p["securityContext"].pop("runAsNonRoot"), c0(p)["securityContext"].pop("runAsNonRoot")),
     "runAsNonRoot != true"),
    (lambda p: c0(p)["securityContext"].update(runAsUser=0), "runAsUser=0"),
    (init, "allowPrivilegeEscalation != false"), (init, "unrestricted capabilities"), (ephemeral, "privileged"),
    (lambda p: c0(p)["ports"][0].update(hostPort=2222), "hostPort"),
    (lambda p: c0(p)["securityContext"].update(procMount="Unmasked"), "procMount"),
    (lambda p: p["securityContext"].update(sysctls=[{"name": "kernel.msgmax", "value": "1"}]), "forbidden sysctls"),
    (lambda p: c0(p)["securityContext"].update(seLinuxOptions={"type": "spc_t"}), "seLinuxOptions"),
    (lambda p: c0(p)["securityContext"].update(seLinuxOptions={"user": "system_u"}), "seLinuxOptions"),
    (lambda p: c0(p)["securityContext"].update(appArmorProfile={"type": "Unconfined"}), "forbidden AppArmor"),
    (lambda p: c0(p)["securityContext"].update(seccompProfile={"type": "Unconfined"}), "seccompProfile"),
    (lambda p: (p["securityContext"].pop("seccompProfile"), c0(p)["securityContext"].pop("seccompProfile")),
     "seccompProfile"),
    (lambda p: p.update(hostNetwork=True), "host namespaces"),
    (lambda p: p["volumes"].append({"name": "h", "hostPath": {"path": "/"}}), "hostPath volumes"),
    (lambda p: p["volumes"].append({"name": "n", "nfs": {"server": "s", "path": "/"}}), "restricted volume types"),
    (lambda p: c0(p)["securityContext"]["capabilities"].update(add=["NET_RAW"]), "non-default capabilities"),
    (lambda p: c0(p)["securityContext"].update(windowsOptions={"hostProcess": True}), "hostProcess"),
]


def test_pod_security_restricted_as_admission_checks_it():
    _, docs = spr_docs()
    for role in ("Worker", "Launcher"):
        assert k8s_policy.pod_security(pod_of(docs, role)) == [], role
    for i, (spoil, reason) in enumerate(PSA):
        d = copy.deepcopy(docs)
        spoil(pod_of(d, "Worker"))
        found = k8s_policy.pod_security(pod_of(d, "Worker"))
        assert any(f.startswith(reason) for f in found), (i, reason, found)
        if i < 3:  # and render's check refuses it (the kubernetes-validate pass costs a second a case)
            with pytest.raises(UserError, match="violates PodSecurity"):
                k8s.check(d, 2)
    allowed = [  # what restricted allows: NET_BIND_SERVICE added, a safe sysctl, a Localhost profile, container_t
        lambda p: c0(p)["securityContext"]["capabilities"].update(add=["NET_BIND_SERVICE"]),
        lambda p: p["securityContext"].update(sysctls=[{"name": "net.ipv4.ip_local_port_range", "value": "1 2"}]),
        lambda p: c0(p)["securityContext"].update(seccompProfile={"type": "Localhost", "localhostProfile": "a"}),
        lambda p: c0(p)["securityContext"].update(seLinuxOptions={"type": "container_t", "level": "s0:c1"}),
        lambda p: c0(p)["securityContext"].pop("runAsNonRoot"),  # the pod's true covers it
    ]
    for i, ok in enumerate(allowed):
        d = copy.deepcopy(docs)
        ok(pod_of(d, "Worker"))
        assert k8s_policy.pod_security(pod_of(d, "Worker")) == [], i


def test_no_restart_policy_in_a_template_the_operator_would_warn_on():
    _, docs = spr_docs()
    for role in ("Launcher", "Worker"):
        assert "restartPolicy" not in pod_of(docs, role)
        d = copy.deepcopy(docs)
        pod_of(d, role)["restartPolicy"] = "Never"
        with pytest.raises(UserError, match="SetPodTemplateRestartPolicy"):
            k8s.check(d, 2)


CONTRACT = ROOT / "tests" / "fixtures" / "k8s" / "mpi-operator-v0.8.2-contract.json"


def field_values(job, path):
    """The values the manifest gives PATH (a * over the replica types); absent: None (the operator's default)."""
    out = [job]
    for part in path.split("."):
        out = [x for o in out for x in ((o or {}).values() if part == "*" else [(o or {}).get(part)])]
    return out


def test_the_manifest_is_read_against_the_operators_contract_as_data():
    """kubeflow/mpi-operator v0.8.2's contract (types.go, default.go, mpi_job_controller.go) transcribed as data:
    every effect the manifest and its launcher rely on (k8s_policy.OPERATOR_NEEDS) must be what the operator does
    with the value rendered. WaitForWorkersReady -> AtStartup, or a template restartPolicy, fails here."""
    contract = json.loads(CONTRACT.read_text())
    assert "caa3c47fc42eb762635f78045ec0fcd1a89eb038" in contract["source"]
    _, docs = spr_docs()
    job = job_of(docs)
    assert set(k8s_policy.OPERATOR_NEEDS) <= set(contract["fields"])

    def holds(j):
        for path, need in k8s_policy.OPERATOR_NEEDS.items():
            spec = contract["fields"][path]
            for value in field_values(j, path):
                value = spec["default"] if value is None else value
                effects = spec["values"].get(str(value), spec["values"].get("*"))
                if effects is None or need not in effects:
                    return f"{path}={value!r}: the operator does {effects}, the manifest needs {need!r}"
        return None

    assert holds(job) is None, holds(job)
    for path, value in (("launcherCreationPolicy", "AtStartup"), ("sshAuthMountPath", "/root/.ssh"),
                        ("mpiImplementation", "Intel")):
        j = copy.deepcopy(job)
        j["spec"][path] = value
        assert holds(j), path
    for mutate in (lambda j: j["spec"].pop("launcherCreationPolicy"),
                   lambda j: j["spec"]["mpiReplicaSpecs"]["Launcher"].update(restartPolicy="OnFailure"),
                   lambda j: j["spec"]["mpiReplicaSpecs"]["Worker"].update(restartPolicy="OnFailure"),
                   lambda j: j["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"].update(restartPolicy="Never"),
                   lambda j: j["spec"]["runPolicy"].update(cleanPodPolicy="None")):
        j = copy.deepcopy(job)
        mutate(j)
        assert holds(j), mutate


# ------------------------------------------------------------------------------------------------ the watched job
def pod(name, phase, role="worker", age=0.0, **status):
    from datetime import datetime, timezone

    created = datetime.fromtimestamp(NOW - age, timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    return {"metadata": {"name": name, "labels": {"xeontl/role": role}, "creationTimestamp": created},
            "status": {"phase": phase, **status}}


NOW = 2_000_000_000.0
UNSCHEDULABLE = {"conditions": [{"type": "PodScheduled", "status": "False", "reason": "Unschedulable",
                                 "message": "0/5 nodes are available: 1 node(s) had untolerated taint "
                                            "{node-role.kubernetes.io/control-plane: }, 4 Insufficient cpu."}]}
FAILED_JOB = {"metadata": {"name": "j"}, "status": {"conditions": [
    {"type": "Failed", "status": "True", "reason": "BackoffLimitExceeded", "message": "Job has reached the specified "
                                                                                     "backoff limit"}]}}
WATCH = [  # (pods, MPIJob, the verdict, words the line must have); PENDING bound 600 s
    ([pod("j-worker-0", "Running"), pod("j-worker-1", "Pending", age=30)], None, "running", ""),
    ([pod("j-worker-0", "Running"), pod("j-worker-1", "Failed", reason="TopologyAffinityError",
                                        message="Resources cannot be allocated with Topology locality")], None,
     "failed", "worker pod j-worker-1 Failed: TopologyAffinityError: Resources cannot be allocated"),
    ([pod("j-worker-0", "Failed", reason="SMTAlignmentError")], None, "failed",
     "worker pod j-worker-0 Failed: SMTAlignmentError"),
    ([pod("j-worker-0", "Failed", reason="Evicted")], None, "failed", "j-worker-0 Failed: Evicted"),
    ([pod("j-worker-1", "Pending", age=601, **UNSCHEDULABLE)], None, "failed",
     "worker pod j-worker-1 Pending for more than 600 s: Unschedulable: 0/5 nodes are available: 1 node(s) had "
     "untolerated taint"),
    ([pod("j-worker-0", "Pending", age=900, containerStatuses=[{"state": {"waiting": {
        "reason": "ContainerCreating"}}}])], None, "failed",
     "j-worker-0 Pending for more than 600 s: ContainerCreating"),
    ([pod("j-worker-0", "Pending", age=599, **UNSCHEDULABLE)], None, "running", ""),
    ([pod("j-launcher-abcde", "Failed", role="launcher")], None, "running", ""),  # the Job retries it
    ([pod("j-worker-0", "Running")], FAILED_JOB, "failed", "MPIJob j Failed: BackoffLimitExceeded"),
    ([], {"metadata": {"name": "j"}, "status": {"conditions": [{"type": "Succeeded", "status": "True",
                                                                 "reason": "MPIJobSucceeded"}]}},
     "succeeded", "MPIJob j Succeeded"),
]


def test_the_watch_fails_a_rejected_or_pending_worker_in_one_line():
    from xeontl.engines import k8s_watch

    for i, (pods, job, state, words) in enumerate(WATCH):
        got, why = k8s_watch.judge(pods, job, NOW, 600)
        assert (got, words in why) == (state, True) and "\n" not in why, (i, got, why)


FAKE_KUBECTL = """#!/usr/bin/env python3
import json, sys, pathlib
d = pathlib.Path(__file__).parent
(d / "calls").open("a").write(" ".join(sys.argv[1:]) + "\\n")
if sys.argv[1] == "get" and sys.argv[2] == "pods":
    print((d / "pods.json").read_text())
elif sys.argv[1] == "get" and sys.argv[2] == "mpijob":
    print(json.dumps({"metadata": {"name": sys.argv[3]}, "status": {}}))
elif sys.argv[1] == "get" and sys.argv[2] == "nodes":
    print(json.dumps({"kind": "NodeList", "items": [
        {"metadata": {"name": n, "labels": {"kubernetes.io/hostname": n, "kubernetes.io/arch": "amd64",
                                            "kubernetes.io/os": "linux"}}, "spec": {},
         "status": {"allocatable": {"cpu": "222", "memory": "503Gi"}}} for n in ("a", "b")]}))
"""


def test_reproduce_on_k8s_applies_watches_and_ends_on_a_rejected_worker(tmp_path):
    """`invoke reproduce --engine k8s` through a kubectl that answers as the API server would for a worker the
    kubelet refused: one line naming the pod and the reason, exit 1, the MPIJob deleted; within a poll."""
    bin_ = tmp_path / "bin"
    bin_.mkdir()
    (bin_ / "kubectl").write_text(FAKE_KUBECTL)
    (bin_ / "kubectl").chmod(0o755)
    (bin_ / "pods.json").write_text(json.dumps({"items": [
        pod("w-worker-0", "Running"),
        pod("w-worker-1", "Failed", reason="SMTAlignmentError", message="SMT Alignment Error: requested 3 cpus not "
                                                                        "multiple cpus per core = 2")]}))
    import os

    env = {"PATH": f"{bin_}:{os.environ['PATH']}"}
    r = invoke("reproduce", "--engine", "k8s", "--nodes", "2", "--topology", str(SPR), "--results-dir",
               str(tmp_path / "results"), "--profile", "smoke", env=env, timeout=scaled(300))
    assert r.returncode == 1, r.stderr
    one_line_error(r, "worker pod w-worker-1 Failed: SMTAlignmentError: SMT Alignment Error")
    calls = (bin_ / "calls").read_text().splitlines()
    assert calls[0] == "get nodes -o json" and calls[1].startswith("apply -f ")  # the layout fits the nodes first
    assert calls[-2].startswith("delete mpijob xeontl-") and calls[-1].startswith("delete configmap xeontl-")
    assert len(list((tmp_path / "results").glob("*.mpijob.yaml"))) == 1
    r = invoke("reproduce", "--engine", "k8s", "--topology", str(SPR), "--results-dir", str(tmp_path / "r2"),
               env={"PATH": str(tmp_path / "nothing")}, timeout=scaled(300))
    one_line_error(r, "kubectl, which is not on PATH")


def test_a_launcher_retry_concludes_into_a_run_dir_of_its_own(tmp_path):
    from xeontl.engines import mpijob_launcher as ml

    cases = [([], ("r1", 1)), (["r1"], ("r1-attempt-2", 2)), (["r1", "r1-attempt-2"], ("r1-attempt-3", 3)),
             ([".staging-r1"], ("r1", 1))]
    for i, (present, (name, attempt)) in enumerate(cases):
        d = tmp_path / str(i)
        d.mkdir()
        for p in present:
            (d / p).mkdir()
        assert ml.attempt_dir(d, "r1") == (d / name, attempt), present
    # the claim's write check: tests/test_k8s_watch.py (the kernel's answer unless root)


# ------------------------------------------------------------------------------------------------ the stack's CPU
AVX512F = {"key": "feature.node.kubernetes.io/cpu-cpuid.AVX512F", "operator": "In", "values": ["true"]}
STACK_RENDERS = [
    # (what, the command's arguments, the workers need avx512f); every one writes a manifest that passes every check
    ("reproduce --engine k8s --stack paper --dry-run", ["reproduce", "--engine", "k8s", "--stack", "paper",
                                                        "--dry-run", "--nodes", "2"], True),
    ("render --stack paper", ["render", "--engine", "k8s", "--stack", "paper"], True),
    ("render --stack paper, one node (the workers' podAffinity kept)", ["render", "--engine", "k8s", "--stack", "paper",
                                                                         "--nodes", "1"], True),
    ("render --stack paper --image of the user's", ["render", "--engine", "k8s", "--stack", "paper", "--image",
                                                    "registry.example/mine:1"], True),
    ("render --image xeontl:paper (the paper stack's own tag)", ["render", "--engine", "k8s", "--image",
                                                                 "xeontl:paper"], True),
    ("render, the default stack", ["render", "--engine", "k8s"], False),
    ("reproduce --engine k8s --dry-run, the default stack", ["reproduce", "--engine", "k8s", "--dry-run"], False),
]


@pytest.mark.parametrize("what,args,needs", STACK_RENDERS, ids=[c[0] for c in STACK_RENDERS])
def test_the_paper_stacks_workers_go_only_to_nodes_with_avx512f_and_check_it(what, args, needs, tmp_path):
    """intel-tensorflow-avx512 aborts on import without AVX512F (docs/image.md): on Kubernetes, as Slurm's job checks
    every node, the paper stack's worker pods require Node Feature Discovery's AVX512F label and check the flag at
    start (one line, exit 2); the launcher imports no TensorFlow and is left as it is. `--image xeontl:paper` is held
    to it too, where it is not refused (its tag is the paper stack's)."""
    where = ["--output", str(tmp_path / "job.yaml")] if args[0] == "render" else ["--results-dir", str(tmp_path)]
    r = invoke(*args, "--topology", str(SPR), "--profile", "paper", "--assets-claim", "xeontl-assets", *where,
               timeout=scaled(300))
    manifests = list(tmp_path.glob("*.yaml"))
    if r.returncode and "--image xeontl:paper" in what:  # refused where the options hold tags to their stack
        one_line_error(r, "xeontl:paper")
        assert manifests == []
        return
    assert r.returncode == 0, r.stderr
    manifest, = manifests
    job = job_of(list(yaml.safe_load_all(manifest.read_text())))
    worker = job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]
    launcher = job["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]
    c = worker["containers"][0]
    node_aff = worker.get("affinity", {}).get("nodeAffinity")
    assert "nodeAffinity" not in launcher.get("affinity", {}) and launcher["containers"][0]["command"][0] == \
        "xeontl-entrypoint"
    terms = node_aff["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]  # the profile's bf16
    if not needs:  # the paper profile's bf16 alone (tests/test_node_checks.py)
        assert all(AVX512F not in t["matchExpressions"] for t in terms) and "AVX512F" not in r.stdout
        assert "avx512f" not in c["command"][2]
        return
    assert terms and all(t["matchExpressions"][0] == AVX512F for t in terms)
    if "--nodes" in args and args[args.index("--nodes") + 1] == "1":  # the placement's own affinity stays
        assert "podAffinity" in worker["affinity"]
    assert c["command"][:2] == ["sh", "-c"] and c["command"][3:] == ["xeontl-cpu-check", "xeontl-entrypoint", "node"]
    assert c["command"][2].startswith("grep -qw avx512f /proc/cpuinfo || {") and c["command"][2].endswith(
        'exec "$@"')
    assert c["terminationMessagePolicy"] == "FallbackToLogsOnError"  # the line reaches the pod's status
    assert "note: --stack paper (intel-tensorflow-avx512 2.10.0), precision bf16: worker pods only on nodes " \
           "labelled feature.node.kubernetes.io/cpu-cpuid.AVX512F=true and one of " in r.stdout


@pytest.mark.parametrize("flags,code,says", [
    ("fpu sse2 avx avx2 fma", 2, "xeontl: error: --stack paper: the node of this worker lacks avx512f, without which "
                                 "intel-tensorflow-avx512 2.10.0 aborts on import; nothing was run"),
    ("fpu sse2 avx avx2 fma avx512f avx512bw", 0, None),
])
def test_a_paper_stack_worker_checks_its_nodes_cpu_before_anything_starts(flags, code, says, tmp_path):
    """The worker container's command as rendered, run with /proc/cpuinfo played by a file: without avx512f one
    line and exit 2, before the entrypoint; with it, the entrypoint runs with its own arguments."""
    import subprocess

    from xeontl.supply import stacks

    plan, _ = spr_docs()
    docs = k8s.manifest(plan, config.resolve("paper"), "r1", "xeontl:paper", "xeontl-results", stack=stacks.STACKS[
        "paper"])
    cmd = pod_of(docs, "Worker")["containers"][0]["command"]
    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    cmd = [a.replace("/proc/cpuinfo", str(tmp_path / "cpuinfo")) for a in cmd]
    r = subprocess.run([*cmd[:-2], "echo", "entrypoint", "node"], capture_output=True, text=True, timeout=30)
    assert r.returncode == code, r.stderr
    if says:
        assert r.stderr.splitlines() == [says] and r.stdout == ""
    else:
        assert r.stdout == "entrypoint node\n" and r.stderr == ""
