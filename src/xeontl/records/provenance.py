"""provenance.json: what ran, where, on what, with what. Validated against schemas/provenance.schema.json.

Two halves: `probe()` runs inside the execution environment, in rank 0 itself (probe.json in the run dir, on every
engine: its cpuset, numactl and threads are rank 0's); `write()`, called by the launcher after the run, adds what
only the host knows (image, git, command). This module records: it starts no run or container and settles no status
(launch.py does both); its one child process is `xeontl probe`'s math sample (a run records its own training's).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import pwd
import re
import subprocess
import sys
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path

from xeontl import __version__
from xeontl.common import records, redact
from xeontl.common.errors import UserError
from xeontl.placement import topology
from xeontl.placement.plan import ALLOWED_ENV, ALLOWED_PID_ENV
from xeontl.records import onednn
from xeontl.supply import stacks

# Env names whose values are recorded; any other name is listed without its value.
ENV_ALLOW_PREFIXES = ("KMP_", "OMP_", "TF_", "ONEDNN_", "DNNL_", "HOROVOD_", "OMPI_", "MKL_", "XEONTL_", "TFDS_",
                      "CUDA_VISIBLE", "OPAL_", "PMIX_")
REDACTED = redact.REDACTED
FLAGS_OF_NOTE = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512f", "avx512_vnni", "avx512_fp16", "avx2",
                 "fma", "avx_vnni")
ISA_SAMPLE_TIMEOUT = 180


def redact_env(env: dict[str, str]) -> dict:
    """The values of the allowed prefixes' variables (URL credentials redacted) and of secret-named ones as REDACTED;
    every other name without its value."""
    values, names = {}, []
    for k in sorted(env):
        if redact.secret_name(k) or k.startswith(ENV_ALLOW_PREFIXES):
            values[k] = redact.value(k, env[k])
        else:
            names.append(k)
    return {"values": values, "other_names": names}


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def cpuinfo() -> dict:
    first = _read("/proc/cpuinfo").split("\n\n")[0]
    kv = dict(line.split(":", 1) for line in first.splitlines() if ":" in line)
    kv = {k.strip(): v.strip() for k, v in kv.items()}
    flags = kv.get("flags", "").split()
    return {"model_name": kv.get("model name"), "vendor": kv.get("vendor_id"), "family": kv.get("cpu family"),
            "model": kv.get("model"), "stepping": kv.get("stepping"), "microcode": kv.get("microcode"),
            "mhz": kv.get("cpu MHz"),  # a VM reports its nominal (TSC) clock here, not the boost clock
            "flags": flags, "flags_of_note": {f: f in flags for f in FLAGS_OF_NOTE},
            "hypervisor": _hypervisor() if "hypervisor" in flags else "none"}


def rank_cpu() -> dict:
    """The CPU this process runs on, as every rank records it beside its CPUs (metrics.json ranks[].cpu): on several
    nodes each rank's own, judged by its own BF16 units (records/ranks.py), never by rank 0's node's."""
    return cpu_summary(cpuinfo(), boot())


def rank_place() -> dict:
    """Where this rank was placed, as it records it beside its CPUs (metrics.json ranks[]): the CPUs and memory nodes
    its own shell was allowed before numactl narrowed them (placement.plan.ALLOWED_ENV: what numactl's '+' positions
    index; null where no rank wrapper read them for this very process: a value inherited from elsewhere names another
    PID), its machine's NUMA nodes (node -> CPUs) and nodes with memory (null where the kernel shows none), and its
    memory policy (what numactl -m set)."""
    mine = os.environ.get(ALLOWED_PID_ENV) == str(os.getpid())
    cpus, mems = ((os.environ.get(v) or None) if mine else None for v in ALLOWED_ENV.values())
    topo = topology.live()
    named = topology.kernel_names_nodes()
    return {"allowed_cpus": cpus, "allowed_mems": mems,
            "numa_nodes": topo.summary()["numa_nodes"] if named else None,
            "nodes_with_memory": topology.cpulist(topo.memory_nodes) if named else None,
            "memory_policy": topology.memory_policy()}


def cpu_summary(cpu: dict, boot_id: str | None) -> dict:
    """What a rank records of a CPU (cpuinfo's record) read in boot BOOT_ID."""
    return {"model_name": cpu["model_name"], "family": cpu["family"], "model": cpu["model"],
            "flags_of_note": dict(cpu["flags_of_note"]), "boot": boot_id}


def _hypervisor() -> str:
    """The vendor lscpu reads from CPUID (KVM, VMware, Microsoft...), else what /sys says."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        m = re.search(r"Hypervisor vendor:\s*(.+)", out)
        if m:
            return m[1].strip()
    except (OSError, subprocess.TimeoutExpired):
        pass
    return _read("/sys/hypervisor/type").strip() or "present, vendor not exposed"


def host() -> dict:
    topo = topology.live()
    mem_kb = re.search(r"MemTotal:\s+(\d+)", _read("/proc/meminfo"))
    os_name = re.search(r'PRETTY_NAME="?([^"\n]*)', _read("/etc/os-release"))
    return {"cpu": cpuinfo(), "topology": topo.summary(),
            "memory_gib": round(int(mem_kb[1]) / 2**20, 1) if mem_kb else None,
            "kernel": platform.release(), "os": os_name[1] if os_name else None, "hostname": platform.node(),
            "boot": boot()}


def boot() -> str | None:
    """Which machine, anonymously: a hash of the kernel's boot id. A container shares its host's kernel, so every rank
    and container of one boot of one machine reads the same; another VM (or a reboot) reads another. /etc/machine-id
    is not one: it is the image's inside a container, and this workplace's VMs were all cloned with the same one."""
    raw = _read("/proc/sys/kernel/random/boot_id").strip()
    return hashlib.sha256(raw.encode()).hexdigest()[:16] if raw else None


_CAPS = ["chown", "dac_override", "dac_read_search", "fowner", "fsetid", "kill", "setgid", "setuid", "setpcap",
         "linux_immutable", "net_bind_service", "net_broadcast", "net_admin", "net_raw", "ipc_lock", "ipc_owner",
         "sys_module", "sys_rawio", "sys_chroot", "sys_ptrace", "sys_pacct", "sys_admin", "sys_boot", "sys_nice",
         "sys_resource", "sys_time", "sys_tty_config", "mknod", "lease", "audit_write", "audit_control", "setfcap",
         "mac_override", "mac_admin", "syslog", "wake_alarm", "block_suspend", "audit_read", "perfmon", "bpf",
         "checkpoint_restore"]


def capabilities(kind: str = "CapEff") -> list[str]:
    m = re.search(rf"{kind}:\s+([0-9a-f]+)", _read("/proc/self/status"))
    bits = int(m[1], 16) if m else 0
    return [name for i, name in enumerate(_CAPS) if bits >> i & 1]


def container_runtime() -> str | None:
    """Which container this process runs in, by the mark each runtime leaves: ch-run sets CH_RUNNING (Charliecloud's
    documented marker), Docker writes /.dockerenv, Podman /run/.containerenv, a Kubernetes pod gets the service
    env; None on the bare host. A Slurm task under ch-run has neither Docker's file nor a docker cgroup."""
    if os.environ.get("CH_RUNNING"):
        return "charliecloud"
    if Path("/.dockerenv").exists() or "docker" in _read("/proc/1/cgroup"):
        return "docker"
    if Path("/run/.containerenv").exists():
        return "podman"
    if os.environ.get("KUBERNETES_SERVICE_HOST"):
        return "kubernetes"
    return None


def execution_inside() -> dict:
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = None
    runtime = container_runtime()
    return {"in_container": runtime is not None, "container_runtime": runtime,
            "cpuset_cpus": topology.cgroup_cpuset("cpus") or topology.cpulist(os.sched_getaffinity(0)),
            "cpuset_mems": topology.cgroup_cpuset("mems"), "probe_affinity": topology.cpulist(os.sched_getaffinity(0)),
            "capabilities": capabilities(), "capabilities_bounding": capabilities("CapBnd"), "uid": uid,
            "gid": os.getgid(), "user": user,
            "emulated_sockets": os.environ.get("XEONTL_EMULATED_SOCKETS")}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def lock_file() -> Path | None:
    for p in (Path(os.environ.get("XEONTL_LOCK_FILE", "/nonexistent")),
              Path(__file__).parents[3] / "requirements" / "lock.txt"):
        if p.is_file():
            return p
    return None


def software() -> dict:
    import numpy
    import tensorflow as tf

    try:
        from tensorflow.python.util import _pywrap_util_port

        onednn = bool(_pywrap_util_port.IsMklEnabled())
    except ImportError:
        onednn = None
    hvd = {"version": _version("horovod")}
    try:
        import horovod.tensorflow as htf

        hvd.update(mpi_built=htf.mpi_built(), gloo_built=htf.gloo_built(), tensorflow_built=True)
    except Exception as e:  # not installed or not built for TF
        hvd["error"] = f"{type(e).__name__}: {e}"
    try:
        ompi = subprocess.run(["ompi_info", "--version"], capture_output=True, text=True, timeout=30).stdout
        ompi = re.search(r"v?(\d+\.\d+\.\d+)", ompi)[1]
    except (OSError, TypeError, subprocess.TimeoutExpired):
        ompi = None
    lf = lock_file()
    dist = stacks.tensorflow_distribution()
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "tensorflow_git": tf.version.GIT_VERSION,
            "tensorflow_distribution": dist, "stack": stacks.stack_of(dist), "onednn_enabled": onednn, "horovod": hvd,
            "openmpi": ompi, "numpy": numpy.__version__, "tensorflow_datasets": _version("tensorflow-datasets"),
            "tensorflow_hub": _version("tensorflow-hub"), "xeontl": __version__,
            "lock_file": str(lf) if lf else None,
            "lock_sha256": hashlib.sha256(lf.read_bytes()).hexdigest() if lf else None}


def start_isa_sample(precision: str, amp: str) -> subprocess.Popen:
    """runtime.isa_sample in a child process (oneDNN reads ONEDNN_VERBOSE once, at start) that inherits the caller's
    CPUs, memory nodes and threads: `xeontl probe`'s account of an environment where nothing has run yet. A run
    records its own training's dispatch instead (experiment.dispatch)."""
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    return subprocess.Popen([sys.executable, "-m", "xeontl", "isa-sample", "--precision", precision, "--amp", amp],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def isa_proof(precision: str, amp: str) -> dict:
    """What oneDNN dispatched for a short sample of the training math: its ISA, kernels, whether BF16/AMX ran."""
    proc = start_isa_sample(precision, amp)
    try:
        stdout, stderr = proc.communicate(timeout=ISA_SAMPLE_TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        return {"error": "ISA sample timed out"}
    return {**onednn.parse(stdout), "precision": precision, "amp": amp, "returncode": proc.returncode,
            "source": "sample", "what": "a short conv + matmul in a child process (xeontl isa-sample)",
            **({"stderr_tail": stderr[-500:]} if proc.returncode else {})}


def probe(precision: str = "bf16", amp: str = "onednn", math_path: dict | None = None,
          env: dict | None = None) -> dict:
    """Everything observable from inside the execution environment (rank 0 writes it as probe.json, with MATH_PATH
    what its own training dispatched and ENV its environment as given; `xeontl probe` runs a sample instead)."""
    return {"host": host(), "execution": execution_inside(), "software": software(),
            "math_path": math_path if math_path is not None else isa_proof(precision, amp),
            "env": redact_env(dict(os.environ) if env is None else env)}


# ------------------------------------------------------------------------------------------------ launcher side
def read_probe(run_dir: Path) -> dict:
    """Rank 0's probe.json; a run that died before rank 0 wrote it says so instead."""
    try:
        return records.read_record(run_dir / "probe.json", "probe")
    except UserError:
        return {"error": "no probe.json: rank 0 did not start or was killed before writing it (see logs/)"}


def _read_json(path: Path) -> dict | None:
    from xeontl.common import records  # bounded, a regular file only, no link: the run's container wrote it
    from xeontl.common.errors import UserError

    try:
        doc = records.loads(records.read_bytes(path, str(path.name), 1 << 20, follow=False))
    except (UserError, ValueError, RecursionError):
        return None
    return doc if isinstance(doc, dict) else None


def git_info(repo: Path) -> dict:
    def git(*args):
        try:
            r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        except OSError:  # no git (inside the image)
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    return {"commit": commit, "dirty": bool(git("status", "--porcelain")) if commit else None}


def schema() -> dict:
    return records.schema("provenance")


def validate(doc: dict) -> None:
    records.validate(doc, "provenance")


def write(staging: Path, run_id: str, cfg: dict, plan: dict, status: str, failure: dict | None, metrics: dict,
          inside: dict, started: str, seconds: float, execution: dict, resumed_from: str | None = None) -> None:
    """provenance.json of a finished (or failed) run: the probe's view from inside, the launcher's from outside.
    `execution` is what the engine that ran it records of itself: its mode, its own record (slurm, kubernetes), the
    image and the capabilities it added; the rest is the same for every engine."""
    doc = {
        "schema_version": 1,
        "run_id": run_id,
        "status": status,
        "failure": failure,
        "timestamps": {"start_utc": started, "end_utc": datetime.now(timezone.utc).isoformat(), "seconds": seconds},
        "host": inside.get("host"),
        "execution": {
            "image": None, "capabilities_added": [], **execution,
            "inside": inside.get("execution"),
            "emulated_sockets": bool(plan.get("emulated")),
            "plan": plan,
            "per_rank_affinity": [{"rank": r["rank"], "host": r.get("host"), "node": r.get("node"),
                                   "cpus": topology.cpulist(r["affinity"])} for r in metrics.get("ranks", [])],
            "horovod_controller_used": sorted({r["controller"] for r in metrics.get("ranks", [])
                                               if r.get("controller")}),
        },
        "software": inside.get("software"),
        "math_path": inside.get("math_path"),
        "env": inside.get("env") or redact_env(dict(os.environ)),
        "data": metrics.get("dataset"),
        "weights": metrics.get("weights"),
        "code": {**git_info(Path(__file__).parents[3]), "xeontl_version": __version__},
        "seeds": {"seed": cfg["seed"]},
        # --resume: the run this one continues (its run id stays; this run has a new one) and the checkpoint used
        "resumed_from": {"run": resumed_from, **(metrics.get("resumed_from") or {})} if resumed_from else None,
        "feature_cache": metrics.get("feature_cache"),
        "probe_error": inside.get("error"),
        # how the weights' hash was held: pinned by the config, or to the hash of their first use (assets.pin_weights)
        "weights_pin": _read_json(staging / "weights-pin.json"),
    }
    validate(doc)
    (staging / "provenance.json").write_text(json.dumps(doc, indent=1, default=str))
