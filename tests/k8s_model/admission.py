"""Pod Security admission (k8s.io/pod-security-admission policy/check_*.go) at a level and version, as the harness
plays it: every container (containers, initContainers, ephemeralContainers) and the pod's own fields, each check from
the version that introduced it. Held to the project's own fixtures (tests/fixtures/k8s/psa.json). Deny by default:
a securityContext field this model does not know is refused, never waved through."""

from __future__ import annotations

BASELINE_CAPABILITIES = {"AUDIT_WRITE", "CHOWN", "DAC_OVERRIDE", "FOWNER", "FSETID", "KILL", "MKNOD",
                         "NET_BIND_SERVICE", "SETFCAP", "SETGID", "SETPCAP", "SETUID", "SYS_CHROOT"}
RESTRICTED_VOLUMES = {"configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim",
                      "projected", "secret"}
SELINUX_TYPES = {"", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"}
# check_sysctls.go: the safe set, growing by version
SYSCTLS = [((1, 0), {"kernel.shm_rmid_forced", "net.ipv4.ip_local_port_range", "net.ipv4.tcp_syncookies",
                     "net.ipv4.ping_group_range", "net.ipv4.ip_unprivileged_port_start"}),
           ((1, 27), {"net.ipv4.ip_local_reserved_ports"}),
           ((1, 29), {"net.ipv4.tcp_keepalive_time", "net.ipv4.tcp_fin_timeout", "net.ipv4.tcp_keepalive_intvl",
                      "net.ipv4.tcp_keepalive_probes"}),
           ((1, 32), {"net.ipv4.tcp_rmem", "net.ipv4.tcp_wmem"})]
CONTAINER_SC = {"allowPrivilegeEscalation", "appArmorProfile", "capabilities", "privileged", "procMount",
                "readOnlyRootFilesystem", "runAsGroup", "runAsNonRoot", "runAsUser", "seLinuxOptions",
                "seccompProfile", "windowsOptions"}
POD_SC = {"appArmorProfile", "fsGroup", "fsGroupChangePolicy", "runAsGroup", "runAsNonRoot", "runAsUser",
          "seLinuxChangePolicy", "seLinuxOptions", "seccompProfile", "supplementalGroups", "supplementalGroupsPolicy",
          "sysctls", "windowsOptions"}
APPARMOR = "container.apparmor.security.beta.kubernetes.io/"
LATEST = (1, 10**6)


def parse_version(v: str) -> tuple[int, int]:
    if v == "latest":
        return LATEST
    major, minor = v.lstrip("v").split(".")
    return int(major), int(minor)


def containers(spec: dict) -> list[dict]:
    return [c for k in ("initContainers", "containers", "ephemeralContainers") for c in spec.get(k) or []]


def violations(pod: dict, level: str, version: str = "latest") -> list[str]:
    """What Pod Security at LEVEL:VERSION forbids in POD (a Pod; or a pod template's spec alone): [] = admitted."""
    if level == "privileged":
        return []
    assert level in ("baseline", "restricted"), f"Pod Security level {level!r}"
    v = parse_version(version)
    spec = pod.get("spec", pod) if "spec" in pod else pod
    meta = pod.get("metadata") or {}
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
        if key.startswith(APPARMOR) and value != "runtime/default" and not value.startswith("localhost/"):
            why.append(f"forbidden AppArmor profile {key}={value}")
    bad("forbidden AppArmor profile", [n for n, s in [("<pod>", psc), *sc.items()]
                                        if (s.get("appArmorProfile") or {}).get("type") not in
                                        (None, "RuntimeDefault", "Localhost")])
    bad("seLinuxOptions", [n for n, s in [("<pod>", psc), *sc.items()] if _selinux_bad(s.get("seLinuxOptions"))])
    unmasked_ok = v >= (1, 33) and spec.get("hostUsers") is False
    bad("procMount", [n for n, s in sc.items() if s.get("procMount", "Default") != "Default" and not unmasked_ok])
    bad("seccompProfile Unconfined", [n for n, s in [("<pod>", psc), *sc.items()]
                                      if (s.get("seccompProfile") or {}).get("type") == "Unconfined"])
    safe = set().union(*[names for since, names in SYSCTLS if v >= since])
    forbidden = sorted(s["name"] for s in psc.get("sysctls") or [] if s["name"] not in safe)
    if forbidden:
        why.append(f"forbidden sysctls {', '.join(forbidden)}")
    bad("hostProcess", [n for n, s in [("<pod>", psc), *sc.items()] if (s.get("windowsOptions") or {}).get(
        "hostProcess")])
    if v >= (1, 34):
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
    bad("runAsNonRoot != true", [n for n, s in sc.items() if s.get("runAsNonRoot") is False or (
        s.get("runAsNonRoot") is None and psc.get("runAsNonRoot") is not True)])
    if v >= (1, 23):
        bad("runAsUser=0", [n for n, s in [("<pod>", psc), *sc.items()] if s.get("runAsUser") == 0])
    if v >= (1, 19):
        pod_ok = (psc.get("seccompProfile") or {}).get("type") in ("RuntimeDefault", "Localhost")
        bad("seccompProfile", [n for n, s in sc.items() if (s.get("seccompProfile") or {}).get("type") not in (
            "RuntimeDefault", "Localhost") and not (pod_ok and "seccompProfile" not in s)])
    if v >= (1, 22):
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
