"""The harness's kubelet, scheduler and admission (tests/k8s_model/) held to Kubernetes' own test tables, transcribed
as data in tests/fixtures/k8s/ (each case names its upstream file, test function and commit): one loop per table,
the harness's answer compared whole with Kubernetes'. A case the harness does not model says why in the table
(`not_modelled`) and is skipped with that reason, never passed silently."""

import json
from pathlib import Path

import pytest
from k8s_model import admission, kubelet

FIXTURES = Path(__file__).parent / "fixtures" / "k8s"
CPU = json.loads((FIXTURES / "cpumanager.json").read_text())
TOPOS = {name: kubelet.Topology.from_rows(t["rows"]) for name, t in CPU["topologies"].items()}


def cpuset(spec, topo: kubelet.Topology) -> set[int]:
    """The kubelet's CPU list syntax ("0-3,8"), or the table's {"all_but": ...} / {"sockets": [...], "plus": ...}."""
    if isinstance(spec, dict):
        if "all_but" in spec:
            return set(topo.cpus) - cpuset(spec["all_but"], topo)
        return topo.of(1, spec["sockets"]) | cpuset(spec.get("plus", ""), topo)
    out = set()
    for part in filter(None, str(spec).split(",")):
        lo, _, hi = part.partition("-")
        out |= set(range(int(lo), int(hi or lo) + 1))
    return out


def _id(case: dict) -> str:
    return f"{case['test']}: {case['case']}"


def _skip_unmodelled(case: dict) -> None:
    if case.get("not_modelled"):
        pytest.skip(f"not modelled: {case['not_modelled']}")


@pytest.mark.parametrize("case", CPU["take_by_topology"], ids=_id)
def test_take_by_topology(case):
    _skip_unmodelled(case)
    topo = TOPOS[case["topology"]]
    try:
        got = kubelet.take_by_topology_numa_packed(topo, cpuset(case["available"], topo), case["request"])
        answer = {"cpus": sorted(got), "error": None}
    except kubelet.NotEnoughCPUs as e:
        answer = {"cpus": [], "error": str(e)}
    want = {"cpus": sorted(cpuset(case["expect"] or "", topo)), "error": case["error"]}
    assert answer == want


def static_policy_answer(case: dict) -> dict:
    """The harness's kubelet on one TestStaticPolicyAdd case: the CPUs, or the error, as a whole record."""
    topo = TOPOS[case["topology"]]
    reserved = kubelet.reserved_cpus(topo, case["num_reserved"], cpuset(case["reserved"] or "", topo))
    try:
        got = kubelet.static_allocate(topo, cpuset(case["default_cpuset"], topo), reserved, case["cpu_request"],
                                      case["cpu_limit"], "full-pcpus-only" in case["options"],
                                      cpuset(case["assigned"], topo) if case["assigned"] else None)
        return {"cpus": None if got is None else sorted(got), "error": None}
    except kubelet.SMTAlignmentError as e:
        return {"cpus": None, "error": {"kind": "SMTAlignmentError", "requested": e.requested,
                                        "cpus_per_core": e.cpus_per_core}}
    except kubelet.NotEnoughCPUs as e:
        return {"cpus": None, "error": {"kind": "error", "message": str(e)}}


@pytest.mark.parametrize("case", CPU["static_policy_allocate"], ids=_id)
def test_static_policy_allocate(case):
    _skip_unmodelled(case)
    topo = TOPOS[case["topology"]]
    want = {"cpus": None if case["expect"] is None else sorted(cpuset(case["expect"], topo)), "error": case["error"]}
    assert static_policy_answer(case) == want


TM = json.loads((FIXTURES / "topologymanager.json").read_text())["cases"]


def _hint(h: dict) -> tuple:
    return (None if h["numa"] is None else frozenset(h["numa"]), h["preferred"])


def _unhint(h: tuple) -> dict:
    return {"numa": None if h[0] is None else sorted(h[0]), "preferred": h[1]}


@pytest.mark.parametrize("case", TM, ids=_id)
def test_single_numa_node(case):
    _skip_unmodelled(case)
    if case["test"] == "TestPolicySingleNumaNodeCanAdmitPodResult":
        assert kubelet.single_numa_node_admit(_hint(case["hint"])) == case["expect_admit"]
    elif case["test"] == "TestPolicySingleNumaNodeFilterHints":
        got = kubelet.filter_single_numa_hints([[_hint(h) for h in r] for r in case["resources"]])
        assert [[_unhint(h) for h in r] for r in got] == case["expect"]
    else:
        providers = [None if p is None else {r: None if hs is None else [_hint(h) for h in hs] for r, hs in p.items()}
                     for p in case["providers"]]
        best, admit = kubelet.single_numa_node_merge(case["numa_nodes"], providers)
        assert _unhint(best) == case["expect"] and admit == case["expect"]["preferred"]


PSA = json.loads((FIXTURES / "psa.json").read_text())["cases"]


def _psa_id(case: dict) -> str:
    return case["upstream"].split("testdata/")[1]


@pytest.mark.parametrize("case", PSA, ids=_psa_id)
def test_pod_security_admission(case):
    _skip_unmodelled(case)
    why = admission.violations(case["pod"], case["level"], case["version"])
    assert ("pass" if not why else "fail") == case["expect"], why
