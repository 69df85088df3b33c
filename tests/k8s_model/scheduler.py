"""The scheduler's filters as the harness plays them (kubernetes/kubernetes pkg/scheduler/framework/plugins):
NodeUnschedulable + TaintToleration (a NoSchedule/NoExecute taint the pod does not tolerate), NodeAffinity
(nodeSelector and required nodeAffinity), NodeResourcesFit (CPU), and PodTopologySpread with the
NodeInclusionPolicy defaults (nodeAffinityPolicy Honor: only nodes the pod's nodeSelector/affinity admit are counted;
nodeTaintsPolicy Ignore: tainted nodes ARE counted, a tainted control plane with 0 pods included), a node without the
topology key counted nowhere. Among the nodes that pass, the one with the fewest matching pods, then the first."""

from __future__ import annotations

import dataclasses

from k8s_model import Refused
from xeontl.engines import k8s_nodes


@dataclasses.dataclass
class Placement:
    """What the scheduler knows of a node: its labels, taints, allocatable CPUs left, and its pods' labels."""

    name: str
    labels: dict
    taints: list
    cpu_free: float  # allocatable CPUs less the requests of its pods
    pod_labels: list
    pod_specs: list = dataclasses.field(default_factory=list)  # aligned with pod_labels (their affinity terms)


def node_object(n: Placement) -> dict:
    """The Node object the product's k8s_nodes reads, from the harness's view of a node."""
    return {"metadata": {"name": n.name, "labels": n.labels}, "spec": {"taints": n.taints}}


def selector_matches(selector: dict, labels: dict) -> bool:
    if any(labels.get(k) != v for k, v in (selector.get("matchLabels") or {}).items()):
        return False
    for e in selector.get("matchExpressions") or []:  # metav1.LabelSelector: In, NotIn, Exists, DoesNotExist
        have, op, vals = labels.get(e["key"]), e["operator"], e.get("values") or []
        ok = {"In": have in vals, "NotIn": have not in vals, "Exists": e["key"] in labels,
              "DoesNotExist": e["key"] not in labels}.get(op)
        assert ok is not None, f"labelSelector operator {op}"
        if not ok:
            return False
    return True


def schedule(pod: str, pod_spec: dict, pod_labels: dict, cpus: float, nodes: list[Placement]) -> Placement:
    """The node POD goes to, or Refused (the pod stays Pending) with the scheduler's reasons."""
    why: dict[str, int] = {}

    def no(reason: str) -> None:
        why[reason] = why.get(reason, 0) + 1

    feasible = []
    constraints = [c for c in pod_spec.get("topologySpreadConstraints") or []
                   if c.get("whenUnsatisfiable", "DoNotSchedule") == "DoNotSchedule"]
    for n in nodes:
        blocking = k8s_nodes.untolerated(node_object(n), pod_spec)
        if blocking:
            no(f"node(s) had untolerated taint {{{blocking['key']}: {blocking.get('value', '')}}}")
        elif not k8s_nodes.pod_admits(pod_spec, node_object(n)):
            no("node(s) didn't match Pod's node affinity/selector")
        elif n.cpu_free < cpus:
            no("Insufficient cpu")
        elif not _inter_pod_ok(pod_spec, pod_labels, n, nodes):
            no("node(s) didn't match pod affinity/anti-affinity rules")
        elif not all(_spread_ok(c, n, pod_spec, pod_labels, nodes) for c in constraints):
            no("node(s) didn't match pod topology spread constraints")
        else:
            feasible.append(n)
    if not feasible:
        reasons = ", ".join(f"{v} {k}" for k, v in sorted(why.items()))
        raise Refused(f"pod {pod} stays Pending: 0/{len(nodes)} nodes are available: {reasons} (it requests {cpus:g} "
                      f"CPUs; allocatable left: {[round(n.cpu_free, 3) for n in nodes]})")
    return min(feasible, key=lambda n: (sum(selector_matches(c.get("labelSelector") or {}, lbl)
                                            for c in constraints for lbl in n.pod_labels), -n.cpu_free))


def _required(affinity: dict, kind: str) -> list:
    return ((affinity or {}).get(kind) or {}).get("requiredDuringSchedulingIgnoredDuringExecution") or []


def _inter_pod_ok(pod_spec: dict, pod_labels: dict, node: Placement, nodes: list[Placement]) -> bool:
    """InterPodAffinity's filter (interpodaffinity/filtering.go), one namespace: every required podAffinity term has
    a matching pod in the node's domain (or no pod anywhere matches and the pod matches its own term: the first of
    its kind may go anywhere); no required podAntiAffinity term has one; no existing pod's required anti-affinity
    term matches this pod in its domain."""
    def domain(key: str) -> list[Placement]:
        return [n for n in nodes if key in node.labels and n.labels.get(key) == node.labels[key]]

    affinity = pod_spec.get("affinity") or {}
    for term in _required(affinity, "podAffinity"):
        key, sel = term["topologyKey"], term.get("labelSelector") or {}
        if key not in node.labels:
            return False
        if not any(selector_matches(sel, lbl) for n in domain(key) for lbl in n.pod_labels):
            anywhere = any(selector_matches(sel, lbl) for n in nodes for lbl in n.pod_labels)
            if anywhere or not selector_matches(sel, pod_labels):
                return False
    for term in _required(affinity, "podAntiAffinity"):
        key, sel = term["topologyKey"], term.get("labelSelector") or {}
        if key in node.labels and any(selector_matches(sel, lbl) for n in domain(key) for lbl in n.pod_labels):
            return False
    for n in nodes:
        for spec in n.pod_specs:
            for term in _required((spec or {}).get("affinity"), "podAntiAffinity"):
                key = term["topologyKey"]
                if key in node.labels and n.labels.get(key) == node.labels[key] and selector_matches(
                        term.get("labelSelector") or {}, pod_labels):
                    return False
    return True


def spread_counts(c: dict, pod_spec: dict, nodes: list[Placement]) -> dict[str, int]:
    """PodTopologySpread's PreFilter state for one constraint (TpValueToMatchNum): per domain of the eligible nodes,
    the pods the constraint's selector matches. Eligible: nodes with the key; with nodeAffinityPolicy Honor (default)
    only those the pod's nodeSelector/required affinity admits; with nodeTaintsPolicy Honor (default Ignore) only
    those whose taints it tolerates."""
    key = c["topologyKey"]
    counts: dict[str, int] = {}
    for n in nodes:
        if not k8s_nodes.counted(c, pod_spec, node_object(n)):
            continue
        matching = sum(selector_matches(c.get("labelSelector") or {}, lbl) for lbl in n.pod_labels)
        counts[n.labels[key]] = counts.get(n.labels[key], 0) + matching
    return counts


def _spread_ok(c: dict, node: Placement, pod_spec: dict, pod_labels: dict, nodes: list[Placement]) -> bool:
    """PodTopologySpread's filter for one constraint: skew = pods in the node's domain + 1 (the pod itself, when it
    matches) - the fewest in any eligible domain, at most maxSkew."""
    key = c["topologyKey"]
    if key not in node.labels:
        return False
    counts = spread_counts(c, pod_spec, nodes)
    if not counts:
        return True
    self_match = selector_matches(c.get("labelSelector") or {}, pod_labels)
    fewest = min(counts.values())
    if c.get("minDomains") and len(counts) < c["minDomains"]:
        fewest = 0
    return counts.get(node.labels[key], 0) + self_match - fewest <= c.get("maxSkew", 1)
