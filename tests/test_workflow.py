"""The users' CI workflow (.github/workflows/ci.yml) cannot rot: its steps run here in order, in a fresh clone, the
way a runner runs them (bash -e, the runner's environment variables, a branch ref so the tag-only push is skipped as
the runner would skip it). Two things differ, and are said: the suite its test step runs is narrowed to one file
(PYTEST_ADDOPTS: the whole suite inside the suite would run twice), and pip may reuse this checkout's wheelhouse.
The tag-only push step's shell runs here too, against a `docker` shim on PATH (nothing is pushed): fast."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, scaled

WORKFLOW = ROOT / ".github" / "workflows" / "ci.yml"


def clean_checkout() -> bool:
    r = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no"], capture_output=True,
                       text=True)
    return r.returncode == 0 and not r.stdout.strip()


def steps() -> list[dict]:
    doc = yaml.safe_load(WORKFLOW.read_text())
    job, = doc["jobs"].values()
    return job["steps"]


def test_the_workflow_uses_the_venv_and_the_readmes_commands():
    runs = [s["run"] for s in steps() if "run" in s]
    assert runs[0] == "bash scripts/setup-host.sh"
    assert all(r.startswith("bash scripts/") or ".venv/bin/invoke" in r or "docker" in r for r in runs), runs
    assert not any("python3 -m" in r for r in runs)  # the runner's own Python has neither invoke nor pytest
    readme = (ROOT / "README.md").read_text()
    assert ".venv/bin/invoke test" in readme and any(r.endswith(".venv/bin/invoke test") for r in runs)
    # the paper stack's build: on a runner whose CPU cannot run it (no AVX-512: many cloud runners are AVX2-only
    # AMD EPYCs), a line and on, not a failed job
    paper, = [r for r in runs if "--stack paper" in r]
    assert paper == ".venv/bin/invoke build --stack paper --if-runnable", paper
    push = next(s for s in steps() if "push" in s.get("name", ""))
    assert push["if"] == "startsWith(github.ref, 'refs/tags/v')" and "docker push" in push["run"]


@pytest.mark.slow
@pytest.mark.docker
@pytest.mark.skipif(not clean_checkout(), reason="the workflow runs a commit: the checkout has uncommitted changes")
def test_the_workflows_steps_pass_in_a_fresh_clone_as_a_runner_runs_them(image, paper_image, tmp_path):
    """Both stacks' images are this checkout's (`invoke test` builds the paper stack's first), so the clone's build
    steps reuse them, as a runner's cache would; on a CPU without AVX-512 the paper step says it skips (paper_image:
    None)."""
    work = tmp_path / "xeontl"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(work)], check=True)  # actions/checkout
    head = subprocess.run(["git", "-C", str(work), "rev-parse", "HEAD"], capture_output=True, text=True).stdout
    env = {**os.environ, "CI": "true", "GITHUB_ACTIONS": "true", "GITHUB_WORKSPACE": str(work),
           "GITHUB_REF": "refs/heads/main", "GITHUB_REF_NAME": "main", "GITHUB_SHA": head.strip(),
           "GITHUB_REPOSITORY": "example/xeontl", "GITHUB_ACTOR": "runner", "RUNNER_OS": "Linux",
           "RUNNER_TEMP": str(tmp_path / "runner-temp"), "IMAGE_REGISTRY": "",
           "PYTEST_ADDOPTS": "tests/test_docs.py", "PATH": os.environ["PATH"]}
    env.pop("VIRTUAL_ENV", None)
    if (ROOT / "docker" / "wheelhouse").is_dir():
        env["PIP_FIND_LINKS"] = str(ROOT / "docker" / "wheelhouse")
    (tmp_path / "runner-temp").mkdir()
    ran = []
    for step in steps():
        if "uses" in step:  # checkout: the clone above; setup-python: this machine's python3 is 3.11
            continue
        if "if" in step and "refs/tags/" in step["if"] and not env["GITHUB_REF"].startswith("refs/tags/"):
            continue  # a branch build skips the tag-only push, as the runner does
        r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", step["run"]], cwd=work, env=env,
                           capture_output=True, text=True, timeout=scaled(3600))
        assert r.returncode == 0, f"step {step.get('name')!r} failed:\n{(r.stdout + r.stderr)[-3000:]}"
        ran.append(step.get("name"))
        if "--stack paper" in step["run"]:
            skipped = "xeontl build: skipped: --stack paper: this CPU" in r.stdout
            assert skipped == (paper_image is None), r.stdout[-2000:]
    assert len(ran) == 5 and Path(work / ".venv" / "bin" / "invoke").exists()


# `docker` as the push step uses it, recording its arguments: IMAGES (space-separated) are the images it holds; a
# tag of any other answers as Docker does ("No such image") and fails; login reads the token from stdin.
DOCKER_SHIM = """#!/bin/bash
echo "docker $*" >> "$SHIM_LOG"
case "$1" in
  login) cat > /dev/null ;;
  image) for i in $SHIM_IMAGES; do [ "$i" = "$3" ] && exit 0; done; echo "Error: No such image: $3" >&2; exit 1 ;;
  tag) for i in $SHIM_IMAGES; do [ "$i" = "$2" ] && exit 0; done
       echo "Error response from daemon: No such image: $2" >&2; exit 1 ;;
  inspect) echo '{}' ;;
esac
"""
REF = "registry.example/example/xeontl:v1.2.3"
PUSHES = [
    # (what, images the runner has, exit, pushed, the line said)
    ("both stacks built (a CPU with AVX-512)", "xeontl:latest xeontl:paper", 0, [REF, f"{REF}-paper-stack"], None),
    ("the paper stack skipped (an AVX2-only runner)", "xeontl:latest", 0, [REF],
     f"{REF}-paper-stack not pushed: this runner's CPU lacks avx512f"),
    ("no default image: a failed job, as before", "xeontl:paper", 1, [], "No such image: xeontl:latest"),
]


@pytest.mark.parametrize("what,images,code,pushed,says", PUSHES, ids=[c[0] for c in PUSHES])
def test_the_tag_push_pushes_the_paper_stack_only_where_it_was_built(what, images, code, pushed, says, tmp_path):
    """The push step's own script, as a runner runs it on a version tag (bash -e, its expressions substituted),
    with `docker` shimmed: on a runner whose CPU lacks AVX-512 the build step skipped xeontl:paper, so the step
    pushes the default stack's image and says in one line why the paper stack's was not."""
    push, = [s for s in steps() if "docker push" in s.get("run", "")]
    assert push["if"] == "startsWith(github.ref, 'refs/tags/v')"
    script = push["run"].replace("${{ secrets.GITHUB_TOKEN }}", "token")
    assert "${{" not in script
    shim = tmp_path / "bin"
    shim.mkdir()
    (shim / "docker").write_text(DOCKER_SHIM)
    (shim / "docker").chmod(0o755)
    log = tmp_path / "docker.log"
    env = {"PATH": f"{shim}:/usr/bin:/bin", "SHIM_LOG": str(log), "SHIM_IMAGES": images,
           "IMAGE_REGISTRY": "registry.example", "GITHUB_REPOSITORY": "Example/XeonTL", "GITHUB_REF_NAME": "v1.2.3",
           "GITHUB_REF": "refs/tags/v1.2.3", "GITHUB_ACTOR": "runner"}
    r = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", script], env=env, capture_output=True, text=True,
                       cwd=tmp_path, timeout=scaled(60))
    assert r.returncode == code, r.stdout + r.stderr
    ran = log.read_text().splitlines()
    assert [ln.split()[-1] for ln in ran if ln.startswith("docker push ")] == pushed, ran
    if says:
        said = [ln for ln in (r.stdout + r.stderr).splitlines() if says in ln]
        assert len(said) == 1, r.stdout + r.stderr
    if code == 0 and len(pushed) == 1:  # the line says why, naming the feature, and nothing else is said of it
        assert "avx512f" in r.stdout and "No such image" not in r.stdout + r.stderr
