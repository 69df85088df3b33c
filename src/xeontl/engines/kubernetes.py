"""The Kubernetes engine: the plan as a Kubeflow MPI Operator `MPIJob` (kubeflow.org/v2beta1), plus a ConfigMap with
the run's resolved config and plan (`invoke render --engine k8s`), and what its launcher pod runs (`python -m xeontl
k8s-launch`): it waits for every worker's name and sshd, runs its mpirun across the worker pods with a watchdog, then
ends the run as every engine does (settled, recorded with the pod's own record, reported, renamed). Users apply the
manifest on their cluster; here `check()` validates it against the MPIJob CRD's published schema (vendored in
schemas/), the pod templates against Kubernetes' own schemas (kubernetes-validate), and the rules a kubelet holds it
to; the tests run it under the operator's contract and the kubelet's (tests/mpijob_harness.py).

Pinning the Kubernetes way: the kubelet pins, not positions. Every socket of every node is one worker pod
(slotsPerWorker 1) running one rank: a Guaranteed pod whose integer CPU request is one socket's allocatable share in
whole cores. Under the static CPU manager (exclusive CPUs), the Topology Manager's single-numa-node policy (all of
them on one NUMA node) and the Memory Manager's Static policy (its memory there too), the kubelet gives each rank
one socket's CPUs and memory, whatever CPUs it reserved for itself: no numactl, no SYS_NICE, and the pods pass Pod
Security's "restricted" level. `render` names the kubelet settings this needs (KUBELET) and refuses a request no
socket's allocatable share can hold.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from xeontl.common import records
from xeontl.common.errors import UserError
from xeontl.common.heartbeat import FIRST_BEAT_ENV, FIRST_BEAT_SECONDS, STALL_ENV, STALL_SECONDS
from xeontl.engines import k8s_cpu, k8s_policy
from xeontl.engines.base import Engine, Job
from xeontl.engines.k8s_sizing import (
    LAUNCHER_CPUS,
    cpu_quantity,
    default_reserved,
    headroom_cores,
    numa_split,
    pod_cores,
)
from xeontl.experiment import config
from xeontl.launch.options import Options
from xeontl.placement import plan as planlib
from xeontl.placement import topology
from xeontl.placement.topology import cpulist
from xeontl.supply import dockerapi

API_VERSION = "kubeflow.org/v2beta1"
SSH_AUTH_MOUNT = "/home/xeontl/.ssh"  # the image's user's ~/.ssh: the operator's Secret lands here
CONFIG_MOUNT = "/etc/xeontl"  # the ConfigMap: config.json, plan.json
ASSETS_MOUNT = "/assets"  # --assets-claim: the weights and data, read-only
SHM = "2Gi"
SSH_PORT = 2222  # the workers' sshd (docker/entrypoint.sh `node`), their readiness probe's port
WAIT_ENV = "XEONTL_WORKER_WAIT_SECONDS"
# the launcher's bounds, each overridable in its env (the manifest sets them): the wait for the workers' names and
# sshd; a run no rank progresses in and the wait for a first beat (common.heartbeat's)
WAIT_SECONDS = 600
# The launcher Job's runPolicy.activeDeadlineSeconds: a run that neither ends nor stalls (a watchdog that cannot act)
# still ends. Generous: EPOCH_SECONDS per epoch of the profile (the paper's 1-socket epoch is well under a minute on
# an 8480; this is ten times an epoch on a slow node, validation included) plus SETUP_SECONDS (the launcher's wait
# for the workers, hvd.init, the model build, the final test pass).
EPOCH_SECONDS, SETUP_SECONDS = 600, WAIT_SECONDS + FIRST_BEAT_SECONDS + 1800
NODES_LABEL = "xeontl/nodes"  # on the MPIJob: the nodes its workers must span (k8s_watch checks the placement)


def deadline_seconds(cfg: dict) -> int:
    """runPolicy.activeDeadlineSeconds for a run of CFG's epochs (EPOCH_SECONDS each, plus SETUP_SECONDS)."""
    return int(cfg["epochs"]) * EPOCH_SECONDS + SETUP_SECONDS
# The image's own ENV (docker/deps.Dockerfile). mpirun starts the remote ranks through ssh, whose sessions begin with
# sshd's default environment, not the image's: without these forwarded, a worker's rank found no `python` (the venv
# is /opt/venv/bin) nor the package (PYTHONPATH). Found by running the MPIJob under the operator's contract.
IMAGE_ENV = ("PATH", "PYTHONPATH", "XEONTL_LOCK_FILE", "TF_CPP_MIN_LOG_LEVEL", "PYTHONDONTWRITEBYTECODE")


def _security() -> dict:
    """Pod Security "restricted": non-root, no privilege escalation, every capability dropped (the kubelet's cpuset
    and the Memory Manager do what numactl and SYS_NICE did), the runtime's default seccomp profile."""
    uid = dockerapi.IMAGE_UID
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "allowPrivilegeEscalation": False,
            "capabilities": {"drop": ["ALL"]}, "seccompProfile": {"type": "RuntimeDefault"}}


def _pod_security() -> dict:
    """The pod's: its user, and fsGroup so that a volume the kubelet can manage (a PVC) is made writable to that
    group when its root does not already belong to it (OnRootMismatch: no recursive walk of a large volume)."""
    uid = dockerapi.IMAGE_UID
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "fsGroup": uid,
            "fsGroupChangePolicy": "OnRootMismatch", "seccompProfile": {"type": "RuntimeDefault"}}


def _resources(cpu: int, memory_gib: int) -> dict:
    amount = {"cpu": str(cpu), "memory": f"{memory_gib}Gi"}
    return {"requests": dict(amount), "limits": dict(amount)}  # requests = limits: Guaranteed QoS


# The launcher runs Burstable, in the node's shared CPU pool (requests below limits: no CPU limit). Not Guaranteed:
# under full-pcpus-only the static policy's Allocate refuses any Guaranteed integer request that is not a multiple of
# the threads per core (SMTAlignmentError, pkg/kubelet/cm/cpumanager/policy_static.go), and a Guaranteed launcher of
# whole cores would take them from a NUMA node a worker pod is sized to fill. A Burstable pod gets no exclusive CPUs
# (guaranteedCPUs returns 0 unless the QoS class is Guaranteed), no Topology Manager hints (it is admitted on any NUMA
# node) and no Memory Manager reservation; its CPU request counts for the scheduler alone. It waits on sshd and mpirun.
LAUNCHER_RESOURCES = {"requests": {"cpu": "500m", "memory": "1Gi"}, "limits": {"memory": "1Gi"}}


# What the nodes' kubelets must run with for the pods to be pinned as the plan says (the kubelet's flags; the same
# fields exist in its KubeletConfiguration file). Sources: kubernetes/kubernetes pkg/kubelet/cm/cpumanager
# (policy_static.go: exclusive CPUs for integer requests of Guaranteed pods; the policy refuses to start without
# reserved CPUs), pkg/kubelet/cm/topologymanager (policy_single_numa_node.go: admission fails with
# TopologyAffinityError when no single NUMA node fits), pkg/kubelet/cm/memorymanager (policy_static.go).
# The memory the kubelet holds back (node allocatable): kube-reserved + system-reserved + the hard eviction threshold.
# The Memory Manager's --reserved-memory must sum to exactly that (validateReservedMemory,
# pkg/kubelet/cm/memorymanager/memory_manager.go: "the total amount ... is not equal to the value ... determined by
# Node Allocatable feature") and its Static policy refuses a zero total (NewPolicyStatic, policy_static.go: "you should
# specify the system reserved memory"). --eviction-hard given replaces every default signal, so all four are named
# with the kubelet's defaults (pkg/kubelet/apis/config/v1beta1/defaults_linux.go).
KUBE_RESERVED_MIB, SYSTEM_RESERVED_MIB, EVICTION_MIB = 1024, 1024, 100
KUBELET = ("--cpu-manager-policy=static", "--reserved-cpus={reserved}", "--cpu-manager-policy-options="
           "full-pcpus-only=true", "--topology-manager-policy=single-numa-node", "--topology-manager-scope=pod",
           "--memory-manager-policy=Static", f"--kube-reserved=memory={KUBE_RESERVED_MIB}Mi",
           f"--system-reserved=memory={SYSTEM_RESERVED_MIB}Mi",
           f"--eviction-hard=memory.available<{EVICTION_MIB}Mi,nodefs.available<10%,imagefs.available<15%,"
           f"nodefs.inodesFree<5%", "--reserved-memory={numa}:memory="
           f"{KUBE_RESERVED_MIB + SYSTEM_RESERVED_MIB + EVICTION_MIB}Mi")


def reads_files(cfg: dict) -> list[str]:
    """What CFG reads from files the pods must be given (weights, data): [] for random weights, synthetic data."""
    kind, sep, _ = cfg["weights"].partition(":")
    out = [f"weights {cfg['weights']}"] if sep and kind in ("savedmodel", "keras") else []
    if cfg["dataset"] == "tfds" or cfg["dataset"].startswith("folder:"):
        out.append(f"dataset {cfg['dataset']}")
    return out


def assets_on_claim(cfg: dict) -> dict:
    """The config with every file it reads (weights, data) placed on the assets claim, mounted read-only at
    ASSETS_MOUNT in every pod: weights/<name>, tensorflow_datasets/ (TFDS's data dir, prepared by `invoke assets`),
    manual/ (the Kather archive), data/<name> (a folder dataset). `invoke assets --set weights=savedmodel:ROOT/weights/
    NAME --set data_dir=ROOT/tensorflow_datasets --set manual_dir=ROOT/manual` lays a directory out so."""
    from xeontl.supply import assets

    out = assets.placed(cfg, lambda p: f"{ASSETS_MOUNT}/weights/{p.name}", lambda p: f"{ASSETS_MOUNT}/data/{p.name}",
                        lambda c: (f"{ASSETS_MOUNT}/tensorflow_datasets", f"{ASSETS_MOUNT}/manual"))
    if out == cfg:
        raise UserError(f"--assets-claim: profile {cfg['profile']} reads no weights or data files (random weights, "
                        f"synthetic data): drop --assets-claim, or give --set weights=savedmodel:NAME")
    return out


HOSTNAME = "kubernetes.io/hostname"
IMAGE_PLATFORM = {"kubernetes.io/arch": "amd64", "kubernetes.io/os": "linux"}  # the image's (x86-64 TensorFlow)
CLAIM_MODES = ("ReadWriteMany", "ReadWriteOnce", "ReadWriteOncePod")


def placement(run_id: str, node_count: int, per_node: int, node_selector: dict | None) -> tuple[dict, dict]:
    """(the worker pod spec's placement fields, the launcher's). Linux nodes of the image's architecture (the labels
    every kubelet sets: an arm64 or Windows node would fail the pod at its start) the user names (NODE_SELECTOR, on
    both);
    then, among the workers:
      - one node (node_count 1): a required podAffinity on kubernetes.io/hostname to the job's workers: every worker
        on the node of the first (the scheduler lets the first pod through when no pod matches yet and it matches its
        own terms: satisfyPodAffinity, pkg/scheduler/framework/plugins/interpodaffinity/filtering.go);
      - one worker per node (per_node 1): a required podAntiAffinity on kubernetes.io/hostname: every worker on a node
        of its own, whatever other nodes exist;
      - several nodes of several pods: a topology spread of maxSkew 1 over kubernetes.io/hostname that counts only the
        nodes the pod may go to (nodeAffinityPolicy Honor: the node selector; nodeTaintsPolicy Honor: tainted control
        planes out; pkg/scheduler/framework/plugins/podtopologyspread/common.go). PER_NODE a node only when exactly
        NODE_COUNT eligible nodes have room: name them with the node selector (render says so)."""
    workers = {"matchLabels": {"xeontl/run-id": run_id, "xeontl/role": "worker"}}
    term = [{"labelSelector": workers, "topologyKey": HOSTNAME}]
    select = {"nodeSelector": {**IMAGE_PLATFORM, **(node_selector or {})}}
    if node_count == 1:
        worker = {"affinity": {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term}}}
    elif per_node == 1:
        worker = {"affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": term}}}
    else:
        worker = {"topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": HOSTNAME, "whenUnsatisfiable": "DoNotSchedule", "labelSelector": workers,
            "nodeAffinityPolicy": "Honor", "nodeTaintsPolicy": "Honor"}]}
    return {**select, **worker}, dict(select)


def manifest(plan: planlib.Plan, cfg: dict, run_id: str, image: str, results_claim: str,
             memory_per_rank_gib: int = 8, assets_claim: str | None = None,
             worker_cpus: int | None = None, reserved: list[int] | None = None,
             node_selector: dict | None = None, claim_mode: str = "ReadWriteMany", stack=None) -> list[dict]:
    """[ConfigMap, MPIJob]: a worker pod per socket (per NUMA node on SNC nodes) of the plan's node_count nodes, each
    WORKER_CPUS (default: the plan's socket) of Guaranteed integer CPUs, one rank each, placed by `placement`; with
    ASSETS_CLAIM, that claim read-only at ASSETS_MOUNT (the config's paths on it: assets_on_claim). RESERVED: the
    kubelet's reserved CPUs, named in the notes. CLAIM_MODE: the results claim's access mode, ReadWriteOnce only
    where every pod is on one node (the launcher then follows the workers). STACK: the workers need its CPU flags
    (k8s_cpu.require: NFD's node labels, a check at start), and CFG's precision its own (bf16: BF16 kernels)."""
    if plan.node_count < 1 or not plan.workers:
        raise UserError("a Kubernetes job needs at least one node with at least one socket")
    if claim_mode not in CLAIM_MODES:
        raise UserError(f"--claim-mode {claim_mode!r}: one of {', '.join(CLAIM_MODES)}")
    if claim_mode != "ReadWriteMany" and (plan.node_count > 1 or claim_mode == "ReadWriteOncePod"):
        raise UserError(f"--claim-mode {claim_mode}: the results claim {results_claim} is mounted by "
                        f"{plan.node_count * len(plan.workers) + 1} pods"
                        + (f" on {plan.node_count} nodes" if plan.node_count > 1 else "")
                        + ": it must be ReadWriteMany (a second node's pod would wait in ContainerCreating for ever)")
    name = f"xeontl-{run_id}".lower()
    # the ranks write the staged run dir; the launcher pod settles, records and renames it (k8s_launcher)
    output = f"{planlib.CONTAINER_RESULTS}/.staging-{run_id}"
    w = plan.workers[0]  # every pod is one socket's share, alike: one rank command for all
    rank = ["env", *[f"{k}={v}" for k, v in w.env.items()], "python", "-m", "xeontl",
            *planlib.train_args(w, f"{CONFIG_MOUNT}/config.json", output)]
    env = {**plan.env, "HOME": "/tmp", "XEONTL_HEARTBEAT": "1"}
    ranks = plan.node_count * len(plan.workers)
    launch = ["mpirun", "-np", str(ranks), *planlib.MPI_ARGS,
              *[a for k in [*sorted(env), *IMAGE_ENV] for a in ("-x", k)], *rank]
    volumes = [{"name": "results", "persistentVolumeClaim": {"claimName": results_claim}},
               {"name": "config", "configMap": {"name": name}}]
    mounts = [{"name": "results", "mountPath": planlib.CONTAINER_RESULTS},
              {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}]
    if assets_claim:  # the paper's weights and data, read by every rank, written by none
        volumes.append({"name": "assets", "persistentVolumeClaim": {"claimName": assets_claim, "readOnly": True}})
        mounts.append({"name": "assets", "mountPath": ASSETS_MOUNT, "readOnly": True})
    labels = {"app.kubernetes.io/name": "xeontl", "xeontl/run-id": run_id}
    worker_place, launcher_place = placement(run_id, plan.node_count, len(plan.workers), node_selector)
    if claim_mode == "ReadWriteOnce":  # one node's pods alone may mount it: the launcher goes to the workers' node
        launcher_place["affinity"] = {"podAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [
            {"labelSelector": {"matchLabels": {"xeontl/run-id": run_id, "xeontl/role": "worker"}},
             "topologyKey": HOSTNAME}]}}
    # no restartPolicy in the pod templates: the operator sets it from the replica spec's, and warns on every job
    # that sets one in the template (SetPodTemplateRestartPolicy, newLauncherPodTemplate in kubeflow/mpi-operator
    # v0.8.2 pkg/controller/mpi_job_controller.go)
    launcher = {"metadata": {"labels": {**labels, "xeontl/role": "launcher"}}, "spec": {
        "securityContext": _pod_security(), **launcher_place,
        "containers": [{
            "name": "launcher", "image": image,
            "command": ["xeontl-entrypoint", "python", "-m", "xeontl", "k8s-launch", "--run-id", run_id,
                        "--results-dir", planlib.CONTAINER_RESULTS, "--config-dir", CONFIG_MOUNT, "--", *launch],
            "env": [*({"name": k, "value": v} for k, v in env.items()),
                    # its bounds: the wait for the workers' names and sshd, a run with no rank progressing
                    {"name": WAIT_ENV, "value": str(WAIT_SECONDS)}, {"name": STALL_ENV, "value": str(STALL_SECONDS)},
                    {"name": FIRST_BEAT_ENV, "value": str(FIRST_BEAT_SECONDS)},
                    # the pod's own record for provenance.json (the downward API) and what it belongs to
                    {"name": "XEONTL_MPIJOB", "value": name}, {"name": "XEONTL_IMAGE", "value": image},
                    *({"name": k, "valueFrom": {"fieldRef": {"fieldPath": f}}} for k, f in (
                        ("XEONTL_POD_NAME", "metadata.name"), ("XEONTL_POD_NAMESPACE", "metadata.namespace"),
                        ("XEONTL_NODE_NAME", "spec.nodeName")))],
            "resources": json.loads(json.dumps(LAUNCHER_RESOURCES)), "securityContext": _security(),
            "volumeMounts": mounts}],
        "volumes": volumes}}
    worker = {"metadata": {"labels": {**labels, "xeontl/role": "worker"}}, "spec": {
        "securityContext": _pod_security(),
        "containers": [{
            "name": "worker", "image": image,
            # the node entrypoint: a non-root sshd on port 2222 that takes the operator's authorized_keys
            "command": ["xeontl-entrypoint", "node"],
            "env": [{"name": "XEONTL_AUTHORIZED_KEYS", "value": f"{SSH_AUTH_MOUNT}/authorized_keys"},
                    {"name": "HOME", "value": "/tmp"}],
            "ports": [{"containerPort": SSH_PORT, "name": "ssh"}],
            # Ready once its sshd answers: only then does the headless Service publish its name
            "readinessProbe": {"tcpSocket": {"port": SSH_PORT}, "periodSeconds": 2, "failureThreshold": 3},
            "resources": _resources(worker_cpus or len(w.cpus), memory_per_rank_gib),
            "securityContext": _security(),
            "volumeMounts": [*mounts, {"name": "shm", "mountPath": "/dev/shm"}]}],
        "volumes": [*volumes, {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM}}],
        # each pod's request is a whole socket's (NUMA node's) share, so a node takes one per socket and the
        # single-numa-node Topology Manager puts each on a NUMA node of its own
        **worker_place}}
    k8s_cpu.require(worker["spec"], stack or k8s_cpu.STACKS["default"], cfg["precision"])
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels},
                  "data": {"config.json": json.dumps(cfg, indent=1), "plan.json": json.dumps(plan.to_dict())}}
    job = {"apiVersion": API_VERSION, "kind": "MPIJob", "metadata": {
        "name": name, "labels": {**labels, NODES_LABEL: str(plan.node_count)}}, "spec": {
        "slotsPerWorker": 1,  # a pod per socket, a rank per pod: the kubelet pins each
        "sshAuthMountPath": SSH_AUTH_MOUNT,
        "mpiImplementation": "OpenMPI",
        "launcherCreationPolicy": "WaitForWorkersReady",
        # backoffLimit: the launcher Job's retries (a launcher that died with its node, or a failed run tried once
        # more: mpijob_launcher.launch_pod gives the retry a run dir of its own); activeDeadlineSeconds is the
        # operator's for the launcher Job only, which exists once the workers are Ready: the wait for them is
        # watched by `invoke reproduce --engine k8s` (k8s_watch), not by the operator (docs/engines.md)
        "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 1,
                      "activeDeadlineSeconds": deadline_seconds(cfg)},
        "mpiReplicaSpecs": {
            "Launcher": {"replicas": 1, "restartPolicy": "Never", "template": launcher},
            "Worker": {"replicas": ranks, "restartPolicy": "Never", "template": worker}}}}
    return [config_map, job]


def check(docs: list[dict], sockets: int, kube_version: str | None = None, threads: int = 1) -> list[str]:
    """Validate: the MPIJob against the vendored CRD schema, every pod template and the ConfigMap against
    Kubernetes' schemas (kubernetes-validate, when installed; returns what was checked), then the pinning rules.
    Raises UserError with the first problem."""
    import jsonschema

    checked = []
    job = next(d for d in docs if d.get("kind") == "MPIJob")
    try:
        records.validate(job, "mpijob")  # one validator, made once per process
    except jsonschema.ValidationError as e:
        where = "/".join(map(str, e.absolute_path))
        raise UserError(f"the MPIJob does not match the MPIJob CRD schema at {where}: {e.message}") from None
    checked.append("MPIJob: kubeflow/mpi-operator v2beta1 CRD schema")
    try:
        import kubernetes_validate
    except ImportError:
        kubernetes_validate = None
    if kubernetes_validate is not None:
        version = kube_version or kubernetes_validate.latest_version()
        if not re.fullmatch(r"v?\d+\.\d+(\.\d+)?", version):
            raise UserError(f"--kube-version {version!r}: must be a Kubernetes version MAJOR.MINOR[.PATCH], e.g. 1.30")
        known = sorted({kubernetes_validate.utils.major_minor(v) for v in kubernetes_validate.utils.all_versions()},
                       key=lambda v: tuple(map(int, v.split("."))))
        if kubernetes_validate.utils.major_minor(version.removeprefix("v")) not in known:
            raise UserError(f"--kube-version {version!r}: must be a Kubernetes version whose schemas "
                            f"kubernetes-validate has, {known[0]} to {known[-1]} (e.g. {known[-1]})")
        for role, spec in job["spec"]["mpiReplicaSpecs"].items():
            template = {"apiVersion": "v1", "kind": "PodTemplate", "metadata": {"name": f"check-{role.lower()}"},
                        "template": spec["template"]}
            try:
                kubernetes_validate.validate(template, version, strict=True)
            except kubernetes_validate.ValidationError as e:
                raise UserError(f"the {role} pod template is not valid Kubernetes {version}: "
                                f"{getattr(e, 'message', e)}") from None
        for d in docs:
            if d.get("kind") != "MPIJob":
                kubernetes_validate.validate(d, version, strict=True)
        checked.append(f"pod templates and ConfigMap: Kubernetes {version} schemas (kubernetes-validate)")
    problems = k8s_policy.pinning_problems(docs, threads)
    if problems:
        raise UserError(f"the MPIJob breaks the kubelet's or admission's rules: {problems[0]}"
                        + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    checked.append("kubelet and admission: a Guaranteed worker pod per socket (NUMA node) with integer CPUs in whole "
                   "cores, a Burstable launcher, slotsPerWorker 1, Pod Security restricted (every check of "
                   "pod-security-admission, init and ephemeral containers too), Memory-backed /dev/shm, a readiness "
                   "probe on sshd, placement over the eligible nodes, no restartPolicy in a template")
    return checked


def to_yaml(docs: list[dict]) -> str:
    import yaml

    return "---\n" + "---\n".join(yaml.safe_dump(d, sort_keys=False, width=120) for d in docs)


def parse_node_selector(text: str | None) -> dict:
    """--node-selector KEY=VALUE[,KEY=VALUE]: each a valid label (the API server's rules), or one line."""
    out = {}
    for item in filter(None, (text or "").split(",")):
        key, sep, value = item.strip().partition("=")
        problem = k8s_policy.label_problem(key, value) if sep else f"{item!r} is not KEY=VALUE"
        if not problem and IMAGE_PLATFORM.get(key, value) != value:
            problem = f"{key}={value}: the image runs on {key}={IMAGE_PLATFORM[key]} only"
        if not problem and key in out:
            problem = f"label key {key!r} given twice ({key}={out[key]}, {key}={value}): a node has one value a key"
        if problem:
            raise UserError(f"--node-selector {text!r}: {problem}")
        out[key] = value
    return out


class KubernetesEngine(Engine):
    """The MPIJob: rendered on this host for nodes like --topology (`invoke render --engine k8s`), applied by the user
    on their cluster, run by its launcher pod (`k8s-launch`, the same lifecycle end as every engine)."""

    mode = "kubernetes"
    sees_host_cache = False  # the pods see the claims, not this host

    def __init__(self, opts: Options, results_claim: str = "xeontl-results", memory_per_rank_gib: int = 8,
                 assets_claim: str | None = None):
        super().__init__(opts)
        self.results_claim, self.assets_claim = results_claim, assets_claim
        self.memory_per_rank_gib = memory_per_rank_gib
        self.kube_version: str | None = None
        self.checked: list[str] = []
        self.reserved: list[int] = []
        self.reserved_numa = 0  # the NUMA node of the reserved CPUs: the reserved memory goes there
        self.threads = 1
        self.worker_cpus: int | None = None
        self.node_selector: dict = {}
        self.claim_mode = "ReadWriteMany"
        self.notes: list[str] = []

    def check(self) -> None:
        given = [flag for flag, value in (("--native", self.opts.native), ("--hosts", self.opts.hosts),
                                          ("--partition", self.opts.partition), ("--time-limit", self.opts.time_limit),
                                          ("--container", self.opts.container), ("--resume", self.opts.resume),
                                          ("--emulate-sockets", self.opts.emulate_sockets)) if value]
        if given:
            raise UserError(f"{', '.join(given)}: not with the Kubernetes engine (the pods run the image on real "
                            f"sockets, the kubelet pins them; nodes: --nodes N)")

    def layout(self) -> dict:
        return {"node_count": self.opts.nodes, "relative": True}

    def kubelet(self) -> list[str]:
        return [f.format(reserved=cpulist(self.reserved), numa=self.reserved_numa) for f in KUBELET]

    def commands(self, job: Job) -> None:
        docs = manifest(job.plan, job.cfg, job.run_id, self.opts.image, self.results_claim, self.memory_per_rank_gib,
                        assets_claim=self.assets_claim, worker_cpus=self.worker_cpus, reserved=self.reserved,
                        node_selector=self.node_selector, claim_mode=self.claim_mode,
                        stack=k8s_cpu.stack_of(self.opts.stack, self.opts.image))
        self.checked = check(docs, self.opts.sockets, self.kube_version, self.threads)
        job.files[f"{job.run_id}.mpijob.yaml"] = (
            f"# xeontl {job.run_id}: {job.plan.describe().splitlines()[0]}\n"
            f"# kubelet on every node: {' '.join(self.kubelet())}\n"
            + "".join(f"# note: {n}\n" for n in self.notes)
            + "# checked: " + "; ".join(self.checked) + "\n" + to_yaml(docs))
        launcher = docs[1]["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
        job.command = launcher["command"]

    def describe(self, job: Job) -> str:
        pods = job.plan.node_count * len(job.plan.workers)
        return "\n".join([job.plan.describe(),
                          f"pods: {pods} workers of {self.worker_cpus} CPUs each, {len(job.plan.workers)} a node (one "
                          f"per socket, or per NUMA node: the kubelet pins them; the plan's CPU positions above are "
                          f"not used), and a Burstable launcher",
                          f"kubelet on every node: {' '.join(self.kubelet())}",
                          *(f"note: {n}" for n in self.notes),
                          *(f"checked: {c}" for c in self.checked)])


def render(opts: Options, results_claim: str, memory_per_rank_gib: int, output: Path | None,
           kube_version: str | None = None, assets_claim: str | None = None,
           reserved_cpus: str | None = None, node_selector: str | None = None,
           claim_mode: str = "ReadWriteMany", daemonset_cpus="500m") -> Path:
    """`invoke render --engine k8s`: the plan for nodes like --topology as a checked MPIJob manifest (written, not
    applied: no cluster runs here), each worker pod one socket's (on SNC nodes: one NUMA node's) allocatable share
    once the kubelet's reserved CPUs (RESERVED_CPUS, default: the first core of socket 0) are taken out."""
    from xeontl.launch import launch, options

    options.kube_name("--results-claim", results_claim)  # names that land in the manifest: Kubernetes' own rules
    if assets_claim is not None:
        options.kube_name("--assets-claim", assets_claim)
    engine = KubernetesEngine(opts, results_claim, memory_per_rank_gib, assets_claim)
    engine.kube_version = kube_version
    engine.check()
    daemonset = cpu_quantity("--daemonset-cpus", daemonset_cpus)
    engine.node_selector = parse_node_selector(node_selector)
    engine.claim_mode = claim_mode
    cfg = config.resolve(opts.profile, opts.overrides)
    engine.notes += filter(None, [k8s_cpu.note(k8s_cpu.stack_of(opts.stack, opts.image), cfg["precision"])])
    if assets_claim:
        cfg = assets_on_claim(cfg)
    topo = engine.topology()
    try:
        engine.reserved = sorted(topology.parse_cpulist(reserved_cpus)) if reserved_cpus else default_reserved(topo)
    except ValueError:
        raise UserError(f"--reserved-cpus {reserved_cpus!r}: must be a CPU list like 0,112 or 0-1") from None
    unknown = sorted(set(engine.reserved) - {c.cpu for c in topo.cpus})
    if unknown:
        raise UserError(f"--reserved-cpus {reserved_cpus}: CPU(s) {cpulist(unknown)} are not on the node "
                        f"({topo.source})")
    engine.reserved_numa = next((c.node for c in topo.cpus if c.cpu == engine.reserved[0] and c.node is not None), 0)
    engine.threads = topo.summary()["threads_per_core"] or 1
    real = len(topo.sockets(usable_only=False))
    if opts.sockets > real:
        raise UserError(f"--sockets {opts.sockets}: the node ({topo.source}) has {real}")
    split, per, layout = numa_split(topo)
    sockets = opts.sockets * per
    if layout:
        engine.notes.append(f"{per} NUMA nodes a socket ({layout}): single-numa-node admits a pod only on one NUMA "
                            f"node, so a worker pod (a rank) per NUMA node, {sockets} a node")
    if opts.nodes > 1 and sockets > 1:
        engine.notes.append(f"{sockets} workers a node on {opts.nodes} nodes: the spread fills exactly {opts.nodes} "
                            f"nodes only when {opts.nodes} eligible nodes have room; name them with --node-selector "
                            f"(reproduce --engine k8s counts them before applying)")
    if claim_mode == "ReadWriteMany":
        engine.notes.append(f"the claim {results_claim} must be ReadWriteMany (every pod mounts it"
                            + (f", on {opts.nodes} nodes" if opts.nodes > 1 else ", the launcher maybe on another "
                               "node") + "); fsGroup is applied only where its volume plugin allows it (a CSI "
                            "driver's fsGroupPolicy File, never in-tree NFS): its root must be writable by uid/gid "
                            f"{dockerapi.IMAGE_UID} otherwise (the launcher checks and says so)")
    cores, engine.worker_cpus = pod_cores(split, engine.reserved, opts.cores_per_socket)
    threads = engine.worker_cpus // cores
    cores, left = headroom_cores(topo, engine.reserved, sockets, cores, threads, daemonset, opts.cores_per_socket)
    engine.worker_cpus = cores * threads
    engine.notes.append(f"headroom: a node's {len(topo.cpus) - len(engine.reserved)} allocatable CPUs hold "
                        f"{sockets} worker pods of {engine.worker_cpus} CPUs and the launcher's {LAUNCHER_CPUS:g}, "
                        f"leaving {left:g} for DaemonSets' requests (--daemonset-cpus {daemonset:g})")
    plan = planlib.make_plan(split, sockets, False, cores, "mpi", **engine.layout())
    run_id = launch.new_run_id(cfg, opts.sockets)
    job = Job(opts, cfg, plan=plan, topo=None, run_id=run_id, staging=Path(), engine=engine)
    engine.commands(job)
    out = output or opts.results_dir / f"{run_id}.mpijob.yaml"
    launch.check_results_dir(out.parent, need_bytes=1 << 20)
    if out.exists():
        raise UserError(f"{out} exists: choose another --output, nothing was overwritten")
    if not assets_claim and reads_files(cfg):  # no pod sees this host's files; the image holds no weights nor data
        raise UserError(f"profile {cfg['profile']} reads {' and '.join(reads_files(cfg))}, which no pod can see: give "
                        f"--assets-claim NAME (a ReadOnlyMany or ReadWriteMany claim laid out as docs/engines.md "
                        f"says), or --set weights=random --set dataset=synthetic")
    out.write_text(job.files[f"{run_id}.mpijob.yaml"])
    print(engine.describe(job))
    print(f"xeontl: wrote {out} (kubectl apply -f {out}; needs the Kubeflow MPI Operator, nodes whose kubelet runs "
          f"as above, and a {claim_mode} PVC {results_claim}"
          + (f", and a ReadOnlyMany (or ReadWriteMany) PVC {assets_claim} holding the assets, mounted read-only by "
             f"every pod" + (f" on {opts.nodes} nodes" if opts.nodes > 1 else "") + " (docs/engines.md)"
             if assets_claim else "") + ")")
    return out
