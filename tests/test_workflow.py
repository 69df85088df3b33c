"""The users' CI workflow (.github/workflows/ci.yml) cannot rot: its steps run here in order, in a fresh clone, the
way a runner runs them (bash -e, the runner's environment variables, a branch ref so the tag-only push is skipped as
the runner would skip it). Two things differ, and are said: the suite its test step runs is narrowed to one file
(PYTEST_ADDOPTS: the whole suite inside the suite would run twice), and pip may reuse this checkout's wheelhouse."""

import os
import subprocess
from pathlib import Path

import pytest
import yaml

from conftest import ROOT, scaled

pytestmark = [pytest.mark.slow, pytest.mark.docker]
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
