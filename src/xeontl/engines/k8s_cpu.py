"""The CPU a stack needs, on Kubernetes: the paper stack's intel-tensorflow-avx512 aborts on import on a CPU without
AVX512F (docs/image.md, "CPUs without AVX-512"), and the pods run on the cluster's nodes, not on this host. So for a
stack with CPU flags (xeontl.supply.stacks.Stack.cpu) every worker pod gets, as Slurm's job gets its node check:

- a required node affinity on Node Feature Discovery's label of each flag (`feature.node.kubernetes.io/cpu-cpuid.
  AVX512F` In ["true"], the label nfd-worker's cpu source publishes, kubernetes-sigs/node-feature-discovery
  docs/usage/features.md): the scheduler places a worker only on a node whose CPU has it. A cluster without NFD
  labels such nodes by hand (kubectl label node NODE feature.node.kubernetes.io/cpu-cpuid.AVX512F=true); a pod no
  node takes stays Pending, and k8s_watch ends the run after its bound in one line naming the flag (`hint`);
- a check at the container's start, before its sshd (a label set by hand may be wrong): `grep -qw FLAG
  /proc/cpuinfo` or one line and exit 2, which the kubelet keeps as the container's termination message
  (terminationMessagePolicy FallbackToLogsOnError) and k8s_watch prints when the worker pod Fails.
The run's precision adds its own (needs.run_needs, the one definition the launcher's, Slurm's and these checks
share): bf16 needs one of oneDNN's BF16 kernels' flags (runtime.BF16_FLAGS), so the affinity is an OR over node
selector terms, one per such flag (each with the stack's flags too), and the start-up check greps for any of them.
The launcher pod imports no TensorFlow (it runs mpirun, then settles and records the run): it is not constrained.
Light: no Docker, no TensorFlow (k8s_watch imports it)."""

from __future__ import annotations

import itertools
import shlex

from xeontl.supply.needs import Need, grep_check, lacks_line, run_needs
from xeontl.supply.stacks import STACKS, Stack, tag_stack

NFD_PREFIX = "feature.node.kubernetes.io/cpu-cpuid."
# /proc/cpuinfo's flag -> NFD's cpuid feature name (klauspost/cpuid's)
NFD_NAMES = {"avx512f": "AVX512F", "avx512bw": "AVX512BW", "avx512_bf16": "AVX512BF16", "amx_bf16": "AMXBF16",
             "avx_ne_convert": "AVXNECONVERT"}


def nfd_label(flag: str) -> str:
    return NFD_PREFIX + NFD_NAMES.get(flag, flag.upper())


def stack_of(stack: str, image: str) -> Stack:
    """The stack whose CPU the pods need: the one whose own tag IMAGE is (xeontl:paper, even under --stack default),
    else STACK's."""
    tagged = tag_stack(image)  # any spelling of it (docker.io/library/xeontl:paper)
    return tagged if tagged is not None and tagged.cpu else STACKS[stack]


def _terms(needs: list[Need]) -> list[tuple[str, ...]]:
    """NEEDS as node selector terms: a node has what the run needs when it has every flag of any one term."""
    return list(itertools.product(*(n.flags for n in needs)))


def line(need: Need) -> str:
    """What a worker whose node lacks NEED says (Slurm's node check says the same of a node of its job)."""
    return lacks_line(need, "the node of this worker")


def require(pod: dict, stack: Stack, precision: str = "auto") -> None:
    """POD (a worker template's spec) placed only on nodes labelled with what the run needs of their CPU (the stack's
    flags, the precision's: needs.run_needs), and each container checking it first: one line, exit 2. Nothing for
    a run that needs nothing of it."""
    needs = run_needs(stack, precision)
    if not needs:
        return
    terms = [{"matchExpressions": [{"key": nfd_label(f), "operator": "In", "values": ["true"]} for f in flags]}
             for flags in _terms(needs)]  # ORed terms, each ANDing its expressions
    pod.setdefault("affinity", {})["nodeAffinity"] = {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
    check = "; ".join(f"{grep_check(n)} || {{ echo {shlex.quote(line(n))} >&2; exit 2; }}" for n in needs)
    for c in pod["containers"]:
        c["command"] = ["sh", "-c", f'{check}; exec "$@"', "xeontl-cpu-check", *c["command"]]
        c["terminationMessagePolicy"] = "FallbackToLogsOnError"


def needs(pod: dict) -> list[list[str]]:
    """The node selector terms of a pod's required node affinity on NFD's labels, as CPU flags (k8s_watch: why it
    cannot be placed): a node needs all the flags of any one term."""
    names = {v: k for k, v in NFD_NAMES.items()}
    aff = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    terms = [[names.get(e["key"][len(NFD_PREFIX):], e["key"][len(NFD_PREFIX):].lower())
              for e in t.get("matchExpressions") or [] if str(e.get("key", "")).startswith(NFD_PREFIX)]
             for t in aff.get("nodeSelectorTerms") or []]
    return [t for t in terms if t]


def _words(terms: list[list[str]]) -> tuple[list[str], list[str]]:
    """TERMS as the flags every term has and those of which one is needed (one per term)."""
    every = [f for f in terms[0] if all(f in t for t in terms)]
    one = list(dict.fromkeys(f for t in terms for f in t if f not in every))
    return every, one


def _said(terms: list[list[str]]) -> tuple[str, str]:
    """TERMS in words: the flags, and the NFD labels that say a node has them."""
    every, one = _words(terms)
    flags = " and ".join(filter(None, [", ".join(every), one and f"one of {', '.join(one)}"]))
    labels = " and ".join(filter(None, [", ".join(nfd_label(f) + "=true" for f in every),
                                        one and f"one of {', '.join(nfd_label(f) + '=true' for f in one)}"]))
    return flags, labels


def hint(pod: dict) -> str:
    """For a pod no node takes: the CPU flags it needs and the labels that say a node has them ("" for none)."""
    terms = needs(pod)
    if not terms:
        return ""
    flags, labels = _said(terms)
    return (f" (it needs a node whose CPU has {flags}: labelled {labels} by Node Feature Discovery, or by hand: the "
            f"run's TensorFlow fails without it)")


def note(stack: Stack, precision: str = "auto") -> str | None:
    """render's note on the nodes the run's workers need (None: any node)."""
    needs = run_needs(stack, precision)
    if not needs:
        return None
    flags, labels = _said([list(t) for t in _terms(needs)])
    who = ", ".join(dict.fromkeys(f"{n.by} ({stack.versions['tensorflow']})" if n.by == f"--stack {stack.name}"
                                  else n.by for n in needs))
    return (f"{who}: worker pods only on nodes labelled {labels} (Node Feature Discovery; or kubectl label node by "
            f"hand), each checking {flags} in /proc/cpuinfo before its sshd starts")
