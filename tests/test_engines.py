"""The engines behind one interface, chosen once; the launch options declared once for both CLIs; one writer of
metrics.json. Fast: no training, no Docker (the engines' real runs are in test_train, test_faults, test_slurm,
test_k8s_run)."""

import ast
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import ROOT, SPR, invoke, scaled
from xeontl import engines
from xeontl.common.errors import UserError
from xeontl.engines import docker, kubernetes, mpijob_launcher, native, slurm
from xeontl.launch import launch, options, outcome, rundir
from xeontl.launch.options import Options

SRC = ROOT / "src" / "xeontl"


# ------------------------------------------------------------------------------------------------ the engines
@pytest.mark.parametrize("opts,kind", [
    (Options(), docker.DockerEngine), (Options(native=True), native.NativeEngine),
    (Options(engine="slurm"), slurm.SlurmEngine), (Options(engine="slurm", container="none"), slurm.SlurmEngine),
])
def test_the_engine_is_chosen_once_from_the_options(opts, kind):
    engine = engines.choose(opts)
    assert type(engine) is kind
    # the interface whole: every engine renders, describes, runs and records itself
    for method in ("check", "commands", "describe", "run", "execution"):
        assert getattr(type(engine), method) is not getattr(engines.Engine, method) or method == "check", method


def test_no_module_outside_the_engines_asks_which_engine_runs():
    """The engine is decided in engines.choose; launch.py and the rest never branch on --engine, --native or an
    engine's mode again (before: 14 places in launch.py and provenance.py)."""
    asks = re.compile(r"\.(engine|native|container)\b\s*(==|!=|in\b)|\bif\s+[\w.]*\.native\b|\.mode\s*==|"
                      r"\.docker\b|slurm_container")
    outside = [p for p in SRC.rglob("*.py") if "engines" not in p.parts and p.name != "options.py"]
    found = [f"{p.relative_to(ROOT)}:{i}: {line.strip()}" for p in outside
             for i, line in enumerate(p.read_text().splitlines(), 1) if asks.search(line)]
    assert found == []


def test_each_engine_renders_the_plans_own_rank_commands(tmp_path):
    """The per-rank decisions are the plan's: every engine that runs ranks carries the very same rank commands."""
    got = {}
    for opts in (Options(dry_run=True, topology_file=str(SPR)),
                 Options(native=True, dry_run=True, topology_file=str(SPR)),
                 Options(engine="slurm", dry_run=True, topology_file=str(SPR), container="none")):
        job = launch.prepare(opts)
        got[job.engine.mode] = job
        assert job.engine.describe(job)
    plan_cmds = {m: [[a.lstrip("+") for a in c[c.index("numactl"):c.index("python")]] for c in j.ranks]
                 for m, j in got.items()}  # Slurm's are positions in the node's cpuset ("+0-55"): the same CPUs
    assert plan_cmds["docker"] == plan_cmds["native"] == plan_cmds["slurm"]
    assert plan_cmds["docker"][0] == ["numactl", "-C", "0-55,112-167", "-m", "0"]
    assert got["docker"].command[:2] == ["docker", "run"] and "--cap-add" in got["docker"].command
    assert got["native"].command[0] == "mpirun"
    assert got["slurm"].command[0] == "sbatch" and "#SBATCH --nodes=1" in got["slurm"].files["job.sbatch"]


def test_the_capabilities_are_the_plans_in_every_engine():
    from xeontl.placement import plan as planlib

    job = launch.prepare(Options(dry_run=True, topology_file=str(SPR)))
    caps = [job.command[i + 1] for i, a in enumerate(job.command) if a == "--cap-add"]
    assert caps == list(planlib.CAPABILITIES) == ["SYS_NICE"]
    cmd = " ".join(job.command)  # every other capability dropped first, none to be gained back
    assert "--cap-drop ALL --cap-add SYS_NICE" in cmd and "--security-opt no-new-privileges" in cmd
    assert engines.choose(Options()).execution()["capabilities_added"] == caps
    docs = kubernetes.manifest(job.plan, job.cfg, "r", "img", "claim")
    for spec in docs[1]["spec"]["mpiReplicaSpecs"].values():  # the MPIJob's pods: none, the kubelet pins them
        assert spec["template"]["spec"]["containers"][0]["securityContext"]["capabilities"] == {"drop": ["ALL"]}


@pytest.mark.parametrize("opts,needle", [
    (Options(container="none"), "--container: only with --engine slurm"),
    (Options(nodes=2), "--nodes: only with --engine slurm"),
    (Options(engine="slurm", native=True), "--native: not with --engine slurm"),
    (Options(engine="slurm", container="docker"), "--container 'docker': must be one of charliecloud, none"),
    (Options(engine="k8s"), "--engine k8s: through `invoke reproduce --engine k8s`"),
])
def test_an_engine_refuses_what_it_cannot_honour_before_anything_is_written(opts, needle, tmp_path):
    with pytest.raises(UserError, match=re.escape(needle)):
        launch.prepare(Options(**{**opts.__dict__, "results_dir": tmp_path, "topology_file": str(SPR)}))
    assert list(tmp_path.iterdir()) == []


def test_the_kubernetes_engine_refuses_local_options():
    with pytest.raises(UserError, match="--native, --resume: not with the Kubernetes engine"):
        kubernetes.KubernetesEngine(Options(native=True, resume=Path("r"))).check()


# ------------------------------------------------------------------------------------------------ options, once
def python_help() -> str:
    return subprocess.run([sys.executable, "-m", "xeontl", "reproduce", "--help"], capture_output=True, text=True,
                          timeout=scaled(120)).stdout


def test_both_clis_offer_the_options_their_declarations_say():
    inv = invoke("--help", "reproduce").stdout
    py = python_help()
    for f in options.FIELDS.values():
        flag = options.flag(f).replace("_", "-")
        # a flag that is on by default is offered as its negation (invoke: --[no-]build; argparse: --no-build)
        name = re.compile(rf"(?<![\w-])--(\[no-\]|no-)?{flag}(?![\w-])" if f.default is True else
                          rf"(?<![\w-])--{flag}(?![\w-])")
        assert bool(name.search(inv)) == (options.INVOKE in f.metadata["cli"]), f.name
        if f.name != "profile":  # python's --profile is the config's own (cli.add_config_args)
            assert bool(name.search(py)) == (options.PYTHON in f.metadata["cli"]), f.name


@pytest.mark.parametrize("given,expected", [(True, True), ("yes", True), ("no", False), (False, False),
                                           ("auto", "auto")])
def test_emulate_sockets_has_one_encoding(given, expected):
    assert options.parse("emulate_sockets", given) == expected
    import argparse

    p = argparse.ArgumentParser()
    options.add_arguments(p)
    argv = ["--emulate-sockets"] if given is True else ([] if given is False else ["--emulate-sockets", given])
    assert options.from_argparse(p.parse_args(argv)).emulate_sockets == expected


def test_both_clis_make_the_same_launch(tmp_path):
    """`invoke reproduce` and `python -m xeontl reproduce` with the same flags print the same plan and ranks."""
    args = ["--sockets", "2", "--emulate-sockets", "--dry-run", "--topology", str(SPR), "--controller", "gloo"]
    inv = invoke("reproduce", "--native", *args)
    py = subprocess.run([sys.executable, "-m", "xeontl", "reproduce", *args], capture_output=True, text=True,
                        timeout=scaled(120))
    assert inv.returncode == py.returncode == 0, (inv.stderr, py.stderr)
    def same(text):  # each launch has its own run id
        return re.sub(r"\d{8}-\d{6}-demo-2s-[0-9a-f]{4}", "RUN", text)

    assert same(inv.stdout) == same(py.stdout) and "--gloo" in py.stdout


@pytest.mark.parametrize("flag,value,needle", [("--emulate-sockets", "maybe", "must be yes, no or auto"),
                                               ("--sockets", "two", "must be a whole number"),
                                               ("--controller", "nccl", "must be one of mpi, gloo")])
def test_a_bad_option_value_is_one_line(flag, value, needle):
    r = invoke("reproduce", flag, value, "--dry-run")
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and needle in r.stderr, r.stderr


# ------------------------------------------------------------------------------------------------ one metrics.json
def test_metrics_json_has_one_writer():
    writes = []
    for p in SRC.rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            if isinstance(node, ast.Constant) and node.value == "metrics.json" and p.name != "rundir.py":
                line = p.read_text().splitlines()[node.lineno - 1]
                if "write" in line:
                    writes.append(f"{p.name}:{node.lineno}")
    assert writes == []


def test_settle_names_the_failed_rank_and_writes_the_status_once(tmp_path):
    rundir.write_metrics(tmp_path, {"status": "success", "final_val_accuracy": 0.9})
    (tmp_path / "logs-launcher.txt").write_text("Process 1 exit with status code 137.\n")
    status, failure, metrics = outcome.settle(tmp_path, outcome.Ended(1))
    assert status == "failed" and failure == {"returncode": 1, "rank": 1, "exit_code": 137, "signal": 9}
    assert rundir.read_metrics(tmp_path) == {**metrics, "final_val_accuracy": 0.9}
    assert not list(tmp_path.glob(".*.tmp"))
    explained = outcome.settle(tmp_path, outcome.Ended(1), explain=lambda log: {"node": "n2"})[1]
    assert explained["rank"] == 1 and "node" not in explained  # the launcher's own word first
    (tmp_path / "logs-launcher.txt").write_text("ssh: lost\n")
    assert outcome.settle(tmp_path, outcome.Ended(1), explain=lambda log: {"node": "n2"})[1]["node"] == "n2"
    assert json.loads((tmp_path / "metrics.json").read_text())["failure"]["node"] == "n2"


def test_a_slurm_nodes_refusal_is_the_failure_in_its_own_words_not_a_rank(tmp_path):
    """The adversary's third round: the sbatch script's node check (its srun step's task 1 is a node) was recorded as
    training rank 1's exit, and its one line was never shown. The line is the code's own (needs.lacks_line)."""
    from xeontl.supply import needs, stacks

    need, = [n for n in needs.run_needs(stacks.STACKS["paper"], "fp32")]
    line = needs.lacks_line(need, "a node of this job")
    (tmp_path / "logs-launcher.txt").write_text(f"srun: error: n2: task 1: Exited with exit code 1\n{line}\n")
    status, failure, _ = outcome.settle(tmp_path, outcome.Ended(2))
    assert status == "failed" and failure == {"returncode": 2, "error": line}
    assert json.loads((tmp_path / "metrics.json").read_text())["failure"]["error"] == line
    rundir.read_metrics(tmp_path)  # its schema allows it


# ------------------------------------------------------------------------------------------------ assets claim
def test_the_assets_claim_holds_the_papers_files_read_only_in_every_pod():
    from xeontl.experiment import config
    from xeontl.placement import plan as planlib
    from xeontl.placement import topology

    cfg = kubernetes.assets_on_claim(config.resolve("paper"))
    assert cfg["weights"] == "savedmodel:/assets/weights/resnet50_v1_5"
    assert (cfg["data_dir"], cfg["manual_dir"]) == ("/assets/tensorflow_datasets", "/assets/manual")
    plan = planlib.make_plan(topology.load_file(SPR), 2, node_count=2, relative=True)
    docs = kubernetes.manifest(plan, cfg, "r", "img", "results", assets_claim="paper-assets")
    assert json.loads(docs[0]["data"]["config.json"])["weights"] == cfg["weights"]
    for spec in docs[1]["spec"]["mpiReplicaSpecs"].values():
        pod = spec["template"]["spec"]
        claim = next(v for v in pod["volumes"] if v["name"] == "assets")
        assert claim["persistentVolumeClaim"] == {"claimName": "paper-assets", "readOnly": True}
        mount = next(m for m in pod["containers"][0]["volumeMounts"] if m["name"] == "assets")
        assert mount == {"name": "assets", "mountPath": "/assets", "readOnly": True}
    assert kubernetes.check(docs, 2)


def test_an_assets_claim_for_a_profile_that_reads_no_files_is_one_line(tmp_path):
    r = invoke("render", "--profile", "smoke", "--assets-claim", "a", "--output", str(tmp_path / "j.yaml"))
    assert r.returncode == 2 and "reads no weights or data files" in r.stderr and not (tmp_path / "j.yaml").exists()


def test_a_launcher_pod_without_its_configmap_is_one_line(tmp_path):
    with pytest.raises(UserError, match="lacks config.json, plan.json: mount the run's ConfigMap"):
        mpijob_launcher.launch_pod("r1", tmp_path, tmp_path / "etc", ["true"])
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ the image, built
def test_a_missing_or_stale_image_is_built_first_unless_no_build(monkeypatch):
    from xeontl.supply import dockerapi
    from xeontl.supply import image as imagelib

    built, state = [], {"label": "0123456789ab"}
    monkeypatch.setattr(dockerapi, "check_daemon", lambda: None)
    monkeypatch.setattr(dockerapi, "inspect", lambda ref: {"Id": "x", "Config": {"Labels": {
        dockerapi.INPUTS_LABEL: state["label"]}}})

    def build(tag, offline, stack):
        built.append((tag, offline))
        state["label"] = imagelib.checkout_inputs_hash()
    monkeypatch.setattr(imagelib, "build", build)
    with pytest.raises(UserError, match="built from inputs 0123456789ab"):
        docker.DockerEngine(Options(build=False)).preflight(None)
    assert built == []
    engine = docker.DockerEngine(Options(image="xeontl:x"))
    engine.preflight(None)
    assert built == [("xeontl:x", True)] and engine.image_info["Config"]["Labels"][dockerapi.INPUTS_LABEL]
    engine.preflight(None)  # current now: not built again
    assert len(built) == 1


@pytest.mark.docker
def test_reproduce_builds_the_image_it_lacks(image):
    """For real: an image tag this checkout has not built yet is built (here from the checkout's content tag, as
    `invoke build` reuses it) and then runs this checkout's code."""
    import secrets

    from xeontl.supply import dockerapi
    from xeontl.supply import image as imagelib

    tag = f"xeontl:autobuild-{secrets.token_hex(3)}"
    try:
        engine = docker.DockerEngine(Options(image=tag))
        engine.preflight(None)
        assert dockerapi.label(engine.image_info, dockerapi.INPUTS_LABEL) == imagelib.checkout_inputs_hash()
    finally:
        subprocess.run(["docker", "rmi", tag], capture_output=True)
