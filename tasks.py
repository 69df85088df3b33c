"""invoke tasks: parse arguments, call the package. `invoke --list` shows them; `invoke --help TASK` explains each."""

from __future__ import annotations

import errno
import os
import shlex
import sys
from pathlib import Path

from invoke import Exit, task

sys.path.insert(0, str(Path(__file__).parent / "src"))  # tasks work before `pip install -e .` too

from xeontl.common import sanitize  # noqa: E402
from xeontl.common.errors import UserError, one_line  # noqa: E402
from xeontl.launch import options  # noqa: E402  (the launch options, declared once)
from xeontl.launch.options import DEFAULT_IMAGE  # noqa: E402  (the one default image name)

# A disk that fills (or a quota, a read-only mount) under a task: the surroundings, not a bug: one line, exit 1.
DISK_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


def _guard(fn, *args, **kwargs):
    """User mistakes: one line, exit 2. A full disk: one line, exit 1. Ctrl-C: exit 130."""
    sanitize.safe_streams()  # foreign letters on an ASCII terminal: escaped, never a UnicodeEncodeError
    try:
        return fn(*args, **kwargs)
    except UserError as e:
        raise Exit(f"xeontl: error: {one_line(e)}", code=e.exit_code) from None
    except OSError as e:
        if e.errno not in DISK_ERRNOS:
            raise
        raise Exit(f"xeontl: error: {one_line(f'writing failed ({e.strerror}: {e.filename})')}: free space there "
                   f"and run again", code=1) from None
    except KeyboardInterrupt:
        from xeontl.launch import outcome

        raise Exit("xeontl: interrupted", code=outcome.ABORTED_EXIT) from None


def _overrides(pairs: list[str]) -> dict:
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep:
            raise UserError(f"--set {p!r}: expected KEY=VALUE, e.g. --set epochs=5")
        out[key.strip().replace("-", "_")] = value
    return out


CONFIG_HELP = {
    "dataset": "override the profile's dataset: tfds | synthetic | folder:PATH",
    "weights": "override the profile's weights: random | savedmodel:DIR | keras:FILE.h5",
    "set": "override any other config field, KEY=VALUE (repeatable), e.g. --set epochs=5",
    "feature_cache": "opt-in speed path, not the paper's protocol: backbone features computed once, head trained on "
                     "them (same as --set feature_cache=true)",
}


def _config_overrides(set=None, dataset=None, weights=None, feature_cache=False) -> dict:
    overrides = _overrides(set or [])
    overrides.update({k: v for k, v in (("dataset", dataset), ("weights", weights)) if v is not None})
    if feature_cache:
        overrides["feature_cache"] = "true"
    return overrides


def _split(values: dict, names) -> tuple[dict, dict]:
    """(the launch options' values, the task's own) from a derived task's keyword arguments."""
    return {k: v for k, v in values.items() if k not in names}, {k: values[k] for k in names if k in values}


def _reproduce(c, **values):
    """Run the paper's 1- or 2-socket experiment (pinning, threads, env): in the image, natively, or on Slurm."""
    from xeontl.launch import launch

    def go():
        given, own = _split(values, CONFIG_HELP)
        opts = options.from_cli(given, overrides=_config_overrides(**own))
        if opts.engine == "k8s":  # the MPIJob rendered as `invoke render` writes it, applied and watched (kubectl)
            from xeontl.engines import k8s_watch, kubernetes

            return k8s_watch.reproduce(opts, lambda o: kubernetes.render(
                o, o.results_claim, o.memory_per_rank, None, o.kube_version, o.assets_claim, o.reserved_cpus,
                o.node_selector, o.claim_mode, o.daemonset_cpus))
        return launch.reproduce(opts)

    rc = _guard(go)
    if rc:
        raise Exit(code=rc)


# The task's flags are derived from the launch options' declarations (xeontl.launch.options), as `python -m xeontl
# reproduce`'s are, then the config's own.
reproduce = task(options.invoke_task_body(_reproduce, extra={"dataset": None, "weights": None, "set": None,
                                                             "feature_cache": False},
                                          after={"dataset": "profile", "weights": "profile", "set": "profile",
                                                 "feature_cache": "wait"}),
                 name="reproduce", help={**options.invoke_parameters()[1], **CONFIG_HELP}, iterable=["set"],
                 optional=["emulate_sockets"])


@task(
    help={
        "engine": "k8s: a Kubeflow MPI Operator MPIJob (kubeflow.org/v2beta1); Slurm scripts come from "
                  "`invoke reproduce --engine slurm --dry-run`",
        "nodes": "nodes: each runs one worker pod (one rank) per socket (per NUMA node on SNC nodes)",
        "sockets": "sockets (worker pods, ranks) per node",
        "profile": "paper | demo | smoke",
        "set": "override any config field, KEY=VALUE (repeatable)",
        "topology": "the worker nodes' `lscpu --parse=CPU,CORE,SOCKET,NODE` (default: this machine)",
        "cores_per_socket": "whole cores per worker pod (default: the most every socket has free of the kubelet's "
                            "reserved CPUs); a count that does not fit is refused",
        "image": f"the image reference the pods run (default {DEFAULT_IMAGE}, or the stack's own)",
        "stack": "default | paper (the paper's intel-tensorflow-avx512 2.10.0: its worker pods go only to nodes "
                 "whose CPU has avx512f, by Node Feature Discovery's label, and check it at start)",
        "results_claim": "PersistentVolumeClaim (ReadWriteMany) mounted at /results on every pod (a Kubernetes "
                         "name: lowercase letters, digits, - and .)",
        "memory_per_rank": "GiB of memory per rank (requests = limits)",
        "output": "where to write the manifest (default results/<run-id>.mpijob.yaml)",
        "kube_version": "Kubernetes version whose schemas check the pod templates (default: kubernetes-validate's "
                        "newest)",
        "assets_claim": "PersistentVolumeClaim holding the weights and data (weights/, tensorflow_datasets/, manual/), "
                        "mounted read-only at /assets on every pod; the config's paths are put on it",
        "reserved_cpus": "the nodes' kubelet --reserved-cpus (default: the first core of socket 0 and its siblings): "
                         "each worker pod is sized to what every socket has left",
        "node_selector": "KEY=VALUE[,KEY=VALUE]: the nodes' labels the pods must have (the nodes whose kubelet runs "
                         "as render prints; with --nodes N and several sockets, exactly N of them)",
        "claim_mode": "the results claim's access mode: ReadWriteMany (default; needed on 2+ nodes) | ReadWriteOnce "
                      "(one node only: the launcher follows the workers)",
        "daemonset_cpus": "CPUs each node keeps free of the workers for its DaemonSets' requests (kube-proxy, CNI...), "
                          "e.g. 500m or 1 (default 500m); the workers shrink by whole cores to leave it, or a "
                          "--cores-per-socket that does not is refused",
    },
    iterable=["set"],
)
def render(c, engine="k8s", nodes="2", sockets="2", profile="paper", set=None, topology=None, cores_per_socket="0",
           image=DEFAULT_IMAGE, results_claim="xeontl-results", memory_per_rank="8", output=None, kube_version=None,
           assets_claim=None, reserved_cpus=None, node_selector=None, claim_mode="ReadWriteMany",
           daemonset_cpus="500m", stack="default"):
    """Write the plan as another engine's job (Kubernetes MPIJob), checked against its published schemas."""
    from xeontl.engines import kubernetes

    def go():
        if engine != "k8s":
            raise UserError(f"--engine {engine}: render writes k8s; for Slurm use invoke reproduce --engine slurm "
                            f"--dry-run")
        opts = options.check(options.Options(
            sockets=options.parse("sockets", sockets), profile=profile, overrides=_overrides(set or []),
            topology_file=topology, cores_per_socket=options.parse("cores_per_socket", cores_per_socket),
            image=image, nodes=options.parse("nodes", nodes), stack=options.parse("stack", stack),
            engine="k8s"))  # the pods run on the cluster's nodes, not on this CPU
        memory = options.whole("--memory-per-rank", memory_per_rank, 1, 4096)
        return kubernetes.render(opts, results_claim, memory, Path(output) if output else None, kube_version,
                                 assets_claim, reserved_cpus, node_selector, claim_mode, daemonset_cpus)

    _guard(go)


PAPER_OPTIONS = ("native", "emulate_sockets", "image", "results_dir", "repeats", "build", "stack")


def _paper(c, **values):
    """The paper's claims on this host: the 1-socket run, the 2-socket run, then one claims table."""
    from xeontl.launch import paper as paperlib

    def go():
        given, own = _split(values, ("profile", "set", "fp32"))
        opts = options.from_cli(given, profile=own.get("profile", "paper"), overrides=_overrides(own.get("set") or []))
        return paperlib.run(opts, own.get("fp32", False))

    rc, _ = _guard(go)
    if rc:
        raise Exit(code=rc)


paper = task(options.invoke_task_body(_paper, PAPER_OPTIONS, extra={"profile": "paper", "fp32": False, "set": None},
                                      after={"profile": None, "fp32": None, "set": "emulate_sockets"}),
             name="paper", iterable=["set"], optional=["emulate_sockets"],
             help={**options.invoke_parameters(PAPER_OPTIONS)[1],
                   "profile": "paper (default: needs the real data and weights) | demo (offline) | smoke",
                   "fp32": "also run both runs in FP32 (BF16 accuracy = FP32 accuracy; Intel's kit's FP32 rows)",
                   "set": "override any config field, KEY=VALUE (repeatable), for every run"})


@task(
    help={
        "profile": "the profile whose assets to fetch (default paper: ImageNet weights + the Kather archive)",
        "set": "override a config field, KEY=VALUE (repeatable): e.g. weights=savedmodel:DIR, data_dir=DIR",
        "weights_handle": "TF-Hub handle of the weights (default Intel's: google/imagenet/resnet_v1_50/"
                          "feature_vector/5)",
        "data_url": "where the Kather archive is fetched from (default the URL TFDS's builder registers)",
        "export": "pack the verified assets into FILE, for a host without internet",
        "from_": "unpack FILE (made by --export) instead of downloading; every sha256 is checked first",
        "manifest": "where the record of the assets goes (default assets/manifest.json)",
    },
    iterable=["set"],
)
def assets(c, profile="paper", set=None, weights_handle=None, data_url=None, export=None, from_=None, manifest=None):
    """Fetch and verify the paper's inputs (TF-Hub weights, the Kather archive), or bring them from a bundle."""
    from xeontl.experiment import config
    from xeontl.supply import assets as assetlib

    bundle = from_

    def go():
        cfg = config.resolve(profile, _overrides(set or []))
        where = Path(manifest) if manifest else None
        if bundle:
            got = assetlib.import_(cfg, Path(bundle), where)
        else:
            got = assetlib.fetch(cfg, weights_handle or assetlib.WEIGHTS_HANDLE, data_url or assetlib.DATA_URL,
                                 manifest=where)
        for kind, entry in got.items():
            print(f"xeontl assets: {kind}: {entry['path']} sha256 {entry['sha256']} ({entry['source']})"
                  + (f", {entry['architecture']}" if entry.get("architecture") else ""))
        if not got:
            print("xeontl assets: nothing to fetch: every asset the profile reads is present")
        if export:
            packed = assetlib.export(cfg, Path(export))
            print(f"xeontl assets: exported {', '.join(packed)} to {export}")

    _guard(go)


@task(help={"offline": "build without a registry or internet: debootstrap base + local wheelhouse (what CI uses)",
            "tag": f"image tag (default {DEFAULT_IMAGE})", "force": "rebuild even if the inputs are unchanged",
            "from_": "load the image from an `invoke archive` file instead of building: every member's sha256, the "
                     "images' ids (from their own configs) and the archive's commit are checked first; the saved "
                     "image's tags are stripped, xeontl tags the checked id; without --verify-with only --tag, "
                     "which must be xeontl:NAME (no tag a later build reuses)",
            "verify_with": "with --from: an ssh allowed_signers file (`PRINCIPAL KEY` lines); the archive's "
                           "SHA256SUMS must carry a signature (invoke archive --sign KEY) by one of its keys",
            "stack": "default (intel-tensorflow 2.14 on Debian 12, Python 3.11) | paper (the paper's "
                     "intel-tensorflow-avx512 2.10.0 on Debian 11, Python 3.9; tagged xeontl:paper unless --tag; "
                     "refused on a CPU without AVX-512, which cannot run it nor build it, and with --from: an "
                     "archive holds the default stack)",
            "if_runnable": "on a CPU that cannot run the stack (--stack paper without AVX-512): say so in one line "
                           "and exit 0 instead of refusing (CI on any CPU)"})
def build(c, offline=False, tag=None, force=False, from_=None, verify_with=None, stack="default", if_runnable=False):
    """Build the deps image (once per lock: Intel-TF, OpenMPI, the Horovod wheel) and the package on it, for the
    default stack or the paper's, or load it from an archive (--from)."""
    from xeontl.supply import image
    from xeontl.supply.stacks import STACKS, require_cpu

    if stack not in STACKS:
        raise Exit(f"xeontl: error: --stack {stack!r}: must be one of {', '.join(STACKS)}", code=2)
    if from_ and stack != "default":  # an archive holds the default stack's image alone (archive.py checks its hash)
        raise Exit(one_line(f"xeontl: error: --from {from_} --stack {stack}: an archive holds the default stack's "
                            f"image only ({STACKS['default'].versions['tensorflow']}), never the {stack} stack's; "
                            f"nothing was loaded (drop --stack {stack}, or build that stack here: invoke build "
                            f"--stack {stack})"), code=2)
    tag = tag or STACKS[stack].tag
    if not from_:  # building imports the stack's TensorFlow (Horovod's compile): a CPU it runs on, or one line
        try:
            require_cpu(STACKS[stack])
        except UserError as e:
            if not if_runnable:
                raise Exit(f"xeontl: error: {one_line(e)}", code=e.exit_code) from None
            print(f"xeontl build: skipped: {one_line(e)}")
            return

    if from_:
        from xeontl.supply import archive as archivelib

        _guard(archivelib.load, Path(from_), tag, Path(verify_with) if verify_with else None)
        return
    if verify_with:
        raise Exit("xeontl: error: --verify-with goes with --from FILE (the archive to check)", code=2)
    _guard(image.build, tag=tag, offline=offline, force=force, stack=STACKS[stack])


@task(help={"output": "the archive file (default xeontl-<version>-<commit>.tar here)",
            "with_assets": "also the paper's verified weights and data (invoke assets first)",
            "image": f"the image to pack (default {DEFAULT_IMAGE}; it must be built from this commit)",
            "sign": "an ssh private key: SHA256SUMS is signed with it (ssh-keygen -Y sign), the trust anchor "
                    "`invoke build --from FILE --verify-with ALLOWED_SIGNERS` checks"})
def archive(c, output=None, with_assets=False, image=DEFAULT_IMAGE, sign=None):
    """One file to carry: the image, the commit's source, (the assets), a manifest and SHA256SUMS (signed with
    --sign)."""
    from xeontl.supply import archive as archivelib

    _guard(archivelib.make, Path(output) if output else None, image, with_assets, sign=Path(sign) if sign else None)


@task(help={"image": f"image to test (default {DEFAULT_IMAGE})"})
def smoke(c, image=DEFAULT_IMAGE):
    """In the image: horovodrun -np 2 trains the smoke profile on two emulated sockets; checks both ranks ran."""
    from xeontl.measure import smoke as smokelib
    from xeontl.supply.stacks import by_image, require_image_cpu

    _guard(require_image_cpu, image, by_image)  # an image of a stack this CPU cannot run: one line, before it starts
    _guard(smokelib.run, image)


@task(help={"runs": "run dirs to report on (a 1-socket and a 2-socket run also give the speedup)"}, iterable=["runs"])
def report(c, runs=None):
    """(Re)write report.md and plots for run dirs."""
    from xeontl.records import report as rep

    def go():
        dirs = [Path(r) for r in runs or []]
        if not dirs:
            raise UserError("give at least one run dir: invoke report --runs results/<run-id>")
        for d in dirs:
            if not (d / "metrics.json").exists():
                raise UserError(f"{d} is not a run dir (no metrics.json)")
            if rep.is_committed_reference(d):
                raise UserError(f"{d} is a committed reference run: its report stays as committed (copy the dir "
                                f"elsewhere to report on it again); nothing was rewritten")
        for d in dirs:
            print(rep.write(d, [o for o in dirs if o != d]))

    _guard(go)


@task(help={"run_a": "first run dir", "run_b": "second run dir"})
def compare(c, run_a, run_b):
    """What differs between two runs' provenance, config and results."""
    from xeontl.records import report as rep

    diffs = _guard(rep.compare, Path(run_a), Path(run_b))
    for key, a, b in diffs:  # the records' values are foreign text: escaped, one line each
        print(f"{sanitize.text(key)}\n  A: {sanitize.text(a)}\n  B: {sanitize.text(b)}")
    if not diffs:
        print("xeontl compare: no field differs but ids and timestamps")


@task(help={"results_dir": "host dir the containers write run dirs to (default results/)",
            "profile": "profile the compose services run (default demo; the two-node service defaults to smoke)",
            "image": f"image the services run (default {DEFAULT_IMAGE})",
            "keys": "the key dir of `invoke keys` the node services mount (default keys/)",
            "output": "where to write the variables (default .env, which docker compose reads; with another path, "
                      "pass it as `--env-file`). A file this task did not write is never overwritten"})
def compose_env(c, results_dir="results", profile="demo", image=DEFAULT_IMAGE, keys="keys", output=".env"):
    """Write .env for compose.yaml: CPU sets from this host's plans, user ids, results dir."""
    from xeontl.engines import compose
    from xeontl.experiment import config
    from xeontl.launch import launch
    from xeontl.supply.stacks import by_image

    def go():
        res = Path(results_dir)
        # every value the env file gets, checked as a launch's (an image reference, a profile name, paths on one line);
        # its advice in compose-env's options (no --stack, no --set)
        opts = options.check(options.Options(image=image, profile=profile, results_dir=res), then=by_image,
                             remedy="compose-env has no --stack (its services run the default stack): drop --image")
        # the services' containers run on this host: its precision held to this CPU, as a launch's
        launch.require_precision(opts, config.resolve(profile), advice="--profile demo (precision auto: fp32 where "
                                                                        "there are no BF16 kernels)")
        options.one_line_path("--keys", keys)
        launch.check_results_dir(res)
        env = compose.env(res, opts.image, profile, Path(keys))
        text = compose.write_env(Path(output), env)
        print(text + f"wrote {output} (read by docker compose" + ("" if output == ".env" else " with --env-file") + ")")

    _guard(go)


@task(help={"dir": "where to write the key pair (default keys/); copy this dir to every host of a multi-node run"})
def keys(c, dir="keys"):
    """Make the ssh key pair of the multi-node layouts (compose two-node / two-host) once."""
    from xeontl.supply import keys as keylib

    out = _guard(keylib.make, Path(dir))
    print(f"xeontl: wrote {out}/id_ed25519(.pub): copy {out} to every host (XEONTL_KEYS), then `invoke compose-env`")


@task(help={"native": "also the training stack in .venv: OpenMPI, numactl, TensorFlow, and the Horovod wheel the "
                      "image build compiled (for --native runs and the tests that train on this host)",
            "slurm": "also Slurm, munge and Charliecloud (the Slurm engine and its test cluster)"})
def setup(c, native=False, slurm=False):
    """Set up this host in .venv: the launcher (default: enough for the quick start, which trains in the image)."""
    c.run("bash scripts/setup-host.sh" + " --native" * native + " --slurm" * slurm, pty=False)


@task(help={"stack": "default (requirements/lock.txt, for this host's Python) | paper (requirements/paper-lock.txt, "
                     "for Python 3.9)"})
def lock(c, stack="default"):
    """Regenerate requirements/lock.txt (exact versions + sha256) from requirements/lock.in, or with --stack paper
    requirements/paper-lock.txt for Debian 11's Python 3.9 (uv resolves for a Python this host need not have)."""
    from xeontl.supply.stacks import STACKS

    if stack == "default":
        c.run("pip-compile -q --generate-hashes --allow-unsafe --strip-extras --no-header "
              "-o requirements/lock.txt requirements/lock.in")
    elif stack == "paper":
        s = STACKS[stack]
        c.run(shlex.join([str(Path(sys.executable).with_name("uv")), "pip", "compile", "-q", "--python-version",
                          s.python, "--python-platform", "x86_64-manylinux_2_31", "--generate-hashes", "--no-header",
                          "--strip-extras", "-o", s.lock, s.lock.replace(".txt", ".in")]))
    else:
        raise Exit(f"xeontl: error: --stack {stack!r}: must be one of {', '.join(STACKS)}", code=2)


@task(help={"k": "only tests matching this pytest -k expression",
            "fast": "the fast tier (unit, plan, config, report, bad-input tests; no training, no Docker) on every "
                    "CPU (pytest-xdist): 109 s on a 2-vCPU AMX Xeon, for every few minutes of work"})
def test(c, k=None, fast=False):
    """Run the test suite: all of it, the image, native MPI and Slurm ones included (what CI runs), or the fast tier
    with --fast. First makes sure this host has what they need (`invoke setup --native --slurm`: seconds when it
    has; the first time, TensorFlow into .venv and the image build's Horovod wheel, ~2 min after the image), and
    but for --fast and -k the paper stack's image (`invoke build --offline --stack paper`, where this CPU runs it:
    seconds when built, ~8 min from nothing on a Zen 4). A failed build is one line, and the suite runs on: the tests
    that need the image skip, or fail in CI, saying it is not built."""
    c.run("bash scripts/setup-host.sh --native --slurm", pty=False)
    if k and not fast:  # a selection: most need no image, and building it (minutes) for one unrelated test is waste
        print("xeontl test: -k given: the paper stack's image is not built first (`invoke build --offline --stack "
              "paper`); a selected test that needs it skips saying so")
    elif not fast:  # the paper stack's tests and the CI workflow's paper step run on its image: built (offline)
        # first, where this CPU runs it and Docker answers (reused when built: seconds); elsewhere they skip, saying why
        from xeontl.supply import dockerapi

        try:
            dockerapi.check_daemon()
            build(c, offline=True, stack="paper", if_runnable=True)
        except (UserError, Exit) as e:
            print(f"xeontl test: the paper stack's image not built: {one_line(getattr(e, 'message', None) or e)}; "
                  f"the suite runs on, and the tests that need it skip (or fail in CI) saying so")
    # shlex.join: the -k expression reaches the shell as one word, whatever it holds ($(...), quotes, ;)
    # The fast tier trains nothing and starts no image: its tests run on every CPU this process may use (pytest-xdist,
    # a file's tests on one worker: module fixtures built once); the full suite stays serial, its runs take both CPUs
    spread = ["-n", str(cpus), "--dist", "loadfile"] if fast and (cpus := len(os.sched_getaffinity(0))) > 1 else []
    c.run(shlex.join([sys.executable, "-m", "pytest", "-ra", *(["-m", "not slow and not docker"] if fast else []),
                      *spread, *(["-k", k] if k else [])]), pty=False)


@task(help={"quick": "one repeat of each variant on less data (about 7 min on a 2-core machine) instead of "
                     "3 interleaved repeats (17 min on a 2-core AMX Xeon, 25 on a Zen 4, 53 on an Ice Lake Xeon "
                     "without BF16)",
            "native_only": "skip the container run (no image needed)",
            "image": f"image for the container figure (default {DEFAULT_IMAGE})",
            "results_dir": "where bench-<id>/ (or check-host-<id>/) is written (default results/)",
            "check_host": "only the hardware check (a few minutes): AMX present and dispatched, bf16 matmul against "
                          "the theoretical limit (through TensorFlow, through oneDNN with weights reordered once, "
                          "the tile unit alone), memory bandwidth, sockets, cores and NUMA against the paper's, and "
                          "the paper's 1- and 2-socket times predicted from this host's speed at the paper's shape",
            "stacks": "only the two software stacks side by side (both images: invoke build --offline [--stack "
                      "paper]): epoch bf16 and fp32, the bf16 speedup, the demo's accuracy, interleaved repeats"})
def bench(c, quick=False, native_only=False, image=DEFAULT_IMAGE, results_dir="results", check_host=False,
          stacks=False):
    """Measure this machine: matmul peaks, backbone fp32/bf16 + MFU, training variants, feature cache."""
    if stacks:
        from xeontl.measure import bench_stacks
        from xeontl.supply.stacks import STACKS, require_cpu

        def then(runs):  # bench has no --stack: what runs here, said in bench's words
            return (f"`invoke bench --stacks` measures both stacks, so it needs a CPU that runs both; this one runs "
                    f"the {' and '.join(runs) or 'neither'} stack only (`invoke bench` measures the default stack)")

        for s in STACKS.values():  # both stacks run here: a CPU both run on, or one line before any image is touched
            _guard(require_cpu, s, then)
        out = _guard(bench_stacks.run, quick, Path(results_dir))
        print(f"xeontl bench --stacks: {out / 'stacks.md'}")
        return
    if check_host:
        from xeontl.measure import checkhost

        out = _guard(checkhost.run, Path(results_dir))
        print(f"xeontl bench --check-host: {out / 'check.md'}")
        return
    from xeontl.measure import bench as benchlib
    from xeontl.supply.stacks import DEFAULT, by_image, require_image_cpu, require_own_image

    if not native_only:  # its container figure runs the image here, on the default stack (bench has no --stack)
        _guard(require_own_image, image, DEFAULT, "`invoke bench` measures the default stack (its container figure "
                                                  "too): give that stack's image, or --native-only")
        _guard(require_image_cpu, image, by_image)  # bench has no --stack: its advice names --image
    out = _guard(benchlib.run, quick, Path(results_dir), image, native_only)
    print(f"xeontl bench: {out / 'bench.json'}")
