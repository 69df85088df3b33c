"""The Kubernetes engine: the plan as a Kubeflow MPI Operator `MPIJob` (kubeflow.org/v2beta1), plus a ConfigMap with
the run's resolved config and plan (`invoke render --engine k8s`), and what its launcher pod runs (`python -m xeontl
k8s-launch`): its mpirun across the worker pods, then the run's lifecycle end as every engine has it (settled,
recorded with the pod's own record, reported, renamed). plan.py decides every CPU, thread and env value; this module
only places them in the manifest. Users apply the manifest on their cluster; here `check()` validates it against the
MPIJob CRD's published schema (vendored in schemas/, source and commit named there), the pod templates against
Kubernetes' own schemas (kubernetes-validate), and the pinning rules a static CPU manager needs, and the tests run it
under the operator's contract (tests/mpijob_harness.py).

Layout: a launcher pod runs `mpirun` over ssh (the operator's keys Secret, mounted at sshAuthMountPath) into N worker
pods, one per node (anti-affinity on hostname), each worker running `slotsPerWorker` = sockets ranks pinned as the plan
says, by position in the pod's cpuset. Workers are Guaranteed QoS with integer CPUs (requests = limits), so the
kubelet's static CPU manager gives them whole, exclusive cores.
"""

from __future__ import annotations

import json
import os
import re
import shlex
from importlib import resources
from pathlib import Path

from xeontl import config, dockercli
from xeontl import plan as planlib
from xeontl.engines import Engine, Job
from xeontl.engines.host import run_teed
from xeontl.errors import UserError
from xeontl.options import Options

API_VERSION = "kubeflow.org/v2beta1"
SSH_AUTH_MOUNT = "/home/xeontl/.ssh"  # the image's user's ~/.ssh: the operator's Secret lands here
CONFIG_MOUNT = "/etc/xeontl"  # the ConfigMap: config.json, plan.json
ASSETS_MOUNT = "/assets"  # --assets-claim: the weights and data, read-only
SHM = "2Gi"
# The image's own ENV (docker/deps.Dockerfile). mpirun starts the remote ranks through ssh, whose sessions begin with
# sshd's default environment, not the image's: without these forwarded, a worker's rank found no `python` (the venv
# is /opt/venv/bin) nor the package (PYTHONPATH). Found by running the MPIJob under the operator's contract.
IMAGE_ENV = ("PATH", "PYTHONPATH", "XEONTL_LOCK_FILE", "TF_CPP_MIN_LOG_LEVEL", "PYTHONDONTWRITEBYTECODE")


def _security() -> dict:
    uid = dockercli.IMAGE_UID
    return {"runAsNonRoot": True, "runAsUser": uid, "runAsGroup": uid, "allowPrivilegeEscalation": False,
            # the plan's capabilities (numactl -m needs SYS_NICE); nothing else, never privileged
            "capabilities": {"drop": ["ALL"], "add": list(planlib.CAPABILITIES)}}


def _resources(cpu: int, memory_gib: int) -> dict:
    amount = {"cpu": str(cpu), "memory": f"{memory_gib}Gi"}
    return {"requests": dict(amount), "limits": dict(amount)}  # requests = limits: Guaranteed QoS


def assets_on_claim(cfg: dict) -> dict:
    """The config with every file it reads (weights, data) placed on the assets claim, mounted read-only at
    ASSETS_MOUNT in every pod: weights/<name>, tensorflow_datasets/ (TFDS's data dir, prepared by `invoke assets`),
    manual/ (the Kather archive), data/<name> (a folder dataset). `invoke assets --set weights=savedmodel:ROOT/weights/
    NAME --set data_dir=ROOT/tensorflow_datasets --set manual_dir=ROOT/manual` lays a directory out so."""
    from xeontl import assets

    out = assets.placed(cfg, lambda p: f"{ASSETS_MOUNT}/weights/{p.name}", lambda p: f"{ASSETS_MOUNT}/data/{p.name}",
                        lambda c: (f"{ASSETS_MOUNT}/tensorflow_datasets", f"{ASSETS_MOUNT}/manual"))
    if out == cfg:
        raise UserError(f"--assets-claim: profile {cfg['profile']} reads no weights or data files (random weights, "
                        f"synthetic data): drop --assets-claim, or give --set weights=savedmodel:NAME")
    return out


def manifest(plan: planlib.Plan, cfg: dict, run_id: str, image: str, results_claim: str,
             memory_per_rank_gib: int = 8, launcher_cpu: int = 1, assets_claim: str | None = None) -> list[dict]:
    """[ConfigMap, MPIJob] for the plan's node_count nodes; with ASSETS_CLAIM, that claim read-only at ASSETS_MOUNT
    (the config's paths on it: assets_on_claim)."""
    if plan.node_count < 1 or not plan.workers:
        raise UserError("a Kubernetes job needs at least one node with at least one socket")
    name = f"xeontl-{run_id}".lower()
    # the ranks write the staged run dir; the launcher pod settles, records and renames it (k8s_launcher)
    output = f"{planlib.CONTAINER_RESULTS}/.staging-{run_id}"

    def rank_args(w: planlib.Worker) -> list[str]:
        return planlib.train_args(w, f"{CONFIG_MOUNT}/config.json", output)

    env = {**plan.env, "HOME": "/tmp"}
    launch = mpirun_command(plan, rank_args, sorted(env) + list(IMAGE_ENV))
    volumes = [{"name": "results", "persistentVolumeClaim": {"claimName": results_claim}},
               {"name": "config", "configMap": {"name": name}}]
    mounts = [{"name": "results", "mountPath": planlib.CONTAINER_RESULTS},
              {"name": "config", "mountPath": CONFIG_MOUNT, "readOnly": True}]
    if assets_claim:  # the paper's weights and data, read by every rank, written by none
        volumes.append({"name": "assets", "persistentVolumeClaim": {"claimName": assets_claim, "readOnly": True}})
        mounts.append({"name": "assets", "mountPath": ASSETS_MOUNT, "readOnly": True})
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


def mpirun_command(plan: planlib.Plan, rank_args, env_names) -> list[str]:
    """mpirun across the hosts of a hostfile (the MPI Operator's launcher): one rank per socket of every host, each
    exec'ing its own socket's command; the env is forwarded by name (ssh sessions do not inherit a pod's env)."""
    return ["mpirun", "-np", str(plan.total_workers), *planlib.MPI_ARGS,
            *[a for name in env_names for a in ("-x", name)], *planlib.rank_wrapper(plan, rank_args)]



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
        if (sec.get("privileged") or caps.get("add", []) != list(planlib.CAPABILITIES)
                or "ALL" not in caps.get("drop", [])):
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

    def check(self) -> None:
        given = [flag for flag, value in (("--native", self.opts.native), ("--hosts", self.opts.hosts),
                                          ("--partition", self.opts.partition), ("--time-limit", self.opts.time_limit),
                                          ("--container", self.opts.container), ("--resume", self.opts.resume))
                 if value]
        if given:
            raise UserError(f"{', '.join(given)}: not with the Kubernetes engine (the pods run the image; nodes: "
                            f"--nodes N; the cluster's scheduler places them)")

    def layout(self) -> dict:
        return {"node_count": self.opts.nodes, "relative": True}

    def commands(self, job: Job) -> None:
        docs = manifest(job.plan, job.cfg, job.run_id, self.opts.image, self.results_claim, self.memory_per_rank_gib,
                        assets_claim=self.assets_claim)
        self.checked = check(docs, self.opts.sockets, self.kube_version)
        job.files[f"{job.run_id}.mpijob.yaml"] = (f"# xeontl {job.run_id}: {job.plan.describe().splitlines()[0]}\n"
                                                  f"# checked: " + "; ".join(self.checked) + "\n" + to_yaml(docs))
        launcher = docs[1]["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
        job.command = launcher["command"]

    def describe(self, job: Job) -> str:
        return "\n".join([job.plan.describe(), *(f"checked: {c}" for c in self.checked)])


def render(opts: Options, results_claim: str, memory_per_rank_gib: int, output: Path | None,
           kube_version: str | None = None, assets_claim: str | None = None) -> Path:
    """`invoke render --engine k8s`: the plan for nodes like --topology as a checked MPIJob manifest (written, not
    applied: no cluster runs here)."""
    from xeontl import launch

    engine = KubernetesEngine(opts, results_claim, memory_per_rank_gib, assets_claim)
    engine.kube_version = kube_version
    engine.check()
    cfg = config.resolve(opts.profile, opts.overrides)
    if assets_claim:
        cfg = assets_on_claim(cfg)
    plan = planlib.make_plan(engine.topology(), opts.sockets, opts.emulate_sockets, opts.cores_per_socket, "mpi",
                             **engine.layout())
    run_id = launch.new_run_id(cfg, opts.sockets)
    job = Job(opts, cfg, plan=plan, topo=None, run_id=run_id, staging=Path(), engine=engine)
    engine.commands(job)
    out = output or opts.results_dir / f"{run_id}.mpijob.yaml"
    launch.check_results_dir(out.parent, need_bytes=1 << 20)
    if out.exists():
        raise UserError(f"{out} exists: choose another --output, nothing was overwritten")
    out.write_text(job.files[f"{run_id}.mpijob.yaml"])
    print(engine.describe(job))
    print(f"xeontl: wrote {out} (kubectl apply -f {out}; needs the Kubeflow MPI Operator and a PVC {results_claim}"
          + (f", and a PVC {assets_claim} holding the assets (docs/engines.md)" if assets_claim else "") + ")")
    return out


# ------------------------------------------------------------------------------------------------ the launcher pod
# The downward API values the rendered launcher gets (manifest), and the MPIJob it belongs to.
DOWNWARD = {"pod": "XEONTL_POD_NAME", "namespace": "XEONTL_POD_NAMESPACE", "node": "XEONTL_NODE_NAME",
            "job": "XEONTL_MPIJOB", "image": "XEONTL_IMAGE"}


class LauncherPod(Engine):
    """The engine as its launcher pod runs it: its mpirun across the worker pods; the pod's own record."""

    mode = "kubernetes"

    def run(self, job: Job, staging: Path):
        return run_teed(job.command, staging / "logs-launcher.txt", dict(os.environ))

    def execution(self) -> dict:
        return {"mode": self.mode,
                "kubernetes": {k: os.environ.get(v) for k, v in DOWNWARD.items() if k != "image"},
                "image": {"ref": os.environ.get(DOWNWARD["image"])},
                "capabilities_added": list(planlib.CAPABILITIES)}

    def explain(self, log: str) -> dict | None:
        hostfile = Path(os.environ.get("OMPI_MCA_orte_default_hostfile", "/etc/mpi/hostfile"))
        return lost_node(log, hostfile.read_text() if hostfile.is_file() else "")


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


def launch_pod(run_id: str, results: Path, config_dir: Path, command: list[str]) -> int:
    """`python -m xeontl k8s-launch`: stage the run dir on the results volume from the ConfigMap, run the mpirun,
    then end the run as every engine does (launch.conclude)."""
    import time
    from datetime import datetime, timezone

    from xeontl import launch

    if not command:
        raise UserError("k8s-launch needs the launch command after --, e.g. -- mpirun ...")
    staging, final = results / f".staging-{run_id}", results / run_id
    if final.exists():
        raise UserError(f"{final} exists: a run id is never reused; nothing was overwritten")
    missing = [f for f in ("config.json", "plan.json") if not (config_dir / f).is_file()]
    if missing:
        raise UserError(f"{config_dir} lacks {', '.join(missing)}: mount the run's ConfigMap there (the rendered "
                        f"manifest does)")
    staging.mkdir(exist_ok=True)  # a restarted launcher pod continues into the same staging dir
    for f in ("config.json", "plan.json"):
        (staging / f).write_bytes((config_dir / f).read_bytes())
    cfg, plan = (json.loads((staging / f).read_text()) for f in ("config.json", "plan.json"))
    (staging / "command.txt").write_text(f"# launcher pod {os.environ.get(DOWNWARD['pod'])}\n{shlex.join(command)}\n")
    engine = LauncherPod(Options())
    job = Job(engine.opts, cfg, topo=None, plan=None, run_id=run_id, staging=staging, command=command, engine=engine)
    started, t0 = datetime.now(timezone.utc).isoformat(), time.time()
    ended = engine.run(job, staging)
    return launch.conclude(engine, staging, final, cfg, plan, ended, started, t0)[0]
