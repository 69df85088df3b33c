"""provenance.json: what ran, where, on what, with what. Validated against schemas/provenance.schema.json.

Two halves: `probe()` runs inside the execution environment (the container, with the plan's cpuset and numactl) and
sees what the workers saw; `finish()` runs in the launcher and adds what only the host knows (image, git, command).
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
from importlib import metadata, resources
from pathlib import Path

from xeontl import __version__, events, topology

# Env names whose values are recorded; any other name is listed without its value.
ENV_ALLOW_PREFIXES = ("KMP_", "OMP_", "TF_", "ONEDNN_", "DNNL_", "HOROVOD_", "OMPI_", "MKL_", "XEONTL_", "TFDS_",
                      "CUDA_VISIBLE", "OPAL_", "PMIX_")
SECRET_PATTERN = re.compile(r"KEY|TOKEN|SECRET|PASSW|CREDENTIAL|AUTH|PRIVATE|SESSION|COOKIE", re.I)
REDACTED = "<redacted>"
FLAGS_OF_NOTE = ("amx_bf16", "amx_tile", "amx_int8", "avx512_bf16", "avx512f", "avx512_vnni", "avx512_fp16")
ISA_SAMPLE_TIMEOUT = 180


def redact_env(env: dict[str, str]) -> dict:
    values, names = {}, []
    for k in sorted(env):
        if SECRET_PATTERN.search(k):
            values[k] = REDACTED
        elif k.startswith(ENV_ALLOW_PREFIXES):
            values[k] = env[k]
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
            "flags": flags, "flags_of_note": {f: f in flags for f in FLAGS_OF_NOTE},
            "hypervisor": _hypervisor() if "hypervisor" in flags else "none"}


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
    return {"cpu": cpuinfo(), "topology": topo.summary(), "memory_gib": round(int(mem_kb[1]) / 2**20, 1) if mem_kb else None,
            "kernel": platform.release(), "os": os_name[1] if os_name else None, "hostname": platform.node()}


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


def execution_inside() -> dict:
    uid = os.getuid()
    try:
        user = pwd.getpwuid(uid).pw_name
    except KeyError:
        user = None
    return {"in_container": Path("/.dockerenv").exists() or "docker" in _read("/proc/1/cgroup"),
            "cpuset_cpus": topology.cgroup_cpuset("cpus") or topology.cpulist(os.sched_getaffinity(0)),
            "cpuset_mems": topology.cgroup_cpuset("mems"), "probe_affinity": topology.cpulist(os.sched_getaffinity(0)),
            "capabilities": capabilities(), "capabilities_bounding": capabilities("CapBnd"), "uid": uid, "gid": os.getgid(), "user": user,
            "emulated_sockets": os.environ.get("XEONTL_EMULATED_SOCKETS")}


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def lock_file() -> Path | None:
    for p in (Path(os.environ.get("XEONTL_LOCK_FILE", "/nonexistent")), Path(__file__).parents[2] / "requirements" / "lock.txt"):
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
    return {"python": platform.python_version(), "tensorflow": tf.__version__, "tensorflow_git": tf.version.GIT_VERSION,
            "intel_tensorflow": _version("intel-tensorflow"), "onednn_enabled": onednn, "horovod": hvd,
            "openmpi": ompi, "numpy": numpy.__version__, "tensorflow_datasets": _version("tensorflow-datasets"),
            "tensorflow_hub": _version("tensorflow-hub"), "xeontl": __version__,
            "lock_file": str(lf) if lf else None,
            "lock_sha256": hashlib.sha256(lf.read_bytes()).hexdigest() if lf else None}


# A short sample of the training math (conv + matmul under the run's precision), with oneDNN's verbose log on,
# to see which ISA kernels were really dispatched: avx512_core_amx vs avx512_core_bf16 vs ...
_ISA_SAMPLE = r"""
import sys, tensorflow as tf
prec, amp = sys.argv[1], sys.argv[2]
if prec == "bf16" and amp == "onednn":
    tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
elif prec == "bf16":
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
x = tf.random.uniform((8, 56, 56, 64))
conv = tf.keras.layers.Conv2D(64, 3, padding="same")
dense = tf.keras.layers.Dense(256)
@tf.function
def f(x):
    return tf.reduce_sum(dense(tf.reshape(conv(x), (8, -1))[:, :512]))
for _ in range(3):
    f(x).numpy()
"""


def isa_proof(precision: str, amp: str) -> dict:
    env = {**os.environ, "ONEDNN_VERBOSE": "1", "TF_CPP_MIN_LOG_LEVEL": "2"}
    try:
        out = subprocess.run([sys.executable, "-c", _ISA_SAMPLE, precision, amp], capture_output=True, text=True,
                             env=env, timeout=ISA_SAMPLE_TIMEOUT)
    except subprocess.TimeoutExpired:
        return {"error": "ISA sample timed out"}
    lines = [l for l in out.stdout.splitlines() if l.startswith(("onednn_verbose", "dnnl_verbose"))]
    isa_line = next((l.split(",", 3)[-1] for l in lines if ",info,cpu,isa:" in l), None)
    version = next((m[1] for l in lines if (m := re.search(r",info,oneDNN (v[\d.]+)", l))), None)
    impls, bf16 = {}, False
    for l in lines:
        parts = l.split(",")
        if len(parts) > 6 and parts[1] == "exec" and parts[2] == "cpu":
            impls[parts[4]] = impls.get(parts[4], 0) + 1
            bf16 |= "bf16" in l
    isas = sorted({m for impl in impls for m in re.findall(r"(avx512_core_amx\w*|avx512_core_bf16|avx512_core_vnni|"
                                                             r"avx512_core|avx2_vnni\w*|avx2|sse41|gemm:jit|ref)", impl)})
    return {"onednn_version": version, "cpu_isa": isa_line, "implementations": impls, "isas_dispatched": isas, "bf16_kernels_seen": bf16,
            "amx_used": any("amx" in i for i in isas), "precision": precision, "amp": amp,
            "returncode": out.returncode, **({"stderr_tail": out.stderr[-500:]} if out.returncode else {})}


def probe(precision: str = "bf16", amp: str = "onednn") -> dict:
    """Everything observable from inside the execution environment."""
    return {"host": host(), "execution": execution_inside(), "software": software(),
            "math_path": isa_proof(precision, amp), "env": redact_env(dict(os.environ))}


# ------------------------------------------------------------------------------------------------ launcher side
def git_info(repo: Path) -> dict:
    def git(*args):
        try:
            r = subprocess.run(["git", "-C", str(repo), *args], capture_output=True, text=True)
        except OSError:  # no git (inside the image)
            return None
        return r.stdout.strip() if r.returncode == 0 else None

    commit = git("rev-parse", "HEAD")
    if commit is None and os.environ.get("XEONTL_GIT_REVISION"):  # the image's build revision
        return {"commit": os.environ["XEONTL_GIT_REVISION"], "dirty": None, "source": "image label"}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain")) if commit else None}


def schema() -> dict:
    return json.loads(resources.files("xeontl.schemas").joinpath("provenance.schema.json").read_text())


def validate(doc: dict) -> None:
    import jsonschema

    jsonschema.validate(doc, schema())


def run_probe(prepared, timeout: int = 300) -> dict:
    """Run `xeontl probe` where the workers ran: same image, cpuset, caps and rank 0's numactl."""
    cfg, plan = prepared.cfg, prepared.plan
    from xeontl import launch, plan as planlib

    inner = [*plan.workers[0].numactl, "python", "-m", "xeontl", "probe", "--precision", cfg["precision"],
             "--amp", cfg["amp"]]
    if prepared.opts.native:
        cmd, env = inner, {**os.environ, **plan.env}
    else:
        cmd = planlib.docker_command(plan, prepared.opts.image, inner, None, launch.container_user())
        env = dict(os.environ)
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
        return json.loads(out.stdout.strip().splitlines()[-1])
    except (subprocess.TimeoutExpired, json.JSONDecodeError, IndexError) as e:
        return {"error": f"probe failed: {type(e).__name__}"}


def _status(staging: Path, rc: int, status: str | None) -> tuple[str, dict]:
    metrics_path = staging / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if status is None:
        status = metrics.get("status", "failed") if rc == 0 else ("aborted" if rc == 130 else "failed")
    failure = None
    if status != "success":
        log = _read(str(staging / "logs-launcher.txt"))
        # horovodrun / mpirun name the rank that died and how, e.g. "Process 1 exit with status code 137".
        m = re.search(r"[Pp]rocess (\d+) exit with status code (\d+)", log) or re.search(
            r"rank (\d+) .*?exited on signal (\d+)", log)
        failure = {"returncode": rc}
        if m:
            code = int(m[2])
            failure.update(rank=int(m[1]), exit_code=code, signal=code - 128 if code > 128 else
                           (code if "signal" in m[0] else None))
    return status, {"metrics": metrics, "failure": failure}


def finish(staging: Path, prepared, rc: int, status: str | None, started: str, seconds: float, image_info) -> str:
    """After the run (success or not): status, events, provenance.json. Returns the status."""
    status, extra = _status(staging, rc, status)
    metrics = extra["metrics"]
    if not metrics:  # the trainer never wrote: still leave a status
        (staging / "metrics.json").write_text(json.dumps({"status": status, "failure": extra["failure"]}, indent=1))
    elif metrics.get("status") != status:
        metrics.update(status=status, failure=extra["failure"])
        (staging / "metrics.json").write_text(json.dumps(metrics, indent=1, default=str))
    ev = events.read(staging / "events.jsonl")
    if not ev or ev[-1]["key"] != "run_stop" or ev[-1]["value"].get("status") != status:
        events.EventLog(staging / "events.jsonl").write("run_stop", status=status, source="launcher",
                                                        failure=extra["failure"])
    opts = prepared.opts
    inside = run_probe(prepared) if opts.probe else {"error": "probe skipped (a bench run: bench.json has the host)"}
    labels = (image_info or {}).get("Config", {}).get("Labels") or {}
    doc = {
        "schema_version": 1,
        "run_id": prepared.run_id,
        "status": status,
        "failure": extra["failure"],
        "timestamps": {"start_utc": started, "end_utc": datetime.now(timezone.utc).isoformat(), "seconds": seconds},
        "host": inside.get("host"),
        "execution": {
            "mode": "native" if opts.native else "docker",
            "image": {"ref": opts.image, "id": image_info.get("Id"), "digests": image_info.get("RepoDigests"),
                      "labels": labels} if image_info else None,
            "inside": inside.get("execution"),
            "capabilities_added": [] if opts.native else ["SYS_NICE"],
            "emulated_sockets": prepared.plan.emulated,
            "plan": prepared.plan.to_dict(),
            "per_rank_affinity": [{"rank": r["rank"], "host": r.get("host"), "cpus": topology.cpulist(r["affinity"])}
                                  for r in metrics.get("ranks", [])],
            "horovod_controller_used": sorted({r["controller"] for r in metrics.get("ranks", []) if r.get("controller")}),
        },
        "software": inside.get("software"),
        "math_path": inside.get("math_path"),
        "env": inside.get("env") or redact_env(dict(os.environ)),
        "data": metrics.get("dataset"),
        "weights": metrics.get("weights"),
        "code": {**git_info(Path(__file__).parents[2]), "xeontl_version": __version__},
        "seeds": {"seed": prepared.cfg["seed"]},
        # --resume: the run this one continues (its run id stays; this run has a new one) and the checkpoint used
        "resumed_from": {"run": str(opts.resume), **(metrics.get("resumed_from") or {})} if opts.resume else None,
        "feature_cache": metrics.get("feature_cache"),
        "probe_error": inside.get("error"),
    }
    validate(doc)
    (staging / "provenance.json").write_text(json.dumps(doc, indent=1, default=str))
    return status
