"""Pod Security Standards as the API server's admission holds a pod to them (k8s.io/pod-security-admission, the
checks of staging/src/k8s.io/pod-security-admission/policy/check_*.go, each from the version that introduced it),
written as one function `pod_security(pod_spec, level, metadata, version)` that returns PSA's own forbidden reasons:
`render` refuses a manifest whose pods would be refused at "latest", and tests/mpijob_harness.py plays admission with
it (tests/k8s_model/admission.py), held to PSA's testdata fixtures. Every container counts: containers,
initContainers and ephemeralContainers (PSA's visitContainers).

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
# check_seLinuxOptions.go: 1.0's types, + container_engine_t (1.31)
SELINUX_TYPES = frozenset({"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"})
# check_sysctls.go: the safe set, growing by version
SYSCTLS = [((1, 0), {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                     "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}),
           ((1, 27), {"net.ipv4.ip_local_reserved_ports"}),
           ((1, 29), {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                      "net.ipv4.tcp_keepalive_probes"}),
           ((1, 32), {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"})]
# Deny by default: a securityContext field this check does not know is refused, never waved through.
CONTAINER_SC = {"allowPrivilegeEscalation", "appArmorProfile", "capabilities", "privileged", "procMount",
                "readOnlyRootFilesystem", "runAsGroup", "runAsNonRoot", "runAsUser", "seLinuxOptions",
                "seccompProfile", "windowsOptions"}
POD_SC = {"appArmorProfile", "fsGroup", "fsGroupChangePolicy", "runAsGroup", "runAsNonRoot", "runAsUser",
          "seLinuxChangePolicy", "seLinuxOptions", "seccompProfile", "supplementalGroups", "supplementalGroupsPolicy",
          "sysctls", "windowsOptions"}
APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/"
LEVELS = ("privileged", "baseline", "restricted")
LATEST = (1, 10**6)


def parse_version(v: str) -> tuple[int, int]:
    """A Pod Security version (latest, v1.30, 1.30) as (major, minor), or ValueError."""
    if v == "latest":
        return LATEST
    major, minor = v.removeprefix("v").split(".")
    return int(major), int(minor)


def containers(pod: dict) -> list[dict]:
    """PSA's visitContainers: initContainers, containers, ephemeralContainers."""
    return [c for k in ("initContainers", "containers", "ephemeralContainers") for c in pod.get(k) or []]


def pod_security(pod: dict, level: str = "restricted", metadata: dict | None = None,
                 version: str = "latest") -> list[str]:
    """PSA's forbidden reasons for POD (a pod spec; METADATA its annotations) at LEVEL:VERSION; [] when admitted.
    The one implementation: `render` refuses what it refuses, and the harness's admission (tests/k8s_model) is this,
    held to pod-security-admission's own testdata (tests/fixtures/k8s/psa.json)."""
    if level not in LEVELS:
        raise ValueError(f"Pod Security level {level!r}: one of {', '.join(LEVELS)}")
    if level == "privileged":
        return []
    v = parse_version(version)
    spec, meta = pod, metadata or {}
    psc = spec.get("securityContext") or {}
    cs = containers(spec)
    sc = {c["name"]: c.get("securityContext") or {} for c in cs}
    why = []

    def bad(check: str, names) -> None:
        names = sorted(set(names))
        if names:
            why.append(f"{check} (containers {', '.join(names)})" if names != ["<pod>"] else check)

    unknown = sorted(set(psc) - POD_SC) + sorted({k for s in sc.values() for k in s} - CONTAINER_SC)
    if unknown:
        why.append(f"securityContext fields this admission does not know: {', '.join(unknown)}")
    # ---- baseline
    if any(spec.get(k) for k in ("hostNetwork", "hostPID", "hostIPC")):
        why.append("host namespaces")
    bad("privileged", [n for n, s in sc.items() if s.get("privileged")])
    for n, s in sc.items():
        extra = sorted(set((s.get("capabilities") or {}).get("add") or []) - BASELINE_CAPABILITIES)
        if extra:
            why.append(f'non-default capabilities (container "{n}" must not include {", ".join(extra)} in '
                       "securityContext.capabilities.add)")
    if any("hostPath" in vol for vol in spec.get("volumes") or []):
        why.append("hostPath volumes")
    bad("hostPort", [c["name"] for c in cs for p in c.get("ports") or [] if p.get("hostPort")])
    for key, value in (meta.get("annotations") or {}).items():
        if key.startswith(APPARMOR_ANNOTATION) and value != "runtime/default" and not value.startswith("localhost/"):
            why.append(f"forbidden AppArmor profile {key}={value}")
    bad("forbidden AppArmor profile", [n for n, s in [("<pod>", psc), *sc.items()]
                                        if (s.get("appArmorProfile") or {}).get("type") not in
                                        (None, "RuntimeDefault", "Localhost")])
    bad("seLinuxOptions", [n for n, s in [("<pod>", psc), *sc.items()] if _selinux_bad(s.get("seLinuxOptions"))])
    unmasked_ok = v >= (1, 33) and spec.get("hostUsers") is False  # the user-namespace relaxation
    bad("procMount", [n for n, s in sc.items() if s.get("procMount", "Default") != "Default" and not unmasked_ok])
    bad("seccompProfile Unconfined", [n for n, s in [("<pod>", psc), *sc.items()]
                                      if (s.get("seccompProfile") or {}).get("type") == "Unconfined"])
    safe = set().union(*[names for since, names in SYSCTLS if v >= since])
    forbidden = sorted(s["name"] for s in psc.get("sysctls") or [] if s["name"] not in safe)
    if forbidden:
        why.append(f"forbidden sysctls {', '.join(forbidden)}")
    bad("hostProcess", [n for n, s in [("<pod>", psc), *sc.items()] if (s.get("windowsOptions") or {}).get(
        "hostProcess")])
    if v >= (1, 34):  # check_hostProbesAndhostLifecycle.go
        bad("probe or lifecycle host", [c["name"] for c in cs if _host_handlers(c)])
    if level == "baseline":
        return why
    # ---- restricted
    kinds = {k for vol in spec.get("volumes") or [] for k in vol if k != "name"}
    if kinds - RESTRICTED_VOLUMES:
        why.append(f"restricted volume types {', '.join(sorted(kinds - RESTRICTED_VOLUMES))}")
    if v >= (1, 8):
        bad("allowPrivilegeEscalation != false", [n for n, s in sc.items() if s.get("allowPrivilegeEscalation")
                                                  is not False])
    # check_runAsNonRoot.go: the pod or a container setting false fails; a container that sets nothing needs the
    # pod's true
    bad("runAsNonRoot != true", [n for n, s in sc.items() if s.get("runAsNonRoot") is False or (
        s.get("runAsNonRoot") is None and psc.get("runAsNonRoot") is not True)] + (
        ["<pod>"] if psc.get("runAsNonRoot") is False else []))
    if v >= (1, 23):
        bad("runAsUser=0", [n for n, s in [("<pod>", psc), *sc.items()] if s.get("runAsUser") == 0])
    if v >= (1, 19):  # check_seccompProfile_restricted.go: RuntimeDefault or Localhost, on the pod or every container
        pod_ok = (psc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
        bad("seccompProfile", [n for n, s in sc.items() if (s.get("seccompProfile") or {}).get("type") not in (
            "RuntimeDefault", "Localhost") and not (pod_ok and "seccompProfile" not in s)])
    if v >= (1, 22):  # check_capabilities_restricted.go: ALL dropped, NET_BIND_SERVICE the only one added
        bad("unrestricted capabilities", [n for n, s in sc.items() if "ALL" not in (s.get("capabilities") or {}).get(
            "drop", []) or set((s.get("capabilities") or {}).get("add") or []) - {"NET_BIND_SERVICE"}])
    return why


def _selinux_bad(opts: dict | None) -> bool:
    return bool(opts) and (opts.get("type", "") not in SELINUX_TYPES or bool(opts.get("user")) or
                           bool(opts.get("role")))


def _host_handlers(c: dict) -> bool:
    handlers = [c.get(p) or {} for p in ("livenessProbe", "readinessProbe", "startupProbe")]
    handlers += [(c.get("lifecycle") or {}).get(h) or {} for h in ("postStart", "preStop")]
    return any((h.get(k) or {}).get("host") for h in handlers for k in ("httpGet", "tcpSocket"))


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
