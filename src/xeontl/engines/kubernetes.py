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
from importlib import resources
from pathlib import Path

from xeontl.common.errors import UserError
from xeontl.engines.base import Engine, Job
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
WAIT_ENV, STALL_ENV = "XEONTL_WORKER_WAIT_SECONDS", "XEONTL_STALL_SECONDS"
WAIT_SECONDS, STALL_SECONDS = 600, 600  # the launcher's bounds, each overridable in its env (the manifest sets both)
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


# What the nodes' kubelets must run with for the pods to be pinned as the plan says (the kubelet's flags; the same
# fields exist in its KubeletConfiguration file). Sources: kubernetes/kubernetes pkg/kubelet/cm/cpumanager
# (policy_static.go: exclusive CPUs for integer requests of Guaranteed pods; the policy refuses to start without
# reserved CPUs), pkg/kubelet/cm/topologymanager (policy_single_numa_node.go: admission fails with
# TopologyAffinityError when no single NUMA node fits), pkg/kubelet/cm/memorymanager (policy_static.go).
KUBELET = ("--cpu-manager-policy=static", "--reserved-cpus={reserved}", "--cpu-manager-policy-options="
           "full-pcpus-only=true", "--topology-manager-policy=single-numa-node", "--topology-manager-scope=pod",
           "--memory-manager-policy=Static", "--reserved-memory=0:memory=<the kube and system reserve>")


def default_reserved(topo) -> list[int]:
    """The kubelet's reserved CPUs when none are given: the first core of the first socket, with its siblings (the
    static policy needs at least one; whole cores keep full-pcpus-only possible)."""
    return list(topo.sockets(usable_only=False)[0].cores[0].cpus)


def pod_cores(topo, reserved: list[int], wanted: int = 0) -> tuple[int, int]:
    """(whole cores per worker pod, CPUs it requests): the most whole cores every socket still has free once the
    reserved CPUs are taken out (a pod of one socket must fit the smallest share), or WANTED if that fits. One line
    when it cannot: such a pod would stay Pending, or fail the Topology Manager's admission, for ever."""
    socks = topo.sockets(usable_only=False)
    threads = max(len(c.cpus) for s in socks for c in s.cores)
    free = {s.id: sum(1 for c in s.cores if not set(c.cpus) & set(reserved)) for s in socks}
    fits = min(free.values())
    if fits == 0:
        raise UserError(f"reserved CPUs {cpulist(reserved)} leave socket(s) "
                        f"{', '.join(str(k) for k, v in free.items() if v == 0)} no whole core: a pod per socket "
                        f"cannot fit; reserve fewer CPUs (--reserved-cpus)")
    if wanted and wanted > fits:
        raise UserError(f"--cores-per-socket {wanted}: a worker pod would request {wanted * threads} CPUs, but with "
                        f"the kubelet's reserved CPUs {cpulist(reserved)} the smallest socket's allocatable share is "
                        f"{fits} whole cores ({fits * threads} CPUs): the pod would stay Pending (or fail "
                        f"single-numa-node admission); use --cores-per-socket {fits} or fewer")
    cores = wanted or fits
    return cores, cores * threads


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


def manifest(plan: planlib.Plan, cfg: dict, run_id: str, image: str, results_claim: str,
             memory_per_rank_gib: int = 8, launcher_cpu: int = 1, assets_claim: str | None = None,
             worker_cpus: int | None = None, reserved: list[int] | None = None) -> list[dict]:
    """[ConfigMap, MPIJob]: a worker pod per socket of the plan's node_count nodes, each WORKER_CPUS (default: the
    plan's socket) of Guaranteed integer CPUs, one rank each; with ASSETS_CLAIM, that claim read-only at ASSETS_MOUNT
    (the config's paths on it: assets_on_claim). RESERVED: the kubelet's reserved CPUs, named in the notes."""
    if plan.node_count < 1 or not plan.workers:
        raise UserError("a Kubernetes job needs at least one node with at least one socket")
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
    launcher = {"metadata": {"labels": {**labels, "xeontl/role": "launcher"}}, "spec": {
        "restartPolicy": "Never", "securityContext": _pod_security(),
        "containers": [{
            "name": "launcher", "image": image,
            "command": ["xeontl-entrypoint", "python", "-m", "xeontl", "k8s-launch", "--run-id", run_id,
                        "--results-dir", planlib.CONTAINER_RESULTS, "--config-dir", CONFIG_MOUNT, "--", *launch],
            "env": [*({"name": k, "value": v} for k, v in env.items()),
                    # its bounds: the wait for the workers' names and sshd, a run with no rank progressing
                    {"name": WAIT_ENV, "value": str(WAIT_SECONDS)}, {"name": STALL_ENV, "value": str(STALL_SECONDS)},
                    # the pod's own record for provenance.json (the downward API) and what it belongs to
                    {"name": "XEONTL_MPIJOB", "value": name}, {"name": "XEONTL_IMAGE", "value": image},
                    *({"name": k, "valueFrom": {"fieldRef": {"fieldPath": f}}} for k, f in (
                        ("XEONTL_POD_NAME", "metadata.name"), ("XEONTL_POD_NAMESPACE", "metadata.namespace"),
                        ("XEONTL_NODE_NAME", "spec.nodeName")))],
            "resources": _resources(launcher_cpu, 1), "securityContext": _security(), "volumeMounts": mounts}],
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
        # the pods spread evenly over the nodes; each one's request is a whole socket's share, so a node takes one
        # per socket and the single-numa-node Topology Manager puts each on a socket of its own
        "topologySpreadConstraints": [{
            "maxSkew": 1, "topologyKey": "kubernetes.io/hostname", "whenUnsatisfiable": "DoNotSchedule",
            "labelSelector": {"matchLabels": {"xeontl/run-id": run_id, "xeontl/role": "worker"}}}]}}
    config_map = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name, "labels": labels},
                  "data": {"config.json": json.dumps(cfg, indent=1), "plan.json": json.dumps(plan.to_dict())}}
    job = {"apiVersion": API_VERSION, "kind": "MPIJob", "metadata": {"name": name, "labels": labels}, "spec": {
        "slotsPerWorker": 1,  # a pod per socket, a rank per pod: the kubelet pins each
        "sshAuthMountPath": SSH_AUTH_MOUNT,
        "mpiImplementation": "OpenMPI",
        "launcherCreationPolicy": "WaitForWorkersReady",
        # backoffLimit: the launcher Job's retries (a launcher that died with its node); activeDeadlineSeconds is
        # the operator's for the launcher Job only, which exists once the workers are Ready: the wait for them is
        # not covered (docs/engines.md)
        "runPolicy": {"cleanPodPolicy": "Running", "backoffLimit": 1},
        "mpiReplicaSpecs": {
            "Launcher": {"replicas": 1, "restartPolicy": "Never", "template": launcher},
            "Worker": {"replicas": ranks, "restartPolicy": "Never", "template": worker}}}}
    return [config_map, job]


def crd_schema() -> dict:
    return json.loads(resources.files("xeontl.schemas").joinpath("mpijob-v2beta1.schema.json").read_text())


def _containers(job: dict):
    for role, spec in job["spec"]["mpiReplicaSpecs"].items():
        for c in spec["template"]["spec"]["containers"]:
            yield role, spec, c


# Pod Security Standards, "baseline" (k8s.io/pod-security-admission policy/check_capabilities_baseline.go): the only
# capabilities a container may add. "restricted" allows NET_BIND_SERVICE alone and wants ALL dropped.
BASELINE_CAPABILITIES = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                                   "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})


def pinning_problems(docs: list[dict], sockets: int) -> list[str]:
    """The rules the kubelet and admission hold the pods to, as (role: what is wrong) strings; [] when all hold."""
    job = next(d for d in docs if d.get("kind") == "MPIJob")
    out = []
    if job["spec"].get("slotsPerWorker") != 1:
        out.append(f"slotsPerWorker {job['spec'].get('slotsPerWorker')}: a pod per socket runs one rank, the kubelet "
                   f"pins it (slotsPerWorker 1)")
    for role, spec, c in _containers(job):
        pod = spec["template"]["spec"]
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
        if sec.get("privileged") or "ALL" not in caps.get("drop", []) or caps.get("add"):
            out.append(f"{role}: capabilities must all be dropped, none added (Pod Security restricted; "
                       f"{', '.join(caps.get('add', []))} is not even baseline's)" if set(caps.get("add", []))
                       - BASELINE_CAPABILITIES else f"{role}: capabilities must all be dropped, none added")
        if not (sec.get("runAsNonRoot") or (pod.get("securityContext") or {}).get("runAsNonRoot")):
            out.append(f"{role}: must run as non-root")
        seccomp = (sec.get("seccompProfile") or (pod.get("securityContext") or {}).get("seccompProfile") or {})
        if seccomp.get("type") not in ("RuntimeDefault", "Localhost"):
            out.append(f"{role}: needs seccompProfile RuntimeDefault (Pod Security restricted)")
        if "fsGroup" not in (pod.get("securityContext") or {}):
            out.append(f"{role}: needs a pod fsGroup (a PVC's root is root's: the non-root ranks could not write)")
        if role == "Worker":
            vols = {v["name"]: v for v in pod.get("volumes", [])}
            shm = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"]
            if not shm or (vols.get(shm[0]["name"], {}).get("emptyDir") or {}).get("medium") != "Memory":
                out.append("Worker: /dev/shm must be a Memory-backed emptyDir (OpenMPI's shared memory)")
            if not (c.get("readinessProbe") or {}).get("tcpSocket"):
                out.append("Worker: needs a readiness probe on its sshd (only Ready pods get a DNS name)")
            spread = pod.get("topologySpreadConstraints") or []
            if not any(t.get("topologyKey") == "kubernetes.io/hostname" and t.get("maxSkew") == 1 for t in spread):
                out.append("Worker: needs a topology spread of maxSkew 1 over kubernetes.io/hostname (pods even "
                           "over the nodes)")
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
    problems = pinning_problems(docs, sockets)
    if problems:
        raise UserError(f"the MPIJob breaks the kubelet's or admission's rules: {problems[0]}"
                        + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""))
    checked.append("kubelet and admission: a Guaranteed pod per socket with integer CPUs, slotsPerWorker 1, "
                   "Pod Security restricted (non-root, all capabilities dropped, RuntimeDefault seccomp), fsGroup, "
                   "Memory-backed /dev/shm, a readiness probe on sshd, spread over the nodes")
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
        self.reserved: list[int] = []
        self.worker_cpus: int | None = None

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
        return [f.format(reserved=cpulist(self.reserved)) for f in KUBELET]

    def commands(self, job: Job) -> None:
        docs = manifest(job.plan, job.cfg, job.run_id, self.opts.image, self.results_claim, self.memory_per_rank_gib,
                        assets_claim=self.assets_claim, worker_cpus=self.worker_cpus, reserved=self.reserved)
        self.checked = check(docs, self.opts.sockets, self.kube_version)
        job.files[f"{job.run_id}.mpijob.yaml"] = (
            f"# xeontl {job.run_id}: {job.plan.describe().splitlines()[0]}\n"
            f"# kubelet on every node: {' '.join(self.kubelet())}\n"
            f"# checked: " + "; ".join(self.checked) + "\n" + to_yaml(docs))
        launcher = docs[1]["spec"]["mpiReplicaSpecs"]["Launcher"]["template"]["spec"]["containers"][0]
        job.command = launcher["command"]

    def describe(self, job: Job) -> str:
        pods = job.plan.node_count * len(job.plan.workers)
        return "\n".join([job.plan.describe(),
                          f"pods: {pods} workers of {self.worker_cpus} CPUs each (one per socket: the kubelet pins "
                          f"them; the plan's CPU positions above are not used)",
                          f"kubelet on every node: {' '.join(self.kubelet())}",
                          *(f"checked: {c}" for c in self.checked)])


def render(opts: Options, results_claim: str, memory_per_rank_gib: int, output: Path | None,
           kube_version: str | None = None, assets_claim: str | None = None,
           reserved_cpus: str | None = None) -> Path:
    """`invoke render --engine k8s`: the plan for nodes like --topology as a checked MPIJob manifest (written, not
    applied: no cluster runs here), each worker pod one socket's allocatable share once the kubelet's reserved CPUs
    (RESERVED_CPUS, default: the first core of socket 0) are taken out."""
    from xeontl.launch import launch, options

    options.kube_name("--results-claim", results_claim)  # names that land in the manifest: Kubernetes' own rules
    if assets_claim is not None:
        options.kube_name("--assets-claim", assets_claim)
    engine = KubernetesEngine(opts, results_claim, memory_per_rank_gib, assets_claim)
    engine.kube_version = kube_version
    engine.check()
    cfg = config.resolve(opts.profile, opts.overrides)
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
    cores, engine.worker_cpus = pod_cores(topo, engine.reserved, opts.cores_per_socket)
    plan = planlib.make_plan(topo, opts.sockets, False, cores, "mpi", **engine.layout())
    run_id = launch.new_run_id(cfg, opts.sockets)
    job = Job(opts, cfg, plan=plan, topo=None, run_id=run_id, staging=Path(), engine=engine)
    engine.commands(job)
    out = output or opts.results_dir / f"{run_id}.mpijob.yaml"
    launch.check_results_dir(out.parent, need_bytes=1 << 20)
    if out.exists():
        raise UserError(f"{out} exists: choose another --output, nothing was overwritten")
    out.write_text(job.files[f"{run_id}.mpijob.yaml"])
    print(engine.describe(job))
    print(f"xeontl: wrote {out} (kubectl apply -f {out}; needs the Kubeflow MPI Operator, nodes whose kubelet runs "
          f"as above, and a PVC {results_claim}"
          + (f", and a PVC {assets_claim} holding the assets (docs/engines.md)" if assets_claim else "") + ")")
    return out
