"""Pod Security Standards as the API server's admission holds a pod to them (k8s.io/pod-security-admission, the
checks of staging/src/k8s.io/pod-security-admission/policy/check_*.go, "latest" version), written as one function
`pod_security(pod_spec, level, metadata)` that returns PSA's own forbidden reasons: `render` refuses a manifest whose
pods would be refused, and tests/mpijob_harness.py can play admission with it (and replay PSA's testdata fixtures
through it). Every container counts: containers, initContainers and ephemeralContainers (PSA's visitContainers).

Also here: label keys and values as the API server validates them (apimachinery pkg/util/validation/validation.go
IsQualifiedName, IsValidLabelValue), for --node-selector."""

from __future__ import annotations

import re

# check_capabilities_baseline.go: the only capabilities a container may add at baseline
BASELINE_CAPABILITIES = frozenset({"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                                   "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"})
# check_restrictedVolumes.go
RESTRICTED_VOLUMES = frozenset({"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                                "projected", "secret"})
# check_sysctls.go: 1.0's safe set, + ip_local_reserved_ports (1.27), the tcp keepalive/fin ones (1.29), tcp_rmem/wmem
# (1.32)
SAFE_SYSCTLS = frozenset({"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                          "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start",
                          "net.ipv4.ip_local_reserved_ports", "net.ipv4.tcp_keepalive_time",
                          "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl", "net.ipv4.tcp_keepalive_probes",
                          "net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"})
# check_seLinuxOptions.go: 1.0's types, + container_engine_t (1.31)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
LEVELS = ("privileged", "baseline", "restricted")


def containers(pod: dict) -> list[dict]:
    """PSA's visitContainers: containers, initContainers, ephemeralContainers."""
    return [c for k in ("containers", "initContainers", "ephemeralContainers") for c in pod.get(k) or []]


def _sc(x: dict) -> dict:
    return x.get("securityContext") or {}


def baseline(pod: dict, metadata: dict | None = None) -> list[str]:
    """The baseline level's forbidden reasons (check_*.go with Level baseline)."""
    psc, cs, out = _sc(pod), containers(pod), []
    if any(pod.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
        out.append("host namespaces")
    if any(_sc(c).get("privileged") for c in cs):
        out.append("privileged")
    added = {a for c in cs for a in (_sc(c).get("capabilities") or {}).get("add") or []}
    if added - BASELINE_CAPABILITIES:
        out.append(f"non-default capabilities ({', '.join(sorted(added - BASELINE_CAPABILITIES))})")
    if any("hostPath" in v for v in pod.get("volumes") or []):
        out.append("hostPath volumes")
    if any(p.get("hostPort") for c in cs for p in c.get("ports") or []):
        out.append("hostPort")
    profiles = [x.get("appArmorProfile") or {} for x in (psc, *map(_sc, cs))]
    annotations = [v for k, v in ((metadata or {}).get("annotations") or {}).items()
                   if k.startswith(APPARMOR_ANNOTATION)]
    if any(p.get("type") not in (None, "RuntimeDefault", "Localhost") for p in profiles) or any(
            v != "runtime/default" and not v.startswith("localhost/") for v in annotations):
        out.append("forbidden AppArmor profile")
    selinux = [x.get("seLinuxOptions") for x in (psc, *map(_sc, cs)) if x.get("seLinuxOptions") is not None]
    if any(s.get("type", "") not in SELINUX_TYPES or s.get("user") or s.get("role") for s in selinux):
        out.append("seLinuxOptions")
    if any(_sc(c).get("procMount", "Default") != "Default" for c in cs):
        out.append("procMount")
    if any((x.get("seccompProfile") or {}).get("type") == "Unconfined" for x in (psc, *map(_sc, cs))):
        out.append("seccompProfile")
    bad = [s.get("name") for s in psc.get("sysctls") or [] if s.get("name") not in SAFE_SYSCTLS]
    if bad:
        out.append(f"forbidden sysctls ({', '.join(map(str, bad))})")
    if any((x.get("windowsOptions") or {}).get("hostProcess") for x in (psc, *map(_sc, cs))):
        out.append("hostProcess")
    return out


def restricted(pod: dict, metadata: dict | None = None) -> list[str]:
    """The restricted level's own forbidden reasons (on top of baseline's)."""
    psc, cs, out = _sc(pod), containers(pod), []
    kinds = {k for v in pod.get("volumes") or [] for k in v if k != "name"}
    if kinds - RESTRICTED_VOLUMES:
        out.append(f"restricted volume types ({', '.join(sorted(kinds - RESTRICTED_VOLUMES))})")
    if any(_sc(c).get("allowPrivilegeEscalation") is not False for c in cs):
        out.append("allowPrivilegeEscalation != false")
    # check_runAsNonRoot.go: the pod or a container setting false fails; a container that sets nothing needs the
    # pod's true
    pod_true = psc.get("runAsNonRoot") is True
    if psc.get("runAsNonRoot") is False or any(_sc(c).get("runAsNonRoot") is False for c in cs) or any(
            _sc(c).get("runAsNonRoot") is None and not pod_true for c in cs):
        out.append("runAsNonRoot != true")
    if psc.get("runAsUser") == 0 or any(_sc(c).get("runAsUser") == 0 for c in cs):
        out.append("runAsUser=0")
    # check_seccompProfile_restricted.go: RuntimeDefault or Localhost, on the pod or on every container
    ok = ("RuntimeDefault", "Localhost")
    pod_ok = (psc.get("seccompProfile") or {}).get("type") in ok
    if any((_sc(c).get("seccompProfile") or {}).get("type") not in ok and not (
            pod_ok and not _sc(c).get("seccompProfile")) for c in cs):
        out.append("seccompProfile")
    # check_capabilities_restricted.go: ALL dropped, NET_BIND_SERVICE the only one added
    for c in cs:
        caps = _sc(c).get("capabilities") or {}
        if "ALL" not in (caps.get("drop") or []) or set(caps.get("add") or []) - {"NET_BIND_SERVICE"}:
            out.append("unrestricted capabilities")
            break
    return out


def pod_security(pod: dict, level: str = "restricted", metadata: dict | None = None) -> list[str]:
    """PSA's forbidden reasons for POD (a pod spec) at LEVEL; [] when admitted."""
    if level not in LEVELS:
        raise ValueError(f"Pod Security level {level!r}: one of {', '.join(LEVELS)}")
    if level == "privileged":
        return []
    return baseline(pod, metadata) + (restricted(pod, metadata) if level == "restricted" else [])


# apimachinery validation.go: qualifiedNameFmt, labelValueFmt, DNS-1123 subdomain for a key's prefix
_NAME = r"([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9]"
_SUBDOMAIN = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*"


def label_problem(key: str, value: str) -> str | None:
    """Why KEY=VALUE is not a valid label (IsQualifiedName, IsValidLabelValue), or None."""
    prefix, _, name = key.rpartition("/")
    if "/" in prefix:
        return f"label key {key!r}: at most one '/'"
    if prefix and (len(prefix) > 253 or not re.fullmatch(_SUBDOMAIN, prefix)):
        return f"label key {key!r}: its prefix must be a DNS subdomain (lower case, digits, - and .; 253 at most)"
    if not name or len(name) > 63 or not re.fullmatch(_NAME, name):
        return (f"label key {key!r}: its name must be 63 characters at most, letters, digits, - _ . , beginning and "
                f"ending with a letter or digit")
    if len(value) > 63 or (value and not re.fullmatch(_NAME, value)):
        return (f"label value {value!r}: 63 characters at most, letters, digits, - _ . , beginning and ending with a "
                f"letter or digit (or empty)")
    return None


# ------------------------------------------------------------------------------------------------ the MPIJob's rules
def _role_containers(job: dict):
    for role, spec in job["spec"]["mpiReplicaSpecs"].items():
        for c in spec["template"]["spec"]["containers"]:
            yield role, spec, c


def _cpus(q) -> int | None:
    return int(q) if str(q).isdigit() else None


def placement_problem(pod: dict, workers: int) -> str | None:
    """The worker template's placement, as `kubernetes.placement` writes it: the node affinity the user named plus a
    required podAffinity, a required podAntiAffinity, or a spread of maxSkew 1 that counts only eligible nodes."""
    aff = pod.get("affinity") or {}
    for kind in ("podAffinity", "podAntiAffinity"):
        terms = (aff.get(kind) or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []
        if any(t.get("topologyKey") == "kubernetes.io/hostname" for t in terms):
            return None
    for t in pod.get("topologySpreadConstraints") or []:
        if t.get("topologyKey") == "kubernetes.io/hostname" and t.get("maxSkew") == 1:
            if t.get("whenUnsatisfiable") != "DoNotSchedule" or t.get("nodeTaintsPolicy") != "Honor" or t.get(
                    "nodeAffinityPolicy", "Honor") != "Honor":
                return ("Worker: the spread over kubernetes.io/hostname must count only eligible nodes "
                        "(DoNotSchedule, nodeAffinityPolicy and nodeTaintsPolicy Honor): a tainted control plane or a "
                        "node the selector excludes holds the skew, the workers stay Pending")
            return None
    return (f"Worker: {workers} workers need a placement over kubernetes.io/hostname (a required podAffinity on one "
            f"node, a required podAntiAffinity one a node, or a spread over the eligible nodes)")


def pinning_problems(docs: list[dict], threads: int = 1) -> list[str]:
    """The rules the kubelet, the scheduler, admission and the operator hold the MPIJob to, as (role: what is wrong)
    strings; [] when all hold. THREADS: the nodes' threads per core (full-pcpus-only)."""
    job = next(d for d in docs if d.get("kind") == "MPIJob")
    out = []
    if job["spec"].get("slotsPerWorker") != 1:
        out.append(f"slotsPerWorker {job['spec'].get('slotsPerWorker')}: a pod per socket runs one rank, the kubelet "
                   f"pins it (slotsPerWorker 1)")
    for role, spec, c in _role_containers(job):
        pod = spec["template"]["spec"]
        res = c.get("resources") or {}
        req, lim = res.get("requests") or {}, res.get("limits") or {}
        guaranteed = all(what in req and req.get(what) == lim.get(what) for what in ("cpu", "memory"))
        if role == "Worker":
            if not guaranteed:
                out.append(f"{role}: cpu and memory requests != limits (Guaranteed QoS needs them equal)")
            if _cpus(req.get("cpu")) is None:
                out.append(f"{role}: cpu {req.get('cpu')!r} is not a whole number (the static CPU manager pins only "
                           f"integer CPUs)")
        cpus = _cpus(req.get("cpu"))
        if guaranteed and cpus and cpus % threads:
            # policy_static.go Allocate, full-pcpus-only: the pod goes Failed
            out.append(f"{role}: a Guaranteed {cpus} CPUs is not a multiple of the {threads} threads per core: "
                       f"SMTAlignmentError under full-pcpus-only")
        if "restartPolicy" in pod:
            out.append(f"{role}: restartPolicy in the pod template (the operator overrides it and warns, "
                       f"SetPodTemplateRestartPolicy): set it on the replica spec")
        for why in pod_security(pod, "restricted", spec["template"].get("metadata")):
            out.append(f"{role}: violates PodSecurity \"restricted:latest\": {why}")
        if "fsGroup" not in (pod.get("securityContext") or {}):
            out.append(f"{role}: needs a pod fsGroup (where the volume plugin applies it, a fresh claim's root is made "
                       f"writable to the ranks)")
        if role == "Worker":
            vols = {v["name"]: v for v in pod.get("volumes", [])}
            shm = [m for m in c.get("volumeMounts", []) if m["mountPath"] == "/dev/shm"]
            if not shm or (vols.get(shm[0]["name"], {}).get("emptyDir") or {}).get("medium") != "Memory":
                out.append("Worker: /dev/shm must be a Memory-backed emptyDir (OpenMPI's shared memory)")
            if not (c.get("readinessProbe") or {}).get("tcpSocket"):
                out.append("Worker: needs a readiness probe on its sshd (only Ready pods get a DNS name)")
            problem = placement_problem(pod, spec.get("replicas", 0))
            if problem:
                out.append(problem)
    return out


# What the manifest and its launcher rely on the operator doing, field by field: tests/test_k8s.py reads the rendered
# MPIJob against kubeflow/mpi-operator v0.8.2's contract transcribed as data (tests/fixtures/k8s/), so a one-word
# change of a field's value that loses one of these fails there.
OPERATOR_NEEDS = {
    # the launcher's wait covers the names' DNS lag alone; a worker never Ready is k8s_watch's
    "spec.launcherCreationPolicy": "launcher created only once every worker pod is Ready",
    "spec.slotsPerWorker": "one slot per worker pod in the hostfile: one rank per pod",
    "spec.sshAuthMountPath": "ssh keys mounted at that path, mode 0644, for a non-root user",
    "spec.mpiImplementation": "OpenMPI env: OMPI_MCA_orte_default_hostfile=/etc/mpi/hostfile, "
                              "OMPI_MCA_orte_keep_fqdn_hostnames",
    "spec.runPolicy.cleanPodPolicy": "running pods deleted when the job ends",
    # mpijob_launcher.attempt_dir: a retry concludes into a run dir of its own
    "spec.mpiReplicaSpecs.Launcher.restartPolicy": "a failed launcher pod is replaced by the launcher Job, "
                                                   "backoffLimit times",
    # k8s_watch: a Failed worker stays Failed, the watcher sees it
    "spec.mpiReplicaSpecs.Worker.restartPolicy": "a failed worker pod stays Failed: the operator recreates only "
                                                 "missing pods and fails the job only on Evicted",
    "spec.mpiReplicaSpecs.*.template.spec.restartPolicy": "set from the replica spec",
}
