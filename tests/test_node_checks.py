"""What a run's ranks need of their CPU, checked where they run when that is not this host: Slurm's nodes (the sbatch
script's node check) and Kubernetes' worker pods (NFD's node affinity, a check at the container's start). The stack's
flags (the paper stack's avx512f) and the run's precision's (bf16: one of runtime.BF16_FLAGS, oneDNN's BF16 kernels),
from one definition (needs.run_needs), as the launcher's own check on this host."""

import re
import subprocess

import pytest
import yaml

from conftest import SPR, invoke, scaled
from xeontl.engines import k8s_cpu
from xeontl.engines import kubernetes as k8s
from xeontl.experiment import config, runtime
from xeontl.placement import plan as planlib
from xeontl.placement import topology
from xeontl.supply import stacks

AVX512F_NODE = ("xeontl: error: --stack paper: a node of this job lacks avx512f, without which intel-tensorflow-avx512 "
                "2.10.0 aborts on import; nothing was run")
BF16_NODE = ("xeontl: error: precision bf16: a node of this job lacks oneDNN BF16 kernels (none of amx_bf16, "
             "avx512_bf16, avx512bw, avx_ne_convert), without which the first BF16 op of every rank fails; nothing "
             "was run (precision=auto runs fp32 there)")
ZEN1 = "fpu sse2 avx avx2 fma"

# (what, reproduce's arguments, the lines the sbatch script's node check says, in order)
SLURM = [
    ("the paper profile (bf16), the default stack", ["--profile", "paper"], [BF16_NODE]),
    ("the paper profile, the paper stack", ["--profile", "paper", "--stack", "paper"], [AVX512F_NODE, BF16_NODE]),
    ("the paper stack at fp32", ["--profile", "paper", "--stack", "paper", "--set", "precision=fp32"], [AVX512F_NODE]),
    ("the demo profile (auto: fp32 where no BF16)", ["--profile", "demo"], []),
    ("the demo profile at bf16", ["--profile", "demo", "--set", "precision=bf16"], [BF16_NODE]),
]


def sbatch_script(args, tmp_path):
    r = invoke("reproduce", "--engine", "slurm", "--sockets", "2", "--topology",
               str(SPR), "--results-dir", str(tmp_path), "--dry-run", *args, timeout=scaled(120))
    assert r.returncode == 0, r.stderr
    return r.stdout.split("# the sbatch script")[1]


def node_checks(script):
    return [ln for ln in script.splitlines() if ln.startswith("srun --ntasks=$SLURM_JOB_NUM_NODES --ntasks-per-node=1")]


@pytest.mark.parametrize("what,args,says", SLURM, ids=[c[0] for c in SLURM])
def test_the_slurm_job_checks_what_the_runs_ranks_need_on_every_node(what, args, says, tmp_path):
    script = sbatch_script(args, tmp_path)
    checks = node_checks(script)
    assert [re.search(r"echo '(.*)'; exit 2", c).group(1) for c in checks] == says, script
    for c in checks:  # before the ranks start
        assert script.index(c) < script.index("srun --mpi")


@pytest.mark.parametrize("flags,says", [
    (ZEN1, [AVX512F_NODE]),  # the first check ends the job
    (f"{ZEN1} avx512f", [BF16_NODE]),  # a Xeon Phi: AVX-512 without BW
    (f"{ZEN1} avx512f avx512bw", []),  # emulated BF16
    (f"{ZEN1} avx512f avx512_bf16", []),
    (f"{ZEN1} avx512f amx_bf16 amx_tile", []),
])
def test_the_slurm_node_check_run_on_a_played_cpu(flags, says, tmp_path):
    """The script's node checks, run by sh with srun's prefix dropped and /proc/cpuinfo played by a file."""
    script = sbatch_script(["--profile", "paper", "--stack", "paper"], tmp_path)
    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    body = "\n".join(c.replace("srun --ntasks=$SLURM_JOB_NUM_NODES --ntasks-per-node=1 ", "").replace(
        "/proc/cpuinfo", str(tmp_path / "cpuinfo")) for c in node_checks(script)) + "\necho ranks"
    r = subprocess.run(["sh", "-c", body], capture_output=True, text=True, timeout=30)
    assert (r.returncode, r.stdout.splitlines()) == ((2, says) if says else (0, ["ranks"])), r.stderr


def worker(precision, stack):
    topo = topology.load_file(SPR)
    cores, cpus = k8s.pod_cores(topo, k8s.default_reserved(topo))
    plan = planlib.make_plan(topo, 2, cores_per_socket=cores, node_count=2, relative=True)
    cfg = {**config.resolve("paper"), "precision": precision}
    docs = k8s.manifest(plan, cfg, "r1", stacks.STACKS[stack].tag, "xeontl-results", worker_cpus=cpus,
                        stack=stacks.STACKS[stack])
    k8s.check(docs, 2)  # every check the engine holds a manifest to
    job = next(d for d in docs if d["kind"] == "MPIJob")
    return job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]


def term(*flags):
    return {"matchExpressions": [{"key": k8s_cpu.nfd_label(f), "operator": "In", "values": ["true"]} for f in flags]}


K8S = [  # (precision, stack, the worker's node selector terms: any one of them, None: no node affinity)
    ("bf16", "default", [term(f) for f in runtime.BF16_FLAGS]),
    ("bf16", "paper", [term("avx512f", f) for f in runtime.BF16_FLAGS]),
    ("fp32", "paper", [term("avx512f")]),
    ("auto", "paper", [term("avx512f")]),
    ("fp32", "default", None),
    ("auto", "default", None),
]


@pytest.mark.parametrize("precision,stack,terms", K8S, ids=[f"{p}-{s}" for p, s, _ in K8S])
def test_kubernetes_workers_need_the_runs_cpu_flags(precision, stack, terms):
    pod = worker(precision, stack)
    aff = (pod.get("affinity") or {}).get("nodeAffinity")
    c = pod["containers"][0]
    if terms is None:
        assert aff is None and c["command"] == ["xeontl-entrypoint", "node"]
        return
    assert aff == {"requiredDuringSchedulingIgnoredDuringExecution": {"nodeSelectorTerms": terms}}
    assert c["command"][:2] == ["sh", "-c"] and c["command"][3:] == ["xeontl-cpu-check", "xeontl-entrypoint", "node"]
    assert ("oneDNN BF16 kernels" in c["command"][2]) == (precision == "bf16")
    assert {"AMXBF16", "AVX512BF16", "AVX512BW"} <= {k8s_cpu.NFD_NAMES[f] for f in runtime.BF16_FLAGS}


BF16_WORKER = BF16_NODE.replace("a node of this job", "the node of this worker")


@pytest.mark.parametrize("stack,flags,code,says", [
    ("default", ZEN1, 2, BF16_WORKER),
    ("default", f"{ZEN1} avx_ne_convert", 0, None),
    ("paper", f"{ZEN1} avx512f", 2, BF16_WORKER),
    ("paper", f"{ZEN1} avx512f avx512bw", 0, None),
])
def test_a_bf16_worker_checks_its_nodes_cpu_before_anything_starts(stack, flags, code, says, tmp_path):
    cmd = worker("bf16", stack)["containers"][0]["command"]
    (tmp_path / "cpuinfo").write_text(f"processor\t: 0\nflags\t\t: {flags}\n")
    cmd = [a.replace("/proc/cpuinfo", str(tmp_path / "cpuinfo")) for a in cmd]
    r = subprocess.run([*cmd[:-2], "echo", "entrypoint", "node"], capture_output=True, text=True, timeout=30)
    assert r.returncode == code, r.stderr
    assert (r.stderr.splitlines(), r.stdout) == (([says], "") if says else ([], "entrypoint node\n"))


def test_a_worker_no_node_takes_names_what_it_needs():
    pod = {"spec": worker("bf16", "paper")}
    assert k8s_cpu.hint(pod) == (
        " (it needs a node whose CPU has avx512f and one of amx_bf16, avx512_bf16, avx512bw, avx_ne_convert: labelled "
        "feature.node.kubernetes.io/cpu-cpuid.AVX512F=true and one of feature.node.kubernetes.io/cpu-cpuid.AMXBF16="
        "true, feature.node.kubernetes.io/cpu-cpuid.AVX512BF16=true, feature.node.kubernetes.io/cpu-cpuid.AVX512BW="
        "true, feature.node.kubernetes.io/cpu-cpuid.AVXNECONVERT=true by Node Feature Discovery, or by hand: the "
        "run's TensorFlow fails without it)")


def test_render_with_the_paper_profile_writes_the_bf16_check(tmp_path):
    out = tmp_path / "job.yaml"
    r = invoke("render", "--engine", "k8s", "--topology", str(SPR), "--profile", "paper", "--output", str(out),
               "--assets-claim", "xeontl-assets", timeout=scaled(120))
    assert r.returncode == 0, r.stderr
    job = next(d for d in yaml.safe_load_all(out.read_text()) if d and d["kind"] == "MPIJob")
    cmd = job["spec"]["mpiReplicaSpecs"]["Worker"]["template"]["spec"]["containers"][0]["command"]
    assert BF16_WORKER in cmd[2] and "precision bf16" in r.stdout
