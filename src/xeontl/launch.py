"""`invoke reproduce`: topology -> plan -> run dir -> run (docker or native) -> provenance + report.

The thin shell around plan.py: every decision is made there; here we only allocate the run dir, run the commands,
forward Ctrl-C, and record what happened.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from xeontl import checkpoint, config, cpulock, dockercli, events, outcome, topology
from xeontl import plan as planlib
from xeontl.errors import UserError

DEFAULT_IMAGE = "xeontl:latest"


def _option(default=dataclasses.MISSING, *, resume: str, factory=dataclasses.MISSING):
    """A launch option and what `--resume` does with it, declared with the option so none can be forgotten:
    "keep" (recorded in launch.json, and the continuation keeps it: the same sockets, pinning, engine), "anew"
    (recorded, and may be given anew: the profile comes from config.json, --native or another image are allowed),
    "no" (not a property of the launch: the config's overrides live in config.json, the rest are per invocation)."""
    assert resume in ("keep", "anew", "no"), resume
    return dataclasses.field(default=default, default_factory=factory, metadata={"resume": resume})


@dataclasses.dataclass
class Options:
    sockets: int = _option(2, resume="keep")
    profile: str = _option("demo", resume="anew")
    overrides: dict = _option(resume="no", factory=dict)
    native: bool = _option(False, resume="anew")
    dry_run: bool = _option(False, resume="no")
    topology_file: str | None = _option(None, resume="no")
    # True, False or "auto" (only when the host has too few sockets)
    emulate_sockets: bool | str = _option(False, resume="keep")
    cores_per_socket: int = _option(0, resume="keep")
    controller: str = _option("mpi", resume="keep")
    hosts: str = _option("", resume="keep")
    image: str = _option(DEFAULT_IMAGE, resume="anew")
    results_dir: Path = _option(Path("results"), resume="no")
    report: bool = _option(True, resume="no")
    resume: Path | None = _option(None, resume="no")  # a run dir to continue from its last epoch checkpoint
    wait: bool = _option(False, resume="no")  # queue behind a run holding the same CPUs instead of refusing
    extra_env: dict = _option(resume="keep", factory=dict)  # added to every worker's env (bench variants)
    fault_after_epoch: int = _option(0, resume="no")  # tests: a rank SIGKILLs itself after this epoch
    engine: str = _option("local", resume="keep")  # local (docker or --native on this host) | slurm (sbatch)
    nodes: int = _option(1, resume="keep")  # slurm: nodes, each running the plan's one-rank-per-socket layout
    partition: str | None = _option(None, resume="keep")  # slurm
    # slurm: charliecloud (default: the image, unprivileged) | none (the nodes' own stack)
    container: str | None = _option(None, resume="keep")
    time_limit: str | None = _option(None, resume="keep")  # slurm: --time

    @property
    def slurm_container(self) -> str:
        return self.container or "charliecloud"

    @property
    def docker(self) -> bool:
        """This host's Docker runs the job (not --native, not a scheduler)."""
        return self.engine == "local" and not self.native

    def record(self) -> dict:
        """What launch.json keeps, so `--resume` can rebuild the same launch."""
        return {**{k: getattr(self, k) for k in LAUNCH_KEYS}, "resume": str(self.resume) if self.resume else None}


# What launch.json records of a launch, so `--resume` rebuilds the same one (its config comes from config.json), and
# of those what a resumed run keeps from the interrupted one: both from the options' own declarations.
LAUNCH_KEYS = tuple(f.name for f in dataclasses.fields(Options) if f.metadata["resume"] != "no")
RESUME_KEYS = tuple(f.name for f in dataclasses.fields(Options) if f.metadata["resume"] == "keep")


@dataclasses.dataclass
class Prepared:
    opts: Options
    cfg: dict
    topo: topology.Topology
    plan: planlib.Plan
    run_id: str
    command: list[str]  # what actually runs on the host (docker run ... or the native launch line)
    inner: list[str]  # the launch line itself (inside the container for docker)
    ranks: list[list[str]]  # each local rank's own command (what the launch line's per-rank wrapper execs)
    script: str | None = None  # slurm: the sbatch script (plan.slurm_script)


IMAGE_UID = 1000  # the image's non-root user


def container_user() -> str:
    """The invoking user, so results are theirs; root invokers still get the image's non-root user."""
    return f"{IMAGE_UID}:{IMAGE_UID}" if os.getuid() == 0 else f"{os.getuid()}:{os.getgid()}"


def _chown_tree(path: Path, uid: int, gid: int) -> None:
    for p in [path, *path.rglob("*")]:
        os.lchown(p, uid, gid)


def new_run_id(cfg: dict, sockets: int) -> str:
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{cfg['profile']}-{sockets}s-{secrets.token_hex(2)}"


def resume_options(opts: Options) -> tuple[Options, dict]:
    """`--resume RUN`: the interrupted run's own config.json (used as is) and launch (sockets, pinning, controller),
    checked first."""
    run = opts.resume.resolve()
    if opts.overrides:
        raise UserError(f"--resume continues a run with its own config: drop --set/--dataset/--weights "
                        f"({', '.join(sorted(opts.overrides))}), or start a new run with them")
    if not (run / "config.json").is_file():
        raise UserError(f"--resume {opts.resume}: not a run dir (no config.json): give results/<run-id>")
    metrics = json.loads((run / "metrics.json").read_text()) if (run / "metrics.json").is_file() else {}
    if metrics.get("status") == "success":
        raise UserError(f"--resume {opts.resume}: that run finished successfully; nothing to resume")
    ck = checkpoint.latest(run)
    if ck is None:
        raise UserError(f"--resume {opts.resume}: no completed-epoch checkpoint in {run / checkpoint.DIR}: "
                        f"nothing to resume, start a new run")
    cfg = config.load(run / "config.json")
    launch = json.loads((run / "launch.json").read_text())
    keep = {k: launch[k] for k in RESUME_KEYS if k in launch}
    if keep.get("engine", "local") == "local":  # launch.json before 2026-11-30 recorded Slurm's container default too
        keep.pop("container", None)
    print(f"xeontl: resuming {run.name} after epoch {ck.name.split('-')[1].lstrip('0')} with its own config and launch")
    return dataclasses.replace(opts, profile=cfg["profile"], resume=run, **keep), cfg


def check_engine_options(opts: Options) -> None:
    """Options the chosen engine cannot honour are refused in one line, before anything is written (they were
    silently ignored)."""
    if opts.engine not in ("local", "slurm"):
        raise UserError(f"--engine {opts.engine}: must be local or slurm (Kubernetes: invoke render --engine k8s)")
    if opts.engine == "local":
        given = [flag for flag, value in (("--nodes", opts.nodes != 1), ("--partition", opts.partition),
                                          ("--time-limit", opts.time_limit), ("--container", opts.container)) if value]
        if given:
            raise UserError(f"{', '.join(given)}: only with --engine slurm (the local engine runs on this host, in the "
                            f"image or --native; several hosts of your own: --hosts HOST:SLOTS,...)")
        return
    if opts.slurm_container not in ("charliecloud", "none"):
        raise UserError(f"--container {opts.container}: must be charliecloud (the image) or none (the nodes' stack)")
    given = [flag for flag, value in (("--native", opts.native), ("--hosts", opts.hosts)) if value]
    if given:
        raise UserError(f"{', '.join(given)}: not with --engine slurm (the nodes' own stack: --container none; "
                        f"more nodes: --nodes N)")


def prepare(opts: Options) -> Prepared:
    """Everything decided, nothing run: the config (resolved here, once), the plan and the exact command lines
    (what --dry-run prints). The ranks read the config this writes to the run dir; they never resolve it again."""
    from xeontl import assets

    if opts.resume:
        opts, cfg = resume_options(opts)
    else:  # host paths made absolute, so every rank, in a container or on another node, reads the same files
        cfg = assets.absolute(config.resolve(opts.profile, opts.overrides), cache_synthetic=opts.engine != "slurm")
    read_only = assets.host_paths(cfg)
    check_engine_options(opts)
    slurm = opts.engine == "slurm"
    here = topology.live()
    if opts.topology_file:
        topo = topology.load_file(opts.topology_file)
    elif slurm:  # the compute nodes, not this (login) host
        from xeontl import slurm as slurmlib

        topo = slurmlib.node_topology(opts.partition)
    else:
        topo = here
    # Slurm: the plan describes a compute node (--topology, or Slurm's description of it) by positions in its cpuset.
    plan = planlib.make_plan(topo, opts.sockets, opts.emulate_sockets, opts.cores_per_socket, opts.controller,
                             opts.hosts, node_count=opts.nodes if slurm else 1, relative=slurm)
    if not slurm and (not opts.topology_file or not opts.dry_run):
        planlib.check_fits(plan, here)  # a recorded topology may only be *run* if it fits here
    run_id = new_run_id(cfg, opts.sockets)
    staging = opts.results_dir.resolve() / f".staging-{run_id}"
    in_image = (not opts.native) if not slurm else opts.slurm_container == "charliecloud"
    out = planlib.CONTAINER_RESULTS if in_image else str(staging)
    resume_arg = (planlib.CONTAINER_RESUME if in_image else str(opts.resume)) if opts.resume else None

    def rank_args(w: planlib.Worker) -> list[str]:
        return planlib.train_args(w, f"{out}/config.json", out, resume_arg, opts.fault_after_epoch)

    inner = planlib.launch_command(plan, rank_args)
    ranks = [planlib.worker_command(w, rank_args(w)) for w in plan.workers]
    if slurm:
        from xeontl import slurm as slurmlib

        job = planlib.SlurmJob(str(staging), f"xeontl-{run_id}", opts.partition, opts.time_limit, opts.slurm_container,
                               str(slurmlib.image_dir_for(opts.image)) if in_image else None,
                               str(opts.resume) if opts.resume and in_image else None,
                               tuple(read_only) if in_image else ())
        script = planlib.slurm_script(plan, job, rank_args, opts.extra_env)
        return Prepared(opts, cfg, topo, plan, run_id, ["sbatch", "--parsable", str(staging / "job.sbatch")],
                        inner, ranks, script)
    if opts.native:
        command = inner
    else:
        command = planlib.docker_command(plan, opts.image, inner, str(staging), container_user(),
                                         name=f"xeontl-{run_id}", resume_host_dir=opts.resume and str(opts.resume),
                                         extra_env=opts.extra_env, read_only=read_only)
    return Prepared(opts, cfg, topo, plan, run_id, command, inner, ranks)


def render(p: Prepared) -> str:
    """The human-readable launch record: plan, env, exact command lines (saved as command.txt)."""
    if p.script:
        return "\n".join([p.plan.describe(), "", "# the sbatch script (job.sbatch in the run dir), submitted with:",
                          "# " + shlex.join(p.command), p.script])
    where = "inside the container" if not p.opts.native else "native"
    per_host = " on every host" if p.plan.hosts else ""
    return "\n".join([
        p.plan.describe(),
        "",
        "# environment of every worker (each rank's own OMP_NUM_THREADS is in its command below)",
        planlib.render_env({**p.plan.env, **p.opts.extra_env}),
        "",
        *[line for w, cmd in zip(p.plan.workers, p.ranks)
          for line in (f"# rank {w.rank}{per_host} ({where})", shlex.join(cmd))],
        "",
        f"# launch ({where})",
        shlex.join(p.inner),
        *([] if p.opts.native else ["", "# on the host", shlex.join(p.command)]),
        "",
    ])


# ------------------------------------------------------------------------------------------------ preflight checks
def check_image(image: str) -> dict:
    """Docker up, the image built, and built from this checkout when run from one. Returns its inspect data."""
    from xeontl import image as imagelib

    return dockercli.require_image(image, imagelib.checkout_inputs_hash())


def check_results_dir(results: Path, need_bytes: int = 200 << 20) -> None:
    try:
        results.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise UserError(f"cannot create results dir {results} ({e.strerror}): choose another --results-dir") from None
    if not os.access(results, os.W_OK):
        raise UserError(f"results dir {results} is not writable: choose another --results-dir")
    free = shutil.disk_usage(results).free
    if free < need_bytes:
        raise UserError(f"only {free >> 20} MiB free under {results}: a run needs ~{need_bytes >> 20} MiB, free some "
                        f"space")


def native_env(*extra: dict) -> dict:
    """The environment of a --native command: this launcher's own Python environment (.venv/bin: python, horovodrun)
    first on PATH, so the ranks run the same stack the launcher was installed in, activated or not."""
    bindir = str(Path(sys.executable).parent)
    env = {**os.environ}
    for e in extra:
        env.update(e)
    env["PATH"] = os.pathsep.join([bindir, *[p for p in env.get("PATH", "").split(os.pathsep) if p != bindir]])
    return env


def check_native() -> None:
    missing = [t for t in ("numactl",) if shutil.which(t) is None]
    try:
        import horovod  # noqa: F401
    except ImportError:
        missing.append("horovod (python package)")
    if missing:
        raise UserError(f"--native needs {', '.join(missing)}: run `invoke setup --native`, or drop --native to use "
                        f"the image")


# ------------------------------------------------------------------------------------------------ running
def _run(command: list[str], log_path: Path, env: dict, container: str | None) -> tuple[int, str | None]:
    """Run, teeing output to a log; on Ctrl-C stop the ranks (or the container) and report 'aborted'."""
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env,
                                start_new_session=True)  # own process group: we stop all ranks together
        try:
            for line in proc.stdout:
                sys.stdout.buffer.write(line)
                sys.stdout.flush()
                log.write(line)
            return proc.wait(), None
        except KeyboardInterrupt:
            if container:
                dockercli.kill(container, "INT")
            try:
                os.killpg(proc.pid, signal.SIGINT)
                proc.wait(timeout=20)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                if container:
                    dockercli.kill(container)
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait()
            return outcome.ABORTED_EXIT, "aborted"


def settle_status(staging: Path, rc: int, status: str | None) -> tuple[str, dict | None, dict]:
    """The run's final status from the trainer's metrics and the launcher's exit code, written back so that
    metrics.json and the event log end with it even when a rank died before it could write. Returns
    (status, failure, metrics)."""
    metrics_path = staging / "metrics.json"
    metrics = json.loads(metrics_path.read_text()) if metrics_path.exists() else {}
    if status is None:
        status = outcome.status(rc, metrics.get("status"))
    failure = None
    if status != "success":
        log_file = staging / "logs-launcher.txt"
        log = log_file.read_text(errors="replace") if log_file.exists() else ""
        # horovodrun / mpirun name the rank that died and how, e.g. "Process 1 exit with status code 137".
        m = re.search(r"[Pp]rocess (\d+) exit with status code (\d+)", log) or re.search(
            r"rank (\d+) .*?exited on signal (\d+)", log)
        # srun: "srun: error: n2: task 1: Killed" or "... task 1: Exited with exit code 17"
        s = re.search(r"srun: error: \S+: task (\d+): (Killed|Exited with exit code (\d+))", log)
        failure = {"returncode": rc}
        if m:
            code = int(m[2])
            failure.update(rank=int(m[1]), exit_code=code, signal=code - 128 if code > 128 else
                           (code if "signal" in m[0] else None))
        elif s:
            failure.update(rank=int(s[1]), exit_code=int(s[3]) if s[3] else None,
                           signal=9 if s[2] == "Killed" else None)
    if not metrics:  # the trainer never wrote: still leave a status
        metrics = {"status": status, "failure": failure}
        metrics_path.write_text(json.dumps(metrics, indent=1))
    elif metrics.get("status") != status:
        metrics.update(status=status, failure=failure)
        metrics_path.write_text(json.dumps(metrics, indent=1, default=str))
    if events.last_status(staging / events.FILE) != status:
        events.EventLog(staging / events.FILE).end(status, source="launcher", failure=failure)
    return status, failure, metrics


def reproduce(opts: Options) -> int:
    p = prepare(opts)
    if opts.dry_run:
        print(render(p))
        return 0
    return execute(p)[0]


def execute(p: Prepared) -> tuple[int, Path]:
    """Run a prepared plan; returns the exit code and the run dir."""
    from xeontl import assets

    opts, text = p.opts, render(p)
    check_results_dir(opts.results_dir)
    if assets.needed(p.cfg):  # the paper profile's weights or data are missing: fetch and verify them first
        print(f"xeontl: making {', '.join(assets.needed(p.cfg))} (invoke assets; --from FILE on offline hosts)",
              flush=True)
        assets.fetch(p.cfg)
    image_info = container = None
    if opts.engine == "slurm":
        from xeontl import slurm

        slurm.require()
        if opts.slurm_container == "charliecloud":
            from xeontl import image as imagelib

            container = slurm.ensure_image_dir(opts.image, imagelib.checkout_inputs_hash())
        # The nodes are the scheduler's: no CPU lock on this (login) host.
        return _execute_locked(p, text, None, container)
    if opts.native:
        check_native()
    else:
        image_info = check_image(opts.image)
    # Hold the plan's CPUs for the whole run: a second run on the same cores is refused (or waits with --wait).
    local_cpus = [] if p.plan.hosts else p.plan.cpus
    with cpulock.hold(local_cpus, p.run_id, wait=opts.wait):
        return _execute_locked(p, text, image_info)


def _execute_locked(p: Prepared, text: str, image_info: dict | None, container: dict | None = None) -> tuple[int, Path]:
    opts = p.opts
    staging = opts.results_dir.resolve() / f".staging-{p.run_id}"
    final = opts.results_dir.resolve() / p.run_id
    staging.mkdir()  # fails if it exists: a run id is never reused
    (staging / "command.txt").write_text(text)
    config.save(p.cfg, staging / "config.json")  # the one resolution of the config: every rank reads this file
    (staging / "plan.json").write_text(json.dumps(p.plan.to_dict(), indent=1))
    (staging / "launch.json").write_text(json.dumps(opts.record(), indent=1))
    print(text)
    if opts.docker and os.getuid() == 0:
        _chown_tree(staging, IMAGE_UID, IMAGE_UID)  # the container's non-root user writes here
    started = datetime.now(timezone.utc).isoformat()
    t0 = time.time()
    engine = None
    if p.script:  # Slurm: submit, follow, collect
        from xeontl import slurm

        (staging / "job.sbatch").write_text(p.script)
        rc, status, engine = slurm.run(staging / "job.sbatch", staging, p.cfg["epochs"], container)
    else:
        env = native_env(p.plan.env, opts.extra_env) if opts.native else dict(os.environ)
        rc, status = _run(p.command, staging / "logs-launcher.txt", env, None if opts.native else f"xeontl-{p.run_id}")
    if opts.docker and os.getuid() == 0:
        _chown_tree(staging, 0, 0)  # hand the results back to the invoking user
    seconds = time.time() - t0
    from xeontl import provenance, report  # after the run: they read its outputs

    status, failure, metrics = settle_status(staging, rc, status)
    inside = provenance.read_probe(staging)  # rank 0 wrote it where it ran, on every engine
    labels = (image_info or {}).get("Config", {}).get("Labels") or {}
    execution = {"mode": "slurm" if engine else ("native" if opts.native else "docker"),
                 # Slurm: the job id, node list, Slurm's version and verdict, the container runtime, emulated nodes
                 "slurm": engine,
                 "image": {"ref": opts.image, "id": image_info.get("Id"), "digests": image_info.get("RepoDigests"),
                           "labels": labels} if image_info else None,
                 "capabilities_added": [] if opts.native or engine else ["SYS_NICE"]}
    provenance.write(staging, p.run_id, p.cfg, p.plan.to_dict(), status, failure, metrics, inside, started, seconds,
                     execution, str(opts.resume) if opts.resume else None)
    if opts.report:
        report.write(staging)  # alone: the ratio claims need a set of runs (invoke paper, invoke report --runs)
    os.replace(staging, final)  # atomic: results/<run-id> appears complete, or not at all
    print(f"xeontl: {status}: results in {final}")
    return outcome.exit_code(status), final


def paper(opts: Options, fp32: bool = False) -> tuple[int, Path]:
    """`invoke paper`: the paper's 1-socket run, then its 2-socket run (and an FP32 run with --fp32), then one claims
    table judging this host against the paper (claims.toml). On a host with fewer sockets (--emulate-sockets), the
    1-socket run uses one emulated socket's cores, so the speedup compares like with like."""
    from xeontl import claims, report

    topo = topology.load_file(opts.topology_file) if opts.topology_file else topology.live()
    two = planlib.make_plan(topo, 2, opts.emulate_sockets, opts.cores_per_socket)
    per_socket = two.workers[0].cores if two.emulated else opts.cores_per_socket
    runs = {"1 socket": dataclasses.replace(opts, sockets=1, emulate_sockets=False, cores_per_socket=per_socket),
            "2 sockets": dataclasses.replace(opts, sockets=2)}
    if fp32:
        runs["2 sockets, FP32"] = dataclasses.replace(opts, sockets=2,
                                                      overrides={**opts.overrides, "precision": "fp32"})
    dirs, rc = {}, 0
    for name, o in runs.items():
        print(f"xeontl paper: {name} run", flush=True)
        code, run_dir = execute(prepare(dataclasses.replace(o, report=False)))
        dirs[name] = run_dir
        rc = rc or code
        if code == outcome.ABORTED_EXIT:  # Ctrl-C: no further runs
            break
    loaded = {k: claims.load_run(d) for k, d in dirs.items()}
    rows = claims.judge(loaded.get("1 socket"), loaded.get("2 sockets"), loaded.get("2 sockets, FP32"))
    for d in dirs.values():
        report.write(d, [o for o in dirs.values() if o != d])
    stamp = datetime.now(timezone.utc).strftime("%Y%m%d-%H%M%S")
    out = opts.results_dir.resolve() / f"paper-{stamp}-{opts.profile}"
    tmp = out.with_name(f".staging-{out.name}")
    tmp.mkdir()
    emulated = " (2 EMULATED sockets: not the paper's hardware)" if two.emulated else ""
    text = "\n".join([f"# The paper's claims on this host{emulated}", "", claims.markdown(rows),
                      *[f"- {k}: `{d.name}` ({loaded[k]['metrics'].get('status')})" for k, d in dirs.items()], ""])
    (tmp / "claims.md").write_text(text)
    (tmp / "claims.json").write_text(json.dumps({"claims": rows, "runs": {k: str(d) for k, d in dirs.items()},
                                                 "emulated_sockets": two.emulated}, indent=1, default=str))
    os.replace(tmp, out)
    print(text)
    print(f"xeontl paper: claims in {out / 'claims.md'}")
    return rc, out


def render_k8s(opts: Options, results_claim: str, memory_per_rank_gib: int, output: Path | None,
               kube_version: str | None = None) -> Path:
    """`invoke render --engine k8s`: the plan for nodes like --topology as a checked MPIJob manifest (written, not
    applied: no cluster runs here)."""
    from xeontl import k8s

    cfg = config.resolve(opts.profile, opts.overrides)
    topo = topology.load_file(opts.topology_file) if opts.topology_file else topology.live()
    plan = planlib.make_plan(topo, opts.sockets, opts.emulate_sockets, opts.cores_per_socket, "mpi",
                             node_count=opts.nodes, relative=True)
    run_id = new_run_id(cfg, opts.sockets)
    docs = k8s.manifest(plan, cfg, run_id, opts.image, results_claim, memory_per_rank_gib)
    checked = k8s.check(docs, opts.sockets, kube_version)
    out = output or opts.results_dir / f"{run_id}.mpijob.yaml"
    check_results_dir(out.parent, need_bytes=1 << 20)
    if out.exists():
        raise UserError(f"{out} exists: choose another --output, nothing was overwritten")
    out.write_text(f"# xeontl {run_id}: {plan.describe().splitlines()[0]}\n# checked: " + "; ".join(checked) + "\n"
                   + k8s.to_yaml(docs))
    print(plan.describe())
    print("\n".join(f"checked: {c}" for c in checked))
    print(f"xeontl: wrote {out} (kubectl apply -f {out}; needs the Kubeflow MPI Operator and a PVC {results_claim})")
    return out


def make_keys(keys_dir: Path) -> Path:
    """`invoke keys`: the multi-node layouts' ssh key pair, made once and copied to every host (nothing is shared
    between hosts at run time). Readable by the image's user, who runs sshd and ssh in the node containers."""
    key = keys_dir / "id_ed25519"
    if key.exists():
        raise UserError(f"{key} exists: keep it (copy {keys_dir} to the other hosts), or remove it for a new pair")
    if shutil.which("ssh-keygen") is None:
        raise UserError("ssh-keygen is not installed: apt-get install openssh-client")
    keys_dir.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "xeontl-nodes", "-f", str(key)], check=True)
    if os.getuid() == 0:
        _chown_tree(keys_dir, IMAGE_UID, IMAGE_UID)  # the containers' user must read the private key
    return keys_dir


COMPOSE_ENV_HEADER = "# written by `invoke compose-env` from this host's plans; rewritten by it, not by hand\n"


def write_compose_env(out: Path, env: dict[str, str]) -> str:
    """Write compose's variables to `out`, replacing only a file this task wrote (a user's own .env is kept)."""
    if out.exists() and not out.read_text(errors="replace").startswith(COMPOSE_ENV_HEADER):
        raise UserError(f"{out} exists and was not written by invoke compose-env: move it, or give --output another "
                        f"path (then docker compose --env-file PATH); nothing was overwritten")
    text = "".join(f"{k}={v}\n" for k, v in env.items())
    tmp = out.with_name(f".{out.name}.tmp")
    tmp.write_text(COMPOSE_ENV_HEADER + text)
    os.replace(tmp, out)
    return text


def compose_env(results_dir: Path, image: str = DEFAULT_IMAGE, profile: str = "demo",
                keys_dir: Path = Path("keys")) -> dict[str, str]:
    """The values compose.yaml reads, from the same plans `invoke reproduce` makes for this host."""
    from xeontl.topology import cpulist

    topo = topology.live()
    one = planlib.make_plan(topo, 1)
    two = planlib.make_plan(topo, 2, emulate="auto")
    uid = IMAGE_UID if os.getuid() == 0 else os.getuid()
    gid = IMAGE_UID if os.getuid() == 0 else os.getgid()
    return {"XEONTL_IMAGE": image, "XEONTL_PROFILE": profile, "XEONTL_RESULTS": str(results_dir.resolve()),
            "XEONTL_UID": str(uid), "XEONTL_GID": str(gid),
            "XEONTL_CPUSET_1S": cpulist(one.cpus), "XEONTL_CPUSET_2S": cpulist(two.cpus),
            # two "hosts" on one machine: each container gets one socket (or emulated socket) of the 2-socket plan
            "XEONTL_CPUSET_NODE1": cpulist(two.workers[0].cpus), "XEONTL_CPUSET_NODE2": cpulist(two.workers[1].cpus),
            # the key dir of `invoke keys`; each node mounts its own copy (on one machine, the same one)
            "XEONTL_KEYS": str(keys_dir.resolve()), "XEONTL_KEYS_NODE1": str(keys_dir.resolve()),
            "XEONTL_KEYS_NODE2": str(keys_dir.resolve())}
