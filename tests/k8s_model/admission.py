"""Pod Security admission as the harness plays it: the product's own check (engines/k8s_policy.pod_security, the one
implementation of k8s.io/pod-security-admission policy/check_*.go, each check from the version that introduced it),
so what `render` refuses and what the harness's API server refuses cannot drift apart. Held to
pod-security-admission's own testdata (tests/fixtures/k8s/psa.json, tests/test_k8s_conformance.py)."""

from __future__ import annotations

from xeontl.engines.k8s_policy import containers, parse_version, pod_security  # noqa: F401 (the harness's names)


def violations(pod: dict, level: str, version: str = "latest") -> list[str]:
    """What Pod Security at LEVEL:VERSION forbids in POD (a Pod; or a pod template's spec alone): [] = admitted."""
    spec = pod.get("spec", pod) if "spec" in pod else pod
    return pod_security(spec, level, pod.get("metadata") if "spec" in pod else None, version)
