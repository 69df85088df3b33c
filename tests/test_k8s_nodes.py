"""The nodes a rendered MPIJob's workers may go to (engines/k8s_nodes), held to Kubernetes' own test tables
(tests/fixtures/k8s: nodeaffinity.json, tolerations.json, default_tolerations.json, each case with its upstream file
and commit), and `invoke reproduce --engine k8s` refusing, before anything is applied, a cluster whose nodes cannot
give the layout `render` wrote (the manifests here are render's own; the clusters are Node objects as
`kubectl get nodes -o json` returns them)."""

import json

import pytest
import yaml

from conftest import ROOT, SPR, render_in_process
from xeontl.common.errors import UserError
from xeontl.engines import k8s_nodes, k8s_watch

FIXTURES = ROOT / "tests" / "fixtures" / "k8s"


def _table(name: str) -> list[dict]:
    return json.loads((FIXTURES / name).read_text())["cases"]


def _id(case: dict) -> str:
    return f"{case['test']}: {case['case']}"


# ------------------------------------------------------------------------------------------------ upstream tables
@pytest.mark.parametrize("case", _table("nodeaffinity.json"), ids=_id)
def test_node_affinity_as_kubernetes_matches_it(case):
    if case["kind"] == "selector":
        got = k8s_nodes.selector_matches(case["selector"], case["node"])
    else:
        got = k8s_nodes.pod_admits(case["pod"]["spec"], case["node"])
    assert got is case["expect"]


@pytest.mark.parametrize("case", _table("tolerations.json"), ids=_id)
def test_tolerations_as_kubernetes_reads_them(case):
    if "toleration" in case:
        assert k8s_nodes.tolerates(case["toleration"], case["taint"]) is case["expect"]
    else:
        blocked = k8s_nodes.untolerated(case["node"], case["pod"]["spec"],
                                        case["feature_gates"]["TaintTolerationComparisonOperators"])
        assert ("unschedulable" if blocked else "schedulable") == case["expect"], blocked


@pytest.mark.parametrize("case", _table("default_tolerations.json"), ids=_id)
def test_the_default_tolerations_as_the_admission_plugin_adds_them(case):
    assert k8s_nodes.with_default_tolerations(case["tolerations_before"]) == case["tolerations_after"]


# ------------------------------------------------------------------------------------------------ render's layouts
LAYOUTS = {  # name: render's arguments beyond the topology (the SPR 8480 node)
    "2 nodes x 2 sockets": ("--nodes", "2", "--sockets", "2", "--node-selector", "pool=xeontl", "--profile", "demo"),
    "2 nodes x 2 sockets, paper stack": ("--nodes", "2", "--sockets", "2", "--stack", "paper", "--profile", "demo"),
    "2 nodes x 2 sockets, paper profile (bf16)": ("--nodes", "2", "--sockets", "2", "--profile", "paper",
                                                  "--assets-claim", "assets"),
    "1 node x 2 sockets": ("--nodes", "1", "--sockets", "2", "--profile", "demo"),
    "2 nodes x 1 socket": ("--nodes", "2", "--sockets", "1", "--profile", "demo"),
}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    out = {}
    for name, args in LAYOUTS.items():
        path = tmp_path_factory.mktemp("render") / "job.yaml"
        render_in_process("--engine", "k8s", "--topology", str(SPR), "--output", str(path), *args)
        out[name] = next(d for d in yaml.safe_load_all(path.read_text()) if d and d["kind"] == "MPIJob")
    return out


def node(name, pool=True, taints=(), cordoned=False, avx512=True, arch="amd64", cpu="222", memory="503Gi",
         hostname=True, **labels):
    """A Node object as the API server returns it, with the labels its kubelet sets (hostname, arch, os) and its
    allocatable resources (the SPR 8480 node less render's reserved core and memory: 222 CPUs)."""
    labels = {**({"kubernetes.io/hostname": name} if hostname else {}), "kubernetes.io/arch": arch,
              "kubernetes.io/os": "linux", **({"pool": "xeontl"} if pool else {}), **labels}
    if avx512:
        labels["feature.node.kubernetes.io/cpu-cpuid.AVX512F"] = "true"
    spec = {"taints": [dict(zip(("key", "value", "effect"), t)) for t in taints]}
    if cordoned:
        spec["unschedulable"] = True
    allocatable = {k: v for k, v in (("cpu", cpu), ("memory", memory)) if v is not None}
    return {"metadata": {"name": name, "labels": labels}, "spec": spec, "status": {"allocatable": allocatable}}


BF16 = "feature.node.kubernetes.io/cpu-cpuid.AMXBF16"
CONTROL_PLANE = node("cp", taints=[("node-role.kubernetes.io/control-plane", "", "NoSchedule")])
SPREAD_WORDS = "nodes the workers' spread counts"
CLUSTERS = [  # (what, layout, nodes, None: applied | words of the one-line refusal)
    ("exactly two pool nodes, a tainted control plane and others", "2 nodes x 2 sockets",
     [node("a"), node("b"), CONTROL_PLANE, node("c", pool=False)], None),
    ("three pool nodes: the spread would put the four workers on three", "2 nodes x 2 sockets",
     [node("a"), node("b"), node("c")], "the cluster has 3 " + SPREAD_WORDS + " (a, b, c; of 3 in all"),
    ("three pool nodes, one cordoned (its unschedulable taint is not counted)", "2 nodes x 2 sockets",
     [node("a"), node("b"), node("c", cordoned=True)], None),
    ("three pool nodes, one NotReady: not-ready NoSchedule counts it out", "2 nodes x 2 sockets",
     [node("a"), node("b"), node("c", taints=[("node.kubernetes.io/not-ready", "", "NoSchedule"),
                                              ("node.kubernetes.io/not-ready", "", "NoExecute")])], None),
    ("a NoExecute not-ready taint alone is tolerated by the admission's default: counted", "2 nodes x 2 sockets",
     [node("a"), node("b"), node("c", taints=[("node.kubernetes.io/not-ready", "", "NoExecute")])],
     "the cluster has 3 " + SPREAD_WORDS),
    ("PreferNoSchedule excludes nothing", "2 nodes x 2 sockets",
     [node("a"), node("b"), node("c", taints=[("dedicated", "ml", "PreferNoSchedule")])],
     "the cluster has 3 " + SPREAD_WORDS),
    ("one pool node tainted for others: one left", "2 nodes x 2 sockets",
     [node("a"), node("b", taints=[("dedicated", "gpu", "NoSchedule")])], "the cluster has 1 " + SPREAD_WORDS + " (a;"),
    ("a NoExecute taint of others' counts a node out as NoSchedule does", "2 nodes x 2 sockets",
     [node("a"), node("b"), node("c", taints=[("dedicated", "gpu", "NoExecute")])], None),
    ("an arm64 node in the pool is not counted (the image is amd64)", "2 nodes x 2 sockets",
     [node("a"), node("b"), node("c", arch="arm64")], None),
    ("a node without the hostname label is in no domain of the spread", "2 nodes x 2 sockets",
     [node("a"), node("b"), node("c", hostname=False)], None),
    ("a counted node too small for its two workers: they would stay Pending", "2 nodes x 2 sockets",
     [node("a"), node("b", cpu="16")], "node(s) b of the 2 the spread counts cannot hold 2 worker pods of 110 CPUs"),
    ("a counted node whose memory is too small", "2 nodes x 2 sockets",
     [node("a"), node("b", memory="15Gi")], "node(s) b of the 2 the spread counts cannot hold"),
    ("a counted node whose allocatable is not read: unknown is not room", "2 nodes x 2 sockets",
     [node("a"), node("b", cpu=None)], "node(s) b of the 2 the spread counts cannot hold"),
    ("allocatable in millicores and binary SI holds them", "2 nodes x 2 sockets",
     [node("a", cpu="221500m", memory="16Gi"), node("b", cpu="220", memory="17179869184")], None),
    ("one node x 2 sockets: a node with room for one worker may take the first, the second stays Pending",
     "1 node x 2 sockets", [node("a", cpu="200"), node("b")],
     "node(s) a can hold some of the 2 workers of the one-node layout but not all"),
    ("one node x 2 sockets: a node with room for none is no trap", "1 node x 2 sockets",
     [node("a", cpu="100"), node("b")], None),
    ("memory in Ki, as kubelets report it: exactly two workers' 8Gi", "2 nodes x 2 sockets",
     [node("a", memory="16777216Ki"), node("b", memory="16777216Ki")], None),
    ("one node x 2 sockets: none with room", "1 node x 2 sockets",
     [node("a", cpu="100"), node("b", cpu="109")], "the cluster has 0 nodes the workers may go to with room"),
    ("no pool label anywhere", "2 nodes x 2 sockets", [node("a", pool=False), node("b", pool=False)],
     "the cluster has 0 " + SPREAD_WORDS + " (none; of 2 in all; check --node-selector"),
    ("paper stack: only nodes whose CPU has AVX512F count", "2 nodes x 2 sockets, paper stack",
     [node("a"), node("b"), node("c", avx512=False)], None),
    ("paper stack: three AVX-512 nodes spread the workers", "2 nodes x 2 sockets, paper stack",
     [node("a"), node("b"), node("c")], "the cluster has 3 " + SPREAD_WORDS),
    ("bf16: a node whose CPU has no BF16 kernels is not counted", "2 nodes x 2 sockets, paper profile (bf16)",
     [node("a", **{BF16: "true"}), node("b", **{BF16: "true"}), node("c")], None),
    ("bf16: three nodes with BF16 kernels spread the workers", "2 nodes x 2 sockets, paper profile (bf16)",
     [node("a", **{BF16: "true"}), node("b", **{BF16: "true"}), node("c", **{BF16: "true"})],
     "the cluster has 3 " + SPREAD_WORDS),
    ("one node x 2 sockets: pod affinity packs them on any one node", "1 node x 2 sockets",
     [node("a"), node("b"), node("c")], None),
    ("one node x 2 sockets: every node cordoned", "1 node x 2 sockets",
     [node("a", cordoned=True)], "the cluster has 0 nodes the workers may go to with room for 2 worker pods of"),
    ("one worker a node: anti-affinity needs two nodes", "2 nodes x 1 socket",
     [node("a"), CONTROL_PLANE], "the cluster has 1 nodes the workers may go to with room for 1 worker pods of 110 "
     "CPUs and 8Gi each (status.allocatable) (a; of 2 in all"),
    ("one worker a node on more nodes: anti-affinity takes any two", "2 nodes x 1 socket",
     [node("a"), node("b"), node("c")], None),
]


@pytest.mark.parametrize("what, layout, nodes, words", CLUSTERS, ids=[c[0] for c in CLUSTERS])
def test_reproduce_refuses_a_layout_the_clusters_nodes_cannot_give(rendered, what, layout, nodes, words):
    job = rendered[layout]
    calls = []

    def get(*args):
        calls.append(args)
        return json.dumps({"kind": "NodeList", "items": nodes})

    if words is None:
        k8s_watch.check_nodes(job, get)
    else:
        with pytest.raises(UserError) as e:
            k8s_watch.check_nodes(job, get)
        assert words in str(e.value) and "\n" not in str(e.value) and str(e.value).endswith("nothing applied")
        workers = job["spec"]["mpiReplicaSpecs"]["Worker"]["replicas"]
        assert f"{workers // int(job['metadata']['labels']['xeontl/nodes'])} worker" in str(e.value)
    assert calls == [("get", "nodes", "-o", "json")]


@pytest.mark.parametrize("answer", [k8s_watch.RunError('kubectl get nodes failed (exit 1): Error from server '
                                                       '(Forbidden): nodes is forbidden: User "u" cannot list'),
                                    "not json", json.dumps({"items": None}), json.dumps([1])])
def test_nodes_it_may_not_read_leave_the_check_to_the_watch(rendered, answer):
    said = []

    def get(*args):
        if isinstance(answer, Exception):
            raise answer
        return answer

    k8s_watch.check_nodes(rendered["2 nodes x 2 sockets"], get, say=said.append)
    assert len(said) == 1 and "the workers' nodes are checked once they are placed" in said[0]


def test_reproduce_applies_nothing_on_a_refused_layout(tmp_path, rendered, monkeypatch):
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(rendered["2 nodes x 2 sockets"]))
    monkeypatch.setattr(k8s_watch.shutil, "which", lambda _: "/bin/kubectl")
    monkeypatch.delenv(k8s_watch.PENDING_ENV, raising=False)
    calls = []

    def get(*args):
        calls.append(args)
        return json.dumps({"items": [node("a"), node("b"), node("c")]})

    with pytest.raises(UserError, match="the layout needs exactly 2"):
        k8s_watch.reproduce(type("O", (), {"dry_run": False})(), lambda o: path, get=get,
                            run=lambda *a, **k: pytest.fail("nothing to delete: nothing was applied"))
    assert calls == [("get", "nodes", "-o", "json")] and not path.exists()  # render's manifest of a run never made


# The grammar of k8s.io/apimachinery/pkg/api/resource/quantity.go's comment: <signedNumber><suffix>, the suffix a
# binary SI (Ki..Ei), a decimal SI (n u m "" k M G T P E) or a decimal exponent (e/E and a signed integer).
QUANTITIES = [("222", 222), ("221500m", 221.5), ("503Gi", 503 * 2 ** 30), ("1e3", 1000), ("1E-3", 0.001),
              ("1.5k", 1500), ("100Mi", 100 * 2 ** 20), ("+5", 5), ("1.", 1), (".5", 0.5), ("17179869184", 2 ** 34),
              ("1.2.3", None), ("Gi", None), ("", None), ("12 Gi", None), ("0x10", None), ("1GiB", None),
              ("1mi", None), (None, None), (2, 2), ("16777216Ki", 16 * 2 ** 30), ("2k", 2000), ("3M", 3e6)]


# labels.Requirement.Matches beyond the upstream tables: an empty value exists; Gt/Lt on a label that is no base-10
# int64 (ParseInt fails) match nothing
REQUIREMENTS = [({"key": "k", "operator": "Exists"}, {"k": ""}, True),
                ({"key": "k", "operator": "DoesNotExist"}, {"k": ""}, False),
                ({"key": "k", "operator": "Gt", "values": ["1"]}, {"k": "2.5"}, False),
                ({"key": "k", "operator": "Gt", "values": ["1"]}, {"k": "9223372036854775808"}, False),
                ({"key": "k", "operator": "Gt", "values": ["1"]}, {"k": "9223372036854775807"}, True),
                ({"key": "k", "operator": "Lt", "values": ["1"]}, {"k": "-9223372036854775808"}, True)]


@pytest.mark.parametrize("req, labels, matches", REQUIREMENTS)
def test_a_requirement_on_labels_matches_as_kubernetes_matches_it(req, labels, matches):
    term = {"nodeSelectorTerms": [{"matchExpressions": [req]}]}
    assert k8s_nodes.selector_matches(term, {"metadata": {"name": "n", "labels": labels}}) is matches


@pytest.mark.parametrize("text, value", QUANTITIES)
def test_a_quantity_reads_as_kubernetes_writes_it(text, value):
    assert k8s_nodes.quantity(text) == value
