"""Which of a cluster's nodes the rendered MPIJob's worker pods may go to, read from the Node objects as the scheduler
reads them (`kubectl get nodes -o json`'s items), so `invoke reproduce --engine k8s` refuses a layout the scheduler
cannot give before anything is applied (k8s_watch.reproduce):

- a node selector term and a pod's required node affinity match as k8s.io/component-helpers
  scheduling/corev1/nodeaffinity does (an empty term matches nothing; a term that does not parse matches nothing;
  matchFields know metadata.name only; Gt/Lt compare base-10 64-bit integers);
- a toleration tolerates a taint as k8s.io/api core/v1 Toleration.ToleratesTaint does; a node is left out when a
  NoSchedule or NoExecute taint is not tolerated (the TaintToleration filter, and the spread's nodeTaintsPolicy Honor),
  the pod carrying the tolerations the DefaultTolerationSeconds admission plugin adds to every pod;
- a topology spread constraint counts a node when it has the key, its pod admits it by node selector and affinity
  (nodeAffinityPolicy Honor, the default) and, under nodeTaintsPolicy Honor, tolerates its taints
  (pkg/scheduler/framework/plugins/podtopologyspread/common.go, nodeLabelsMatchSpreadConstraints and
  matchNodeInclusionPolicies).
Held to Kubernetes' own test tables (tests/fixtures/k8s: nodeaffinity.json, tolerations.json, podtopologyspread.json);
the test harness's scheduler (tests/k8s_model) places pods through these same functions."""

from __future__ import annotations

import re

from xeontl.engines.k8s_policy import label_problem

HOSTNAME = "kubernetes.io/hostname"
DO_NOT_SCHEDULE = ("NoSchedule", "NoExecute")  # helper.DoNotScheduleTaintsFilterFunc
UNSCHEDULABLE = {"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"}  # a cordoned node's taint
# plugin/pkg/admission/defaulttolerationseconds/admission.go: added to a pod that tolerates neither taint already
DEFAULT_TOLERATIONS = ({"key": "node.kubernetes.io/not-ready", "operator": "Exists", "effect": "NoExecute",
                        "tolerationSeconds": 300},
                       {"key": "node.kubernetes.io/unreachable", "operator": "Exists", "effect": "NoExecute",
                        "tolerationSeconds": 300})
_INT64 = re.compile(r"[+-]?[0-9]+")


# ------------------------------------------------------------------------------------------------ taints
def tolerates(toleration: dict, taint: dict) -> bool:
    """Toleration.ToleratesTaint: the effect (when given) and the key (when given) equal, then Equal (or no
    operator) wants the same value, Exists any, Gt/Lt a taint value above/below the toleration's (both base-10
    64-bit integers); any other operator tolerates nothing."""
    if toleration.get("effect") and toleration["effect"] != taint.get("effect"):
        return False
    if toleration.get("key") and toleration["key"] != taint.get("key"):
        return False
    op = toleration.get("operator") or "Equal"
    if op == "Equal":
        return (toleration.get("value") or "") == (taint.get("value") or "")
    if op in ("Gt", "Lt"):
        mine, theirs = toleration.get("value") or "", taint.get("value") or ""
        if not (_int64(mine) and _int64(theirs)):
            return False
        return int(theirs) > int(mine) if op == "Gt" else int(theirs) < int(mine)
    return op == "Exists"


def with_default_tolerations(tolerations: list | None) -> list:
    """The pod's tolerations once DefaultTolerationSeconds has admitted it: each of its two added unless one of the
    pod's tolerations has that taint's key or none, and the effect NoExecute or none (admission.go, Admit)."""
    have = list(tolerations or [])
    for default in DEFAULT_TOLERATIONS:
        if not any(t.get("key") in (None, "", default["key"]) and t.get("effect") in (None, "", "NoExecute")
                   for t in have):
            have.append(dict(default))
    return have


def taints(node: dict) -> list[dict]:
    """The node's taints, with the unschedulable taint of a cordoned node (spec.unschedulable) that the node
    lifecycle controller adds (TaintNodesByCondition) if not there yet."""
    spec = node.get("spec") or {}
    have = list(spec.get("taints") or [])
    if spec.get("unschedulable") and not any(t.get("key") == UNSCHEDULABLE["key"] for t in have):
        have.append(dict(UNSCHEDULABLE))
    return have


def untolerated(node: dict, pod_spec: dict, comparisons: bool = False) -> dict | None:
    """The first NoSchedule/NoExecute taint of NODE that POD_SPEC's tolerations (with the admission's defaults) do
    not tolerate (FindMatchingUntoleratedTaint), or None. Gt/Lt tolerations count only under the
    TaintTolerationComparisonOperators feature gate (COMPARISONS; alpha, off by default): the filter drops them."""
    tols = [t for t in with_default_tolerations(pod_spec.get("tolerations"))
            if comparisons or t.get("operator") not in ("Gt", "Lt")]
    return next((t for t in taints(node) if t.get("effect") in DO_NOT_SCHEDULE
                 and not any(tolerates(tol, t) for tol in tols)), None)


# ------------------------------------------------------------------------------------------------ node affinity
def _requirement(req: dict, have: str | None) -> bool | None:
    """labels.Requirement.Matches for one node selector requirement; None when it does not parse."""
    key, op, values = req.get("key"), req.get("operator"), list(req.get("values") or [])
    if not isinstance(key, str) or label_problem(key, "") or any(
            not isinstance(v, str) or label_problem("k", v) for v in values):
        return None
    if op in ("In", "NotIn"):
        if not values:
            return None
        return (have in values) if op == "In" else (have not in values)
    if op in ("Exists", "DoesNotExist"):
        if values:
            return None
        return (have is not None) == (op == "Exists")
    if op in ("Gt", "Lt"):
        if len(values) != 1 or not _int64(values[0]):
            return None
        if have is None or not _int64(have):
            return False
        return int(have) > int(values[0]) if op == "Gt" else int(have) < int(values[0])
    return None


def _int64(text: str) -> bool:
    return bool(_INT64.fullmatch(text)) and -(1 << 63) <= int(text) < (1 << 63)


def _field(req: dict, name: str) -> bool | None:
    """A matchFields requirement: metadata.name with In or NotIn of exactly one value; else it does not parse."""
    values = req.get("values") or []
    if req.get("key") != "metadata.name" or req.get("operator") not in ("In", "NotIn") or len(values) != 1:
        return None
    return (name == values[0]) == (req["operator"] == "In")


def term_matches(term: dict | None, node: dict) -> bool:
    """A NodeSelectorTerm: every expression on the node's labels and every field on its name; an empty term or one
    that does not parse matches nothing."""
    exprs, fields = (term or {}).get("matchExpressions") or [], (term or {}).get("matchFields") or []
    if not exprs and not fields:
        return False
    meta = (node or {}).get("metadata") or {}
    labels = meta.get("labels") or {}
    answers = [_requirement(r, labels.get(r.get("key"))) for r in exprs]
    answers += [_field(r, meta.get("name") or "") for r in fields]
    return all(a is True for a in answers)


def selector_matches(selector: dict | None, node: dict) -> bool:
    """A NodeSelector: any of its terms."""
    return any(term_matches(t, node) for t in (selector or {}).get("nodeSelectorTerms") or [])


def pod_admits(pod_spec: dict, node: dict) -> bool:
    """RequiredNodeAffinity.Match: every nodeSelector pair among the node's labels, and one of the required node
    affinity's terms (when it has any)."""
    labels = ((node or {}).get("metadata") or {}).get("labels") or {}
    if any(labels.get(k) != v for k, v in (pod_spec.get("nodeSelector") or {}).items()):
        return False
    required = ((pod_spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution")
    return required is None or selector_matches(required, node)


# ------------------------------------------------------------------------------------------------ the spread
def counted(constraint: dict, pod_spec: dict, node: dict) -> bool:
    """Whether a topology spread CONSTRAINT counts NODE's domain for a pod of POD_SPEC."""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if constraint["topologyKey"] not in labels:
        return False
    if constraint.get("nodeAffinityPolicy", "Honor") == "Honor" and not pod_admits(pod_spec, node):
        return False
    return not (constraint.get("nodeTaintsPolicy", "Ignore") == "Honor" and untolerated(node, pod_spec))


def schedulable(pod_spec: dict, node: dict) -> bool:
    """The filters that read only the node: NodeUnschedulable and TaintToleration (a cordoned node's taint, any
    NoSchedule/NoExecute one untolerated) and NodeAffinity."""
    return untolerated(node, pod_spec) is None and pod_admits(pod_spec, node)


# k8s.io/apimachinery/pkg/api/resource (quantity.go): a signed decimal, then a binary-SI suffix, a decimal-SI one or
# a decimal exponent
_QUANTITY = re.compile(r"([+-]?(?:[0-9]+(?:\.[0-9]*)?|\.[0-9]+))(Ki|Mi|Gi|Ti|Pi|Ei|n|u|m|k|M|G|T|P|E|[eE][+-]?[0-9]+)?")
_SUFFIX = {"Ki": 2 ** 10, "Mi": 2 ** 20, "Gi": 2 ** 30, "Ti": 2 ** 40, "Pi": 2 ** 50, "Ei": 2 ** 60, "n": 1e-9,
           "u": 1e-6, "m": 1e-3, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15, "E": 1e18, None: 1}


def quantity(text) -> float | None:
    """A resource quantity ("222", "221500m", "503Gi", "1e3") as a number, or None when it is not one."""
    m = _QUANTITY.fullmatch(str(text)) if isinstance(text, (str, int)) else None
    if not m:
        return None
    suffix = m[2]
    scale = 10.0 ** int(suffix[1:]) if suffix and suffix[0] in "eE" else _SUFFIX[suffix]
    return float(m[1]) * scale


def _room(node: dict, pods: int, requests: dict) -> bool:
    """Whether NODE's allocatable CPU and memory hold PODS pods of REQUESTS (a node whose allocatable is not read
    holds nothing: unknown is not room)."""
    allocatable = (node.get("status") or {}).get("allocatable") or {}
    for resource in ("cpu", "memory"):
        want, have = quantity(requests.get(resource, 0)), quantity(allocatable.get(resource))
        if want is None or have is None or pods * want > have:
            return False
    return True


def layout_problem(worker_spec: dict, nodes: list[dict], node_count: int, per_node: int) -> str | None:
    """Why the cluster's NODES cannot give NODE_COUNT nodes of PER_NODE worker pods of WORKER_SPEC (the rendered
    template), or None: fewer nodes the workers may go to, with room for PER_NODE of them, than NODE_COUNT; for several
    nodes of several pods (the hostname spread of maxSkew 1, which puts a worker on every node it counts before a
    second on any) any number of counted nodes but NODE_COUNT, or one of them without room."""
    spread = next((c for c in worker_spec.get("topologySpreadConstraints") or [] if c["topologyKey"] == HOSTNAME),
                  None)
    requests = (((worker_spec.get("containers") or [{}])[0]).get("resources") or {}).get("requests") or {}
    fits = (lambda n: counted(spread, worker_spec, n)) if spread else (lambda n: schedulable(worker_spec, n))
    found = sorted((((n.get("metadata") or {}).get("name") or "?", n, _room(n, per_node, requests))
                    for n in nodes if fits(n)), key=lambda f: f[0])
    names = [name for name, _, room in found if room or spread]
    small = [name for name, _, room in found if not room]
    if spread is None and node_count == 1 and per_node > 1:  # the first worker may go to any node that passes
        # the filters (satisfyPodAffinity); the others must follow it there: a node with room for some, not all
        part = [name for name, n, room in found if not room and _room(n, 1, requests)]
        if part:
            return (f"node(s) {', '.join(part[:8])} can hold some of the {per_node} workers of the one-node layout "
                    f"but not all: the first may go there and the others stay Pending (status.allocatable); name "
                    f"nodes with room for all with --node-selector KEY=VALUE")
    shown = ", ".join(names[:8]) + (f" and {len(names) - 8} more" if len(names) > 8 else "") or "none"
    of_all = f"of {len(nodes)} in all; check --node-selector, the nodes' labels (amd64, linux), taints and cordons"
    need = (f"{per_node} worker pods of {requests.get('cpu')} CPUs and {requests.get('memory')} each "
            f"(status.allocatable)")
    if spread is not None and len(names) != node_count:
        return (f"the cluster has {len(names)} nodes the workers' spread counts ({shown}; {of_all}), the layout "
                f"needs exactly {node_count} ({per_node} workers each, the spread puts one on every node it counts "
                f"before a second on any): label {node_count} nodes (kubectl label node NAME... KEY=VALUE) and give "
                f"--node-selector KEY=VALUE")
    if spread is not None and small:
        return f"node(s) {', '.join(small[:8])} of the {len(names)} the spread counts cannot hold {need}"
    if len(names) < node_count:
        return (f"the cluster has {len(names)} nodes the workers may go to with room for {need} ({shown}; "
                f"{of_all}), the layout needs {node_count}")
    return None
