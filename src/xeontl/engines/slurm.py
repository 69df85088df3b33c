"""The Slurm engine: the plan as an sbatch script (one task per socket on every node, each exec'ing its own socket's
command, in the image via unprivileged Charliecloud or on the nodes' own stack), the image unpacked for ch-run, the
job submitted, followed (queued, running, epoch k/N from rank 0's log), cancelled on Ctrl-C, and its verdict and
record collected into the same run dir. Nothing here decides a CPU, a thread count or an env value: plan.py does."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shlex
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

from xeontl.common import heartbeat
from xeontl.common.errors import UserError, one_line
from xeontl.engines.base import Engine, Job
from xeontl.launch import outcome
from xeontl.placement import plan as planlib
from xeontl.placement import topology
from xeontl.placement.plan import CONTAINER_RESULTS, CONTAINER_RESUME, Plan, rank_wrapper, render_env
from xeontl.supply import dockerapi
from xeontl.supply.needs import Need, grep_check, lacks_line, run_needs
from xeontl.supply.stacks import STACKS, build_command

POLL_SECONDS = 2.0
MOUNT_POINTS = ("results", "resume")  # where the run dir and an interrupted run are bound in the image
# Slurm job states -> the run's status (anything else that is final is a failure).
ACTIVE = {"PENDING", "CONFIGURING", "RUNNING", "COMPLETING", "SUSPENDED", "REQUEUED", "RESIZING", "SIGNALING",
          "STAGE_OUT", "STOPPED", "REQUEUE_FED"}
# States in which the job waits for someone to release it (job_state_string's hold flags): like NEVER below.
HELD = {"REQUEUE_HOLD", "SPECIAL_EXIT", "RESV_DEL_HOLD"}
UNKNOWN_POLLS = 30  # consecutive polls scontrol does not know the job (a busy controller's timeout, or forgotten)


def require(tool: str = "sbatch") -> None:
    if shutil.which(tool) is None:
        raise UserError(f"{tool} is not on PATH: run on the cluster's login node (Slurm's client tools), or install "
                        f"slurm-client")


def node_topology(partition: str | None) -> topology.Topology:
    """The compute nodes as Slurm describes them (sockets x cores x threads of the partition's first node), when no
    --topology file describes them: the login node this runs on is often another machine. Slurm does not say how the
    kernel numbers the CPUs nor how many NUMA nodes a socket has, so the usual x86 numbering is assumed (first threads
    of all cores socket by socket, then their siblings) with one memory node per socket, and the plan says so."""
    require("sinfo")
    out = subprocess.run(["sinfo", "-h", "-N", "-o", "%N %X %Y %Z", *(["-p", partition] if partition else [])],
                         capture_output=True, text=True, timeout=60)
    rows = [line.split() for line in out.stdout.splitlines() if len(line.split()) == 4]
    if out.returncode != 0 or not rows:
        where = f"partition {partition}" if partition else "the default partition"
        raise UserError(f"sinfo lists no node in {where}: check --partition, or give --topology FILE (lscpu "
                        f"--parse=CPU,CORE,SOCKET,NODE of a compute node)")
    name, sockets, cores, threads = rows[0][0], *map(int, rows[0][1:])
    per_thread = sockets * cores
    text = "\n".join(f"{cpu},{cpu % per_thread},{(cpu % per_thread) // cores},{(cpu % per_thread) // cores}"
                     for cpu in range(per_thread * threads))
    topo = topology.parse_lscpu(text, f"slurm: node {name}, {sockets} sockets x {cores} cores x {threads} threads")
    notes = ["compute node described by Slurm: CPU numbering assumed (cores socket by socket, then their siblings), "
             "one NUMA node per socket; give --topology (lscpu --parse=CPU,CORE,SOCKET,NODE of a node) if not so"]
    if len({tuple(r[1:]) for r in rows}) > 1:
        notes.append(f"the partition's nodes differ in shape ({sorted({' x '.join(r[1:]) for r in rows})}): planned "
                     f"for {name}'s")
    return dataclasses.replace(topo, warnings=tuple(notes))


def cache_dir() -> Path:
    return Path(os.environ.get("XEONTL_CACHE_DIR") or Path.home() / ".cache" / "xeontl") / "charliecloud"


def image_dir_for(image: str) -> Path:
    """Where the Charliecloud copy of IMAGE lives: IMAGE itself when it is a directory (an unpacked image, e.g. made
    with ch-convert on a machine with Docker), else a cache dir named after the Docker ref."""
    if Path(image).is_dir():
        return Path(image).resolve()
    return cache_dir() / re.sub(r"[^A-Za-z0-9_.-]", "_", image)


# How the image's export is unpacked. As root GNU tar keeps by default the archive's owners (--same-owner) and its
# modes whole, setuid and setgid bits included (--same-permissions): an image's setuid file would be a setuid file on
# the login node, owned by whoever the image says. So: every file the unpacking user's (--no-same-owner), modes under
# a fixed umask with the set-id and sticky bits dropped (--no-same-permissions: GNU tar 1.34 clears them even under a
# zero umask), and no xattrs (file capabilities), ACLs or SELinux labels, whatever TAR_OPTIONS says (dropped too).
UNPACK_UMASK = 0o022
# The image's /dev entries (debootstrap's null, zero, tty, ...: ch-run binds the host's /dev over the directory) are
# left out: as a user tar cannot make them (Operation not permitted: a user's unpack of this image used to fail) and
# as root it would make them on the login node.
UNPACK_OPTIONS = ("--no-same-owner", "--no-same-permissions", "--no-xattrs", "--no-acls", "--no-selinux",
                  "--anchored", "--exclude=dev/*", "--exclude=./dev/*")


# Elsewhere, as root, tar would make an image's device nodes (a `c 1 1` or a raw disk's `b 8 0`, root's, 0644) on the
# login node: root unpacks without CAP_MKNOD (util-linux's setpriv drops it from the inheritable and bounding sets, so
# tar never holds it), and an image that holds a device node outside /dev is refused, as it is for a user. No setpriv
# as root: refused, never unpacked with the capability.
DROP_MKNOD = ("setpriv", "--inh-caps=-mknod", "--bounding-set=-mknod")


def unpack_command(dest: Path, euid: int | None = None) -> list[str]:
    tar = ["tar", "-x", *UNPACK_OPTIONS, "-C", str(dest)]
    if (os.geteuid() if euid is None else euid) != 0:
        return tar  # mknod needs CAP_MKNOD, which a user does not hold
    if not shutil.which(DROP_MKNOD[0]):
        raise UserError("unpacking the image as root needs setpriv (util-linux) to unpack without CAP_MKNOD: install "
                        "it, or unpack as a user, or give --image DIR with an unpacked image")
    return [*DROP_MKNOD, *tar]


def unpack(image: str, info: dict, dest: Path) -> None:
    """The image's filesystem as a directory ch-run starts (exported by the daemon, unpacked by tar), with
    /ch/environment, the image's ENV that `ch-run --set-env` reads: what ch-convert makes of a Docker image, in 11 s
    instead of its 80 s for the 1.5 GB image here (measured on this bundle's CI machine, through the CLI). Owners,
    set-id bits, xattrs and ACLs of the image's files are not kept (UNPACK_OPTIONS)."""
    env = {k: v for k, v in os.environ.items() if k != "TAR_OPTIONS"}
    with tempfile.TemporaryFile() as err:  # a file, not a pipe: tar's warnings can never block the stream
        tar = subprocess.Popen(unpack_command(dest), stdin=subprocess.PIPE, stderr=err, env=env, umask=UNPACK_UMASK)
        failed = None
        try:
            dockerapi.export_image(image, tar.stdin)
        except (UserError, BrokenPipeError) as e:  # the daemon's refusal, or tar gone (a full disk)
            failed = str(e)
        with contextlib.suppress(BrokenPipeError):
            tar.stdin.close()
        rc = tar.wait()
        err.seek(0)
        said = err.read().decode(errors="replace").strip().splitlines()
    nodes = [ln for ln in said if "Cannot mknod" in ln]
    if nodes:
        raise UserError(f"{image} holds device nodes ({one_line(nodes[0])}): refused, an image for ch-run needs "
                        f"none (the partial unpack is removed)")
    if rc != 0 or failed:
        raise UserError(f"unpacking {image} into {dest.parent} failed ({(said or [failed])[-1]}): free disk space "
                        f"there, or give --image DIR with an unpacked image")
    (dest / "ch").mkdir(exist_ok=True)
    (dest / "ch" / "environment").write_text("".join(f"{e}\n" for e in info["Config"].get("Env") or []))


def ensure_image_dir(image: str, inputs: str | None = None, build: str = "invoke build --offline") -> dict:
    """The image as a directory Charliecloud runs, unpacked from Docker when missing or out of date (`unpack`); with
    this checkout's inputs hash, a stale image is refused as for a docker run. Returns what provenance records."""
    target = image_dir_for(image)
    if Path(image).is_dir():
        if not (target / "bin").is_dir():
            raise UserError(f"{image} is not an unpacked image (no bin/): give a directory made by ch-convert")
        missing = [m for m in MOUNT_POINTS if not (target / m).is_dir()]
        if missing:
            raise UserError(f"{image} has no {', '.join('/' + m for m in missing)} to bind the run dir to: "
                            f"mkdir them in the image directory, or convert an image built by `invoke build`")
        return {"runtime": "charliecloud", "image_dir": str(target), "source": "directory"}
    info = dockerapi.require_image(image, inputs, build)  # a missing or stale image names its stack's build
    stamp = target / ".xeontl-image-id"
    if stamp.is_file() and stamp.read_text().strip() == info["Id"]:
        return {"runtime": "charliecloud", "image_dir": str(target), "image_id": info["Id"], "converted": False}
    tmp = target.with_name(target.name + ".converting")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    print(f"xeontl: unpacking {image} -> {target} for ch-run (once per image build)", flush=True)
    t0 = time.time()
    try:
        unpack(image, info, tmp)
    except UserError:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    for m in MOUNT_POINTS:  # ch-run binds onto existing directories only (images older than these dirs lack them)
        (tmp / m).mkdir(exist_ok=True)
    (tmp / ".xeontl-image-id").write_text(info["Id"] + "\n")
    shutil.rmtree(target, ignore_errors=True)
    os.replace(tmp, target)
    return {"runtime": "charliecloud", "image_dir": str(target), "image_id": info["Id"], "converted": True,
            "convert_seconds": round(time.time() - t0, 1)}


def submit(script: Path) -> str:
    r = subprocess.run(["sbatch", "--parsable", str(script)], capture_output=True, text=True, timeout=120)
    if r.returncode != 0:
        raise UserError(f"sbatch refused the job ({(r.stderr or r.stdout).strip().splitlines()[-1:]}): check the "
                        f"partition and node count (sinfo)")
    return r.stdout.strip().split(";")[0]


def job_info(job_id: str) -> dict:
    """`scontrol show job` as a dict (finished jobs stay visible for MinJobAge); {} once Slurm forgot the job."""
    r = subprocess.run(["scontrol", "show", "job", "-o", job_id], capture_output=True, text=True, timeout=60)
    if r.returncode != 0:
        return {}
    out: dict = {}
    for key, value in re.findall(r"(?<!\S)(\w+)=(\S*)", r.stdout):  # whole fields; a path's "/X=Y" is not one
        out.setdefault(key, value)
    return out


def _epoch_line(run_dir: Path, epochs: int) -> str:
    log = run_dir / "logs" / "rank-0.log"
    done = re.findall(r" epoch (\d+): ", log.read_text(errors="replace")) if log.is_file() else []
    return f"epoch {done[-1]}/{epochs}" if done else "starting"


# Pending reasons no wait resolves (Slurm's job_reason codes, squeue(1) "JOB REASON CODES"): the job is held, or
# asks for what the partition or the cluster cannot give; the run fails at once, naming the reason.
NEVER = ("JobHeldAdmin", "JobHeldUser", "PartitionDown", "PartitionInactive", "PartitionNodeLimit",
         "PartitionTimeLimit", "BadConstraints", "DependencyNeverSatisfied", "InvalidAccount", "InvalidQOS",
         "launch_failed_requeued_held")
# ... and a per-job limit of the QOS or the association ("the job requests a resource that violates a per-job limit")
NEVER_PATTERN = re.compile(r"(QOS|Assoc)Max\w*PerJob\w*")


def never_runs(state: str, reason: str) -> bool:
    base = reason.split(",")[0]
    return state in HELD or (state == "PENDING" and (base in NEVER or bool(NEVER_PATTERN.fullmatch(base))))


def _cancel(job_id: str, info: dict) -> dict:
    subprocess.run(["scancel", job_id], capture_output=True)
    for _ in range(60):  # the ranks are in Slurm's cgroup: scancel ends them; wait until it says so
        info = job_info(job_id) or info
        if info.get("JobState") not in ACTIVE:
            break
        time.sleep(1)
    return info


def _fail(job_id: str, info: dict, why: str, hint: str = "") -> tuple[outcome.Ended, dict]:
    """Cancel the job and end the run failed, one line saying why (provenance's slurm.stopped)."""
    info = _cancel(job_id, info)
    print(f"xeontl: slurm job {job_id}: {why}: cancelled{hint}", flush=True)
    return outcome.Ended(1, "failed"), {**info, "stopped": why}


def follow(job_id: str, run_dir: Path, epochs: int) -> tuple[outcome.Ended, dict]:
    """Wait for the job, one progress line per change (queued and why, running on NODES, epoch k/N); Ctrl-C cancels
    it. A job held or asking for what the cluster cannot give (NEVER) fails at once; a running job no rank advances
    (no heartbeat for XEONTL_STALL_SECONDS, none in XEONTL_FIRST_BEAT_SECONDS from its start: a peer that never
    answers leaves MPI polling forever) is cancelled and fails, naming it. Returns how it ended and what Slurm said."""
    stall, first = heartbeat.bounds()
    last, info, watch, unknown = None, {}, None, 0
    try:
        while True:
            now = job_info(job_id)
            unknown = 0 if now else unknown + 1
            if unknown >= UNKNOWN_POLLS:
                return _fail(job_id, info, f"scontrol did not know the job for {UNKNOWN_POLLS} polls in a row")
            info = now or info
            if not info:  # not known yet (or a controller's timeout): poll again
                time.sleep(POLL_SECONDS)
                continue
            state, reason = info.get("JobState", "UNKNOWN"), info.get("Reason", "None")
            if never_runs(state, reason):
                return _fail(job_id, info, f"{state.lower()} for a reason no wait resolves ({reason})")
            if state not in ACTIVE:
                break
            # the ranks' progress is watched while they run: a requeued, suspended or pending job starts over
            watch = (watch or heartbeat.Beats(run_dir, stall, first=first)) if state == "RUNNING" else None
            if watch and watch.stalled():
                return _fail(job_id, info, watch.why(), " (a rank that never answers its peers; logs/rank-N.log)")
            line = (f"queued ({reason})" if state == "PENDING" else
                    f"{state.lower()} on {info.get('NodeList')}: {_epoch_line(run_dir, epochs)}")
            if line != last:
                print(f"xeontl: slurm job {job_id}: {line}", flush=True)
                last = line
            time.sleep(POLL_SECONDS)
    except KeyboardInterrupt:
        return outcome.Ended(outcome.ABORTED_EXIT, "aborted"), _cancel(job_id, info)
    state = info.get("JobState", "UNKNOWN")
    code, _, sig = info.get("ExitCode", "1:0").partition(":")
    status = outcome.from_slurm(state)
    rc = (int(code) or 1) if status == "failed" else outcome.exit_code(status or "success")
    print(f"xeontl: slurm job {job_id}: {state.lower()} (exit {info.get('ExitCode')})", flush=True)
    return outcome.Ended(rc, status), info


def version() -> str | None:
    r = subprocess.run(["sinfo", "--version"], capture_output=True, text=True)
    return r.stdout.strip() or None


def record(job_id: str, info: dict, run_dir: Path, container: dict | None) -> dict:
    """What provenance records of the job: id, nodes, Slurm's version and verdict, the container runtime, and whether
    the nodes were emulated (several on one machine)."""
    emulated = run_dir / "emulated-nodes.txt"
    return {"job_id": job_id, "node_list": info.get("NodeList"), "num_nodes": info.get("NumNodes"),
            "state": info.get("JobState"), "exit_code": info.get("ExitCode"), "partition": info.get("Partition"),
            "slurm_version": version(), "container": container or {"runtime": "none"},
            "emulated_nodes": emulated.read_text().strip() if emulated.is_file() else None,
            "script": "job.sbatch", "stopped": info.get("stopped")}


@dataclasses.dataclass(frozen=True)
class SlurmJob:
    """What the Slurm engine adds to a plan: where the job runs and in what."""

    run_dir: str  # the run dir, on a filesystem every node sees
    job_name: str
    partition: str | None = None
    time_limit: str | None = None
    container: str = "charliecloud"  # charliecloud | none
    image_dir: str | None = None  # the Charliecloud image directory (the xeontl image, unpacked)
    resume_dir: str | None = None  # --resume in the image: the interrupted run, bound read-only at /resume
    read_only: tuple[str, ...] = ()  # host paths the config reads (weights, data), bound at the same path
    stack: str = "default"  # the software stack: its CPU flags are checked on the node before anything runs
    precision: str = "auto"  # the config's: bf16 needs oneDNN's BF16 kernels on the node, checked there too


# PMIx's server directory (srun --mpi=pmix) lives under the node's SlurmdSpoolDir (/var/spool/slurmd by default).
# The rank's PMIx client finds its shared-memory store there by host paths passed in its environment, so the
# directory must appear in the image at the same path; ch-run can only bind onto a directory the read-only image
# has ("can't mkdir: ... Read-only file system" otherwise, the job failing in 7 s). So the deepest ancestor of it that
# the image has (e.g. /var/spool) is bound at its own path, which carries the directory with it. Only a directory
# with no ancestor but / in the image is refused, in one line.
PMIX_BIND = (
    'pmix=${PMIX_SERVER_TMPDIR:-}; img=$1; shift; '
    'if [ -n "$pmix" ]; then while [ "$pmix" != / ] && [ ! -d "$img$pmix" ]; do pmix=$(dirname "$pmix"); done; '
    'if [ "$pmix" = / ]; then echo "xeontl: error: PMIx directory $PMIX_SERVER_TMPDIR has no parent directory in '
    'the image to bind it under: set PMIxCliTmpDirBase/SlurmdSpoolDir under /var or /tmp" >&2; exit 1; fi; fi; ')


def slurm_enter(job: SlurmJob) -> list[str]:
    """The per-task prefix that enters the image: unprivileged Charliecloud, so the task stays in Slurm's cgroup (and
    scancel reaches it). The run dir is bound at /results, the node's PMIx directory at its own path (PMIX_BIND)."""
    if job.container == "none":
        return []
    resume = f"-b {shlex.quote(job.resume_dir)}:{CONTAINER_RESUME} " if job.resume_dir else ""
    resume += "".join(f"-b {shlex.quote(path)} " for path in job.read_only)  # the weights and data, same paths
    script = (PMIX_BIND + f'exec env USER="$(id -un)" ch-run --set-env -b {shlex.quote(job.run_dir)}:'
              f'{CONTAINER_RESULTS} {resume}${{pmix:+-b "$pmix"}} "$img" -- "$@"')
    return ["sh", "-c", script, "xeontl-ch", job.image_dir or ""]


def node_has(need: Need) -> str:
    """The sbatch line that ends the job, one line and exit 2, when a node lacks what the run's ranks need of it."""
    return (f"srun --ntasks=$SLURM_JOB_NUM_NODES --ntasks-per-node=1 {grep_check(need)} "
            f"|| {{ echo {shlex.quote(lacks_line(need, 'a node of this job'))}; exit 2; }}")


# What a path written into an #SBATCH line may hold, deny by default: sbatch splits the line at white space, takes
# quotes and backslashes as its own syntax and a `#` as a comment, and Slurm expands %-patterns (and `\\`) in file
# names; a path with anything but these characters is refused before anything is written.
SBATCH_PATH_CHARS = "ASCII letters, digits and _ . / - + , = @ :"
SBATCH_CHAR = re.compile(r"[A-Za-z0-9_./+,=@:-]")
SBATCH_PATH = re.compile(rf"/{SBATCH_CHAR.pattern}*")


def sbatch_path(path: str, flag: str) -> str:
    """PATH (absolute) if it may be written into an #SBATCH line, else one line naming FLAG and the first character
    that may not."""
    if SBATCH_PATH.fullmatch(path):
        return path
    bad = next((c for c in path if not SBATCH_CHAR.fullmatch(c)), None)
    if bad is None:
        raise UserError(f"{flag} {path!r}: not an absolute path (Slurm takes it into an #SBATCH line)")
    what = f"{bad!r} (white space)" if bad.isspace() else repr(bad)
    raise UserError(f"{flag} {path!r}: Slurm takes it into an #SBATCH line, where the character {what} is not safe "
                    f"(only {SBATCH_PATH_CHARS} are): choose a path without it")


def slurm_script(plan: Plan, job: SlurmJob, rank_args, extra_env: dict | None = None) -> str:
    """The sbatch script of a plan: one task per socket on every node, each task exec'ing its own socket's command
    (picked by SLURM_LOCALID) with the plan's CPUs as positions in its node's cpuset (rank 0 writes the provenance
    probe itself). Every CPU, thread and env decision is the plan's; Slurm only places the tasks."""
    from xeontl.launch.options import SAFE

    for name, value in (("partition", job.partition), ("time_limit", job.time_limit)):
        assert value is None or re.fullmatch(SAFE[name][0], value), f"{name} {value!r} reached the script unchecked"
    assert re.fullmatch(r"[A-Za-z0-9_.-]+", job.job_name) and SBATCH_PATH.fullmatch(job.run_dir), \
        "unchecked script values"
    cpus_per_task = max(len(w.cpus) for w in plan.workers)
    enter = slurm_enter(job)
    srun = ["srun", *(["--mpi=pmix"] if plan.horovod else []), "--cpu-bind=none", "--kill-on-bad-exit=1",
            f"--ntasks-per-node={len(plan.workers)}"]
    run = shlex.quote(job.run_dir)
    return "\n".join([
        "#!/bin/bash",
        f"# xeontl: {plan.describe().splitlines()[0]}; rendered by xeontl.placement.plan (plan.json holds every "
        f"decision)",
        f"#SBATCH --job-name={job.job_name}",
        f"#SBATCH --nodes={plan.node_count}",
        f"#SBATCH --ntasks-per-node={len(plan.workers)}",
        f"#SBATCH --cpus-per-task={cpus_per_task}",
        "#SBATCH --exclusive",
        f"#SBATCH --output={job.run_dir}/logs-launcher.txt",
        *([f"#SBATCH --partition={job.partition}"] if job.partition else []),
        *([f"#SBATCH --time={job.time_limit}"] if job.time_limit else []),
        "# --exclusive: the plan pins whole sockets by position in each node's cpuset, so the job takes whole nodes.",
        "set -uo pipefail",
        f"mkdir -p {run}/logs",
        render_env({**plan.env, **(extra_env or {})}),
        "# Each rank touches heartbeat/rank-N as its batches complete: the launcher ends a job no rank advances.",
        "export XEONTL_HEARTBEAT=1",
        "# Slurm 22.05's srun does not inherit --cpus-per-task from sbatch.",
        f"export SRUN_CPUS_PER_TASK={cpus_per_task}",
        "# Nodes sharing one hostname (emulated nodes on one machine): OpenMPI's shared-memory transport would try to",
        "# cross them, so TCP between every pair; the run dir records it for provenance.",
        "# (a probe that fails is no evidence: real nodes are assumed, and the job goes on as on any cluster)",
        'if names=$(srun --ntasks=$SLURM_JOB_NUM_NODES --ntasks-per-node=1 hostname) && [ -n "$names" ] && '
        '[ "$(printf \'%s\\n\' "$names" | sort -u | wc -l)" -lt "$SLURM_JOB_NUM_NODES" ]; then',
        "  export OMPI_MCA_btl=self,tcp",
        "  unset OMPI_MCA_btl_tcp_if_exclude  # Open MPI refuses include and exclude together",
        "  # ... over loopback: TCP's default excludes lo and tries every other address, a container bridge's too (a",
        "  # DOWN docker0 left the two ranks polling for each other's first message forever)",
        "  export OMPI_MCA_btl_tcp_if_include=lo",
        f'  echo "$SLURM_JOB_NUM_NODES nodes share one hostname: OMPI_MCA_btl=self,tcp over lo" > '
        f'{run}/emulated-nodes.txt',
        "fi",
        'echo "xeontl: job $SLURM_JOB_ID on $SLURM_JOB_NODELIST"',
        # what the ranks need of the CPU (stack, precision), on every node, not this host: one line, exit 2
        *[node_has(n) for n in run_needs(STACKS[job.stack], job.precision)],
        shlex.join([*srun, *enter, *rank_wrapper(plan, rank_args)]),
        "",
    ])


class SlurmEngine(Engine):
    """sbatch on the cluster this is the login node of: the plan describes a compute node (--topology, or Slurm's
    own description of it) by positions in its cpuset; the nodes are the scheduler's, so nothing is held here."""

    mode = "slurm"
    sees_host_cache = False

    def __init__(self, opts):
        super().__init__(opts)
        self.container = opts.container or "charliecloud"
        self.in_image = self.container == "charliecloud"
        self.image_record: dict | None = None
        self.record: dict | None = None

    def check(self) -> None:
        if self.container not in ("charliecloud", "none"):
            raise UserError(f"--container {self.container}: must be charliecloud (the image) or none (the nodes' "
                            f"stack)")
        given = [flag for flag, value in (("--native", self.opts.native), ("--hosts", self.opts.hosts)) if value]
        if given:
            raise UserError(f"{', '.join(given)}: not with --engine slurm (the nodes' own stack: --container none; "
                            f"more nodes: --nodes N)")
        heartbeat.bounds()  # the follower's bounds, before anything is submitted
        sbatch_path(str(self.opts.results_dir.resolve()), "--results-dir")  # the run dir lands in #SBATCH --output

    def topology(self) -> topology.Topology:
        if self.opts.topology_file:
            return topology.load_file(self.opts.topology_file)
        return node_topology(self.opts.partition)  # the compute nodes, not this (login) host

    def layout(self) -> dict:
        return {"node_count": self.opts.nodes, "relative": True}

    def commands(self, job: Job) -> None:
        rank_args = self.rank_args(job)
        spec = SlurmJob(str(job.staging), f"xeontl-{job.run_id}", self.opts.partition, self.opts.time_limit,
                        self.container, str(image_dir_for(self.opts.image)) if self.in_image else None,
                        str(self.opts.resume) if self.opts.resume and self.in_image else None,
                        job.read_only if self.in_image else (), self.opts.stack, job.cfg["precision"])
        job.files["job.sbatch"] = slurm_script(job.plan, spec, rank_args, self.opts.extra_env)
        job.command = ["sbatch", "--parsable", str(job.staging / "job.sbatch")]
        job.ranks = [planlib.worker_command(w, rank_args(w)) for w in job.plan.workers]
        job.inner = job.ranks[0]

    def describe(self, job: Job) -> str:
        return "\n".join([job.plan.describe(), "", "# the sbatch script (job.sbatch in the run dir), submitted with:",
                          "# " + shlex.join(job.command), job.files["job.sbatch"]])

    def preflight(self, job: Job) -> None:
        require()
        if self.in_image:
            from xeontl.supply import image as imagelib

            stack = STACKS[self.opts.stack]
            self.image_record = ensure_image_dir(self.opts.image, imagelib.checkout_inputs_hash(stack),
                                                 build_command(stack))

    def run(self, job: Job, staging: Path) -> outcome.Ended:
        """Submit, follow, collect."""
        script = staging / "job.sbatch"
        job_id = submit(script)
        print(f"xeontl: submitted slurm job {job_id} ({script})", flush=True)
        ended, info = follow(job_id, staging, job.cfg["epochs"])
        self.record = record(job_id, info, staging, self.image_record)
        return ended

    def execution(self) -> dict:
        # Slurm: the job id, node list, Slurm's version and verdict, the container runtime, emulated nodes
        return {"mode": self.mode, "slurm": self.record, "image": None, "capabilities_added": []}
