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
The launcher pod imports no TensorFlow (it runs mpirun, then settles and records the run): it is not constrained.
Light: no Docker, no TensorFlow (k8s_watch imports it)."""

from __future__ import annotations

import shlex

from xeontl.supply.stacks import STACKS, Stack, tag_stack

NFD_PREFIX = "feature.node.kubernetes.io/cpu-cpuid."
NFD_NAMES = {"avx512f": "AVX512F"}  # /proc/cpuinfo's flag -> NFD's cpuid feature name (klauspost/cpuid's)


def nfd_label(flag: str) -> str:
    return NFD_PREFIX + NFD_NAMES.get(flag, flag.upper())


def stack_of(stack: str, image: str) -> Stack:
    """The stack whose CPU the pods need: the one whose own tag IMAGE is (xeontl:paper, even under --stack default),
    else STACK's."""
    tagged = tag_stack(image)  # any spelling of it (docker.io/library/xeontl:paper)
    return tagged if tagged is not None and tagged.cpu else STACKS[stack]


def line(stack: Stack, flag: str) -> str:
    """What a worker whose node lacks FLAG says (Slurm's node check says the same of a node of its job)."""
    return (f"xeontl: error: --stack {stack.name}: the node of this worker lacks {flag}, without which "
            f"{stack.versions['tensorflow']} aborts on import; nothing was run")


def require(pod: dict, stack: Stack) -> None:
    """POD (a worker template's spec) placed only on nodes labelled with the stack's CPU flags, and each container
    checking them first: one line, exit 2. Nothing for a stack with no such flags."""
    if not stack.cpu:
        return
    terms = [{"key": nfd_label(f), "operator": "In", "values": ["true"]} for f in stack.cpu]
    pod.setdefault("affinity", {})["nodeAffinity"] = {
        "requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": [{"matchExpressions": terms}]}}
    check = "; ".join(f"grep -qw {f} /proc/cpuinfo || {{ echo {shlex.quote(line(stack, f))} >&2; exit 2; }}"
                      for f in stack.cpu)
    for c in pod["containers"]:
        c["command"] = ["sh", "-c", f'{check}; exec "$@"', "xeontl-cpu-check", *c["command"]]
        c["terminationMessagePolicy"] = "FallbackToLogsOnError"


def needs(pod: dict) -> list[str]:
    """The CPU flags a pod's required node affinity asks NFD's labels for (k8s_watch: why it cannot be placed)."""
    names = {v: k for k, v in NFD_NAMES.items()}
    aff = (((pod.get("spec") or {}).get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution") or {}
    return [names.get(e["key"][len(NFD_PREFIX):], e["key"][len(NFD_PREFIX):].lower())
            for t in aff.get("nodeSelectorTerms") or [] for e in t.get("matchExpressions") or []
            if str(e.get("key", "")).startswith(NFD_PREFIX)]


def hint(pod: dict) -> str:
    """For a pod no node takes: the CPU flags it needs and the labels that say a node has them ("" for none)."""
    flags = needs(pod)
    if not flags:
        return ""
    return (f" (it needs a node whose CPU has {', '.join(flags)}: labelled "
            f"{', '.join(nfd_label(f) + '=true' for f in flags)} by Node Feature Discovery, or by hand: the stack's "
            f"TensorFlow aborts without it)")


def note(stack: Stack) -> str | None:
    """render's note on the nodes the stack's workers need (None: any node)."""
    if not stack.cpu:
        return None
    return (f"--stack {stack.name} ({stack.versions['tensorflow']}): worker pods only on nodes labelled "
            f"{', '.join(nfd_label(f) + '=true' for f in stack.cpu)} (Node Feature Discovery; or kubectl label node "
            f"by hand), each checking {', '.join(stack.cpu)} in /proc/cpuinfo before its sshd starts")
