"""The cluster the harness plays, without Docker: nodes shaped like an lscpu file (the SPR 8480 with hyper-threads,
SNC-2, a tainted control plane, more nodes than the job needs), the claims with their access modes and driver, and
`Cluster.place`: Pod Security admission, the scheduler, the kubelet's admission and the volume attach rules for one
pod, as a cluster applies them in that order. `plan` places a whole MPIJob manifest the way the operator creates
its pods (every worker, then the launcher), so a test can see where a real cluster would refuse or strand it."""

from __future__ import annotations

import dataclasses
import os
import stat
from pathlib import Path

import yaml

from k8s_model import Refused, admission, scheduler
from k8s_model.kubelet import Node, Topology, _milli

TOPOLOGIES = Path(__file__).resolve().parent.parent / "topologies"
CONTROL_PLANE = "node-role.kubernetes.io/control-plane"
OPERATOR_LABELS = "training.kubeflow.org"


@dataclasses.dataclass
class ClaimSpec:
    """A PersistentVolumeClaim as bound: its root here, access modes, and who mounts it: a CSI driver with its
    CSIDriver fsGroupPolicy (File, ReadWriteOnceWithFSType, None) and the volume's fsType, or in-tree "nfs" (the
    kubelet never applies fsGroup to NFS). A bare Path given to the harness is ClaimSpec(path): ReadWriteMany, CSI,
    fsGroupPolicy File, what the harness assumed before access modes were modelled."""

    path: Path
    access_modes: tuple = ("ReadWriteMany",)
    driver: str = "csi"
    fs_group_policy: str = "File"
    fs_type: str = ""

    def applies_fs_group(self) -> bool:
        """pkg/volume/csi/csi_mounter.go supportsFSGroup; in-tree NFS: never."""
        if self.driver == "nfs" or self.fs_group_policy == "None":
            return False
        if self.fs_group_policy == "File":
            return True
        assert self.fs_group_policy == "ReadWriteOnceWithFSType", f"fsGroupPolicy {self.fs_group_policy}"
        return bool(self.fs_type) and set(self.access_modes) <= {"ReadWriteOnce", "ReadWriteOncePod"}


def claim_spec(c) -> ClaimSpec:
    return c if isinstance(c, ClaimSpec) else ClaimSpec(Path(c))


class Cluster:
    """Nodes, a namespace enforcing Pod Security at ENFORCE, and claims; `place` one pod at a time."""

    def __init__(self, nodes: list[Node], enforce: str = "baseline", claims: dict | None = None):
        self.nodes, self.enforce = nodes, enforce
        self.claims = {k: claim_spec(v) for k, v in (claims or {}).items()}
        self.placed: dict[str, dict] = {}
        self.specs: dict[str, dict] = {}  # pod -> its spec, for the scheduler's inter-pod terms
        self.requests: dict[str, float] = {}  # pod -> its CPU request (NodeResourcesFit sums requests)
        self.attached: dict[str, dict[str, str]] = {}  # claim -> pod -> node

    def admit(self, role: str, pod_spec: dict, metadata: dict | None = None) -> None:
        """Pod Security admission at the namespace's enforce level (latest version)."""
        why = admission.violations({"metadata": metadata or {}, "spec": pod_spec}, self.enforce)
        if why:
            raise Refused(f'admission: pods "{role.lower()}" is forbidden: violates PodSecurity '
                          f'"{self.enforce}:latest": {"; ".join(why)}')

    def schedule(self, pod: str, cpus: float, worker: bool, pod_spec: dict | None = None,
                 labels: dict | None = None) -> Node:
        """The scheduler's answer for a pod requesting CPUS (its cpu request, fractional for a Burstable pod)."""
        view = [scheduler.Placement(n.name, n.labels, n.taints, n.allocatable() - sum(self.requests.get(p, 0) for p
                                                                                      in n.pods),
                                    [n.pod_labels.get(p, {}) for p in
                                                                              n.pods],
                                    [self.specs.get(p) for p in n.pods]) for n in self.nodes]
        chosen = scheduler.schedule(pod, pod_spec or {}, labels or {}, cpus, view)
        node = next(n for n in self.nodes if n.name == chosen.name)
        node.pods.append(pod)
        node.pod_labels[pod] = dict(labels or {})
        self.specs[pod] = pod_spec or {}
        self.requests[pod] = cpus
        return node

    def attach(self, pod: str, node: Node, pod_spec: dict) -> dict[str, ClaimSpec]:
        """The attach/detach controller and the kubelet's volume manager: a ReadWriteOnce claim in use on another
        node: Multi-Attach error, the pod waits in ContainerCreating; ReadWriteOncePod in use by another pod: the
        pod stays Pending; ReadOnlyMany mounted writable: refused."""
        out = {}
        for v in pod_spec.get("volumes") or []:
            if "persistentVolumeClaim" not in v:
                continue
            name = v["persistentVolumeClaim"]["claimName"]
            if name not in self.claims:
                raise Refused(f"pod {pod} stays Pending: persistentvolumeclaim \"{name}\" not found")
            c, users = self.claims[name], self.attached.setdefault(name, {})
            modes = set(c.access_modes)
            others = {p: n for p, n in users.items() if p != pod}
            if "ReadWriteOncePod" in modes and others:
                raise Refused(f"pod {pod} stays Pending: claim {name} is ReadWriteOncePod, in use by "
                              f"{sorted(others)}")
            if not modes & {"ReadWriteMany", "ReadOnlyMany"} and any(n != node.name for n in others.values()):
                raise Refused(f"pod {pod} stays ContainerCreating: Multi-Attach error for volume of claim {name} "
                              f"(ReadWriteOnce): already used by {sorted(others)} on "
                              f"{sorted(set(others.values()))}, this pod is on {node.name}")
            if modes == {"ReadOnlyMany"} and not v["persistentVolumeClaim"].get("readOnly"):
                raise Refused(f"pod {pod}: claim {name} is ReadOnlyMany, mounted writable")
            users[pod] = node.name
            out[v["name"]] = c
        return out

    def place(self, role: str, pod: str, template: dict, labels: dict | None = None) -> dict:
        """One pod from its template: admission, scheduling, the kubelet (Guaranteed integer CPUs: exclusive),
        the claims. Returns its placement; Refused where the cluster refuses or strands it."""
        spec = template["spec"]
        assert len(spec["containers"]) == 1 and not spec.get("initContainers"), (
            f"pod {pod}: the harness sizes one-container pods only (a pod's requests are its container's); "
            f"this one has {len(spec['containers'])} containers and {len(spec.get('initContainers') or [])} init")
        self.admit(role, spec, template.get("metadata"))
        c = spec["containers"][0]
        request, limit = c["resources"]["requests"], c["resources"].get("limits") or {}
        guaranteed = request == limit and str(request.get("cpu", "")).isdigit()
        cpus = int(request["cpu"]) if guaranteed else 0
        node = self.schedule(pod, _milli(str(request.get("cpu", "0"))) / 1000, role == "Worker", spec,
                             {**((template.get("metadata") or {}).get("labels") or {}), **(labels or {})})
        if guaranteed:
            mine, numa = node.admit(pod, cpus, gib(limit.get("memory", "0")))
        else:  # not Guaranteed: the shared pool, the node's CPUs but the exclusive ones
            mine, numa = node.free(), None
        volumes = self.attach(pod, node, spec)
        self.placed[pod] = {"node": node.name, "cpus": mine, "numa": numa,
                            "machine": sorted({node.machine[c] for c in mine}), "claims": volumes}
        return self.placed[pod]


def gib(q) -> float:
    """A memory quantity ("8Gi", "2148Mi", "1G", bytes) in GiB."""
    q = str(q)
    for suffix, scale in (("Gi", 1), ("Mi", 1 / 1024), ("Ki", 1 / 1024**2), ("G", 1e9 / 1024**3), ("M", 1e6 / 1024**3)):
        if q.endswith(suffix):
            return float(q[: -len(suffix)]) * scale
    return float(q) / 1024**3


def operator_labels(job: str, role: str, index: int | None = None) -> dict:
    """The labels mpi-operator v0.8.2 puts on a job's pods (besides the template's)."""
    out = {f"{OPERATOR_LABELS}/job-name": job, f"{OPERATOR_LABELS}/operator-name": "mpi-operator",
           f"{OPERATOR_LABELS}/job-role": role.lower()}
    return out if index is None else {**out, f"{OPERATOR_LABELS}/replica-index": str(index)}


def plan(manifest: Path, nodes: list[Node], enforce: str = "restricted", claims: dict | None = None) -> Cluster:
    """Every pod of the MPIJob in MANIFEST placed as the operator creates them (workers, then the launcher), no
    Docker: the cluster's answer (Cluster.placed), or Refused with the first pod a real cluster refuses/strands."""
    docs = [d for d in yaml.safe_load_all(manifest.read_text()) if d]
    job = next(d for d in docs if d["kind"] == "MPIJob")
    name, specs = job["metadata"]["name"], job["spec"]["mpiReplicaSpecs"]
    cluster = Cluster(nodes, enforce, claims)
    for i in range(specs["Worker"]["replicas"]):
        cluster.place("Worker", f"{name}-worker-{i}", specs["Worker"]["template"],
                      operator_labels(name, "Worker", i))
    cluster.place("Launcher", f"{name}-launcher", specs["Launcher"]["template"], operator_labels(name, "Launcher"))
    return cluster


def set_volume_ownership(root: Path, fs_group: int, policy: str = "Always") -> None:
    """The kubelet's SetVolumeOwnership: with OnRootMismatch, nothing when the volume's root already has the group
    and its permissions; else every file and dir gets the group, group read/write (+x and setgid for dirs)."""
    st = root.stat()
    if policy == "OnRootMismatch" and st.st_gid == fs_group and stat.S_IMODE(st.st_mode) & 0o2070 == 0o2070:
        return
    for p in [root, *root.rglob("*")]:
        if p.is_symlink():
            continue
        os.chown(p, -1, fs_group)
        mode = stat.S_IMODE(p.stat().st_mode) | 0o060
        p.chmod(mode | 0o2010 if p.is_dir() else mode)


def nodes(count: int, topology_file: Path, reserved: list[int], physical: list[int], *, prefix: str = "node",
          full_pcpus_only: bool = True, memory_gib: dict[int, float] | None = None,
          reserved_memory_gib: dict[int, float] | None = None, memory_reservation_gib: float | None = None,
          labels: dict | None = None,
          taints: list | None = None) -> list[Node]:
    """COUNT nodes shaped like TOPOLOGY_FILE (lscpu --parse=CPU,CORE,SOCKET,NODE: cores and hyper-threads as
    listed), each with the kubelet's RESERVED CPUs, run on this machine's PHYSICAL CPUs."""
    topo = Topology.from_lscpu(topology_file)
    numa = {cpu: t[2] for cpu, t in topo.cpus.items()}
    return [Node(f"{prefix}-{i}", dict(numa), set(reserved), list(physical), topology=topo,
                 full_pcpus_only=full_pcpus_only, memory_gib=dict(memory_gib) if memory_gib else None,
                 reserved_memory_gib=dict(reserved_memory_gib or {}), memory_reservation_gib=memory_reservation_gib,
                 labels=dict(labels or {}),
                 taints=list(taints or [])) for i in range(count)]


RESERVED_MEMORY_GIB = 2148 / 1024  # kube-reserved 1024Mi + system-reserved 1024Mi + eviction-hard 100Mi (render's)


def spr_8480_nodes(count: int, physical: list[int], **kw) -> list[Node]:
    """Xeon Platinum 8480+ x2 with hyper-threads (224 CPUs, sibling of CPU c at c+112), reserved: core 0 whole; the
    Memory Manager Static with 256 GiB a socket, the reserved memory on NUMA node 0 (where the reserved core is)."""
    kw = {"memory_gib": {0: 256, 1: 256}, "reserved_memory_gib": {0: RESERVED_MEMORY_GIB},
          "memory_reservation_gib": RESERVED_MEMORY_GIB, **kw}
    return nodes(count, TOPOLOGIES / "spr-8480-2s-ht.lscpu", [0, 112], physical, **kw)


def snc2_nodes(count: int, physical: list[int], **kw) -> list[Node]:
    """2 sockets x 4 cores with hyper-threads in SNC-2 (4 NUMA nodes of 2 cores), reserved: core 0 whole; the Memory
    Manager Static with 32 GiB a NUMA node, the reserved memory on NUMA node 0."""
    kw = {"memory_gib": {n: 32 for n in range(4)}, "reserved_memory_gib": {0: RESERVED_MEMORY_GIB},
          "memory_reservation_gib": RESERVED_MEMORY_GIB, **kw}
    return nodes(count, TOPOLOGIES / "snc2-2s-ht.lscpu", [0, 8], physical, **kw)


def control_plane(topology_file: Path, reserved: list[int], physical: list[int]) -> Node:
    """A control-plane node as kubeadm leaves it: labelled and tainted NoSchedule, no pods of ours on it."""
    node, = nodes(1, topology_file, reserved, physical, prefix="control-plane", labels={CONTROL_PLANE: ""},
                  taints=[{"key": CONTROL_PLANE, "effect": "NoSchedule"}])
    return node
