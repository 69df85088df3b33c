"""Kubernetes: the plan as a Kubeflow MPI Operator `MPIJob` (kubeflow.org/v2beta1), plus a ConfigMap with the run's
resolved config and plan. Pure rendering and checking; plan.py decides every CPU, thread and env value, this module
only places them in the manifest. No cluster runs here: `check()` validates against the MPIJob CRD's published
schema (vendored in schemas/, source and commit named there), the pod templates against Kubernetes' own schemas
(kubernetes-validate, where installed), and the pinning rules a static CPU manager needs.

Layout: a launcher pod runs `mpirun` over ssh (the operator's keys Secret, mounted at sshAuthMountPath) into N worker
pods, one per node (anti-affinity on hostname), each worker running `slotsPerWorker` = sockets ranks pinned as the plan
says, by position in the pod's cpuset. Workers are Guaranteed QoS with integer CPUs (requests = limits), so the
kubelet's static CPU manager gives them whole, exclusive cores.
"""

from __future__ import annotations

import json
from importlib import resources

from xeontl import plan as planlib
from xeontl.errors import UserError

API_VERSION = "kubeflow.org/v2beta1"
SSH_AUTH_MOUNT = "/home/xeontl/.ssh"  # the image's user's ~/.ssh: the operator's Secret lands here
CONFIG_MOUNT = "/etc/xeontl"  # the ConfigMap: config.json, plan.json
IMAGE_UID = 1000
SHM = "2Gi"
# The image's own ENV (docker/deps.Dockerfile). mpirun starts the remote ranks through ssh, whose sessions begin with
# sshd's default environment, not the image's: without these forwarded, a worker's rank found no `python` (the venv
# is /opt/venv/bin) nor the package (PYTHONPATH). Found by running the MPIJob under the operator's contract.
IMAGE_ENV = ("PATH", "PYTHONPATH", "XEONTL_LOCK_FILE", "TF_CPP_MIN_LOG_LEVEL", "PYTHONDONTWRITEBYTECODE")


def _security() -> dict:
    return {"runAsNonRoot": True, "runAsUser": IMAGE_UID, "runAsGroup": IMAGE_UID, "allowPrivilegeEscalation": False,
            # numactl -m needs SYS_NICE (set_mempolicy); nothing else, never privileged
            "capabilities": {"drop": ["ALL"], "add": ["SYS_NICE"]}}


def _resources(cpu: int, memory_gib: int) -> dict:
    amount = {"cpu": str(cpu), "memory": f"{memory_gib}Gi"}
    return {"requests": dict(amount), "limits": dict(amount)}  # requests = limits: Guaranteed QoS


def manifest(plan: planlib.Plan, cfg: dict, run_id: str, image: str, results_claim: str,
             memory_per_rank_gib: int = 8, launcher_cpu: int = 1) -> list[dict]:
    """[ConfigMap, MPIJob] for the plan's node_count nodes."""
    if plan.node_count < 1 or not plan.workers:
        raise UserError("a Kubernetes job needs at least one node with at least one socket")
    name = f"xeontl-{run_id}".lower()
    # the ranks write the staged run dir; the launcher pod settles, records and renames it (k8s_launcher)
    output = f"{planlib.CONTAINER_RESULTS}/.staging-{run_id}"

    def rank_args(w: planlib.Worker) -> list[str]:
        return planlib.train_args(w, f"{CONFIG_MOUNT}/config.json", output)

    env = {**plan.env, "HOME": "/tmp"}
    launch = planlib.mpirun_command(plan, rank_args, sorted(env) + list(IMAGE_ENV))
    volumes = [{"name": "results", "persistentVolumeClaim": {"claimName": results_claim}},
               {"name": "config", "configMap": {"name": name}}]
    mounts = [{"name": "results", "mountPath": planlib.CONTAINER_RESULTS},
              {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}]
    labels = {"app.kubernetes.io/name": "xeontl", "xeontl/run-id": run_id}
    worker_cpus = len(plan.cpus)  # every CPU of the sockets it runs: cores + their hyper-thread siblings
    launcher = {"metadata": {"labels": {**labels, "xeontl/role": "launcher"}}, "spec": {
        "restartPolicy": "Never",
        "containers": [{
            "name": "launcher", "image": image,
            "command": ["xeontl-entrypoint", "python", "-m", "xeontl", "k8s-launch", "--run-id", run_id,
                        "--results-dir", planlib.CONTAINER_RESULTS, "--config-dir", CONFIG_MOUNT, "--", *launch],
            "env": [*({"name": k, "value": v} for k, v in env.items()),
                    # the pod's own record for provenance.json (the downward API) and what it belongs to
                    {"name": "XEONTL_MPIJOB", "value": name}, {"name": "XEONTL_IMAGE", "value": image},
                    *({"name": k, "valueFrom": {"fieldRef": {"fieldPath": f}}} for k, f in (
                        ("XEONTL_POD_NAME", "metadata.name"), ("XEONTL_POD_NAMESPACE", "metadata.namespace"),
                        ("XEONTL_NODE_NAME", "spec.nodeName")))],
            "resources": _resources(launcher_cpu, 1), "securityContext": _security(), "volumeMounts": mounts}],
        "volumes": volumes}}
    worker = {"metadata": {"labels": {**labels, "xeontl/role": "worker"}}, "spec": {
        "containers": [{
            "name": "worker", "image": image,
            # the node entrypoint: a non-root sshd on port 2222 that takes the operator's authorized_keys
            "command": ["xeontl-entrypoint", "node"],
            "env": [{"name": "XEONTL_AUTHORIZED_KEYS", "value": f"{SSH_AUTH_MOUNT}/authorized_keys"},
                    {"name": "HOME", "value": "/tmp"}],
            "ports": [{"containerPort": 2222, "name": "ssh"}],
            "resources": _resources(worker_cpus, memory_per_rank_gib * len(plan.workers)),
            "securityContext": _security(),
            "volumeMounts": [*mounts, {"name": "shm", "mountPath": "/dev/shm"}]}],
        "volumes": [*volumes, {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": SHM}}],
        # one worker per node: each runs the plan's one-rank-per-socket layout on a node of its own
        "affinity": {"podAntiAffinity": {"requiredDuringSchedulingIgnoredDuringExecution": [{
            "labelSelector": {"matchLabels": {"xeontl/run-id": run_id, "xeontl/role": "worker"}},
            "topologyKey": "kubernetes.io/hostname"}]}}}}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels},
                  "data": {"config.json": json.dumps(cfg, indent=1), "plan.json": json.dumps(plan.to_dict())}}
    job = {"apiVersion": API_VERSION, "kind": "MPIJob", "metadata": {"name": name, "labels": labels}, "spec": {
        "slotsPerWorker": len(plan.workers),  # one slot per socket
        "sshAuthMountPath": SSH_AUTH_MOUNT,
        "mpiImplementation": "OpenMPI",
        "launcherCreationPolicy": "WaitForWorkersReady",
        "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 0},
        "mpiReplicaSpecs": {
            "Launcher": {"replicas": 1, "restartPolicy": "Never", "template": launcher},
            "Worker": {"replicas": plan.node_count, "restartPolicy": "Never", "template": worker}}}}
    return [config_map, job]


def crd_schema() -> dict:
    return json.loads(resources.files("xeontl.schemas").joinpath("mpijob-v2beta1.schema.json").read_text())


def _containers(job: dict):
    for role, spec in job["spec"]["mpiReplicaSpecs"].items():
        for c in spec["template"]["spec"]["containers"]:
            yield role, spec, c


def pinning_problems(docs: list[dict], sockets: int) -> list[str]:
    """The rules the plan's pinning needs from Kubernetes, as (role: what is wrong) strings; [] when all hold."""
    job = next(d for d in docs if d.get("kind") == "MPIJob")
    out = []
    if job["spec"].get("slotsPerWorker") != sockets:
        out.append(f"slotsPerWorker {job['spec'].get('slotsPerWorker')} != {sockets} sockets (one rank per socket)")
    for role, spec, c in _containers(job):
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        for what in ("cpu", "memory"):
            if what not in req or req.get(what) != lim.get(what):
                out.append(f"{role}: {what} requests != limits (Guaranteed QoS needs them equal)")
        if not str(req.get("cpu", "")).isdigit():
            out.append(f"{role}: cpu {req.get('cpu')!r} is not a whole number (the static CPU manager pins only "
                       f"integer CPUs)")
        sec = c.get("securityContext") or {}
        caps = sec.get("capabilities") or {}
        if sec.get("privileged") or caps.get("add", []) != ["SYS_NICE"] or "ALL" not in caps.get("drop", []):
            out.append(f"{role}: capabilities must be SYS_NICE only (drop ALL), never privileged")
        if not sec.get("runAsNonRoot"):
            out.append(f"{role}: must run as non-root")
        if role == "Worker":
            vols = {v["name"]: v for v in spec["template"]["spec"].get("volumes", [])}
            shm = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"]
            if not shm or (vols.get(shm[0]["name"], {}).get("emptyDir") or {}).get("medium") != "Memory":
                out.append("Worker: /dev/shm must be a Memory-backed emptyDir (OpenMPI's shared memory)")
            anti = ((spec["template"]["spec"].get("affinity") or {}).get("podAntiAffinity") or {})
            terms = anti.get("requiredDuringSchedulingIgnoredDuringExecution") or []
            if not any(t.get("topologyKey") == "kubernetes.io/hostname" for t in terms):
                out.append("Worker: needs required pod anti-affinity on kubernetes.io/hostname (one worker per node)")
    return out


def check(docs: list[dict], sockets: int, kube_version: str | None = None) -> list[str]:
    """Validate: the MPIJob against the vendored CRD schema, every pod template and the ConfigMap against
    Kubernetes' schemas (kubernetes-validate, when installed; returns what was checked), then the pinning rules.
    Raises UserError with the first problem."""
    import jsonschema

    checked = []
    job = next(d for d in docs if d.get("kind") == "MPIJob")
    try:
        jsonschema.validate(job, crd_schema())
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
    problems = pinning_problems(docs, sockets)
    if problems:
        raise UserError(f"the MPIJob breaks the pinning rules: {problems[0]}"
                        + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    checked.append("pinning: Guaranteed QoS, integer CPUs, slotsPerWorker = sockets, SYS_NICE only, non-root, "
                   "Memory-backed /dev/shm, anti-affinity on hostname")
    return checked


def to_yaml(docs: list[dict]) -> str:
    import yaml

    return "---\n" + "---\n".join(yaml.safe_dump(d, sort_keys=False, width=120) for d in docs)
