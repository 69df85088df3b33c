import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# As an activated venv would: the tests' own Python environment (.venv/bin: horovodrun, invoke) first on PATH.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
TOPOLOGIES = Path(__file__).parent / "topologies"
SPR = TOPOLOGIES / "spr-8480-2s-ht.lscpu"


def run(cmd, timeout=600, env=None, **kw):
    """A subprocess with a hard time limit: a hang fails the test instead of blocking CI."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=kw.pop("cwd", ROOT),
                          env={**os.environ, **(env or {})}, **kw)


def invoke(*args, timeout=600, env=None):
    return run([sys.executable, "-m", "invoke", *args], timeout=timeout, env=env)


def have_horovod() -> bool:
    try:
        import horovod.tensorflow  # noqa: F401
    except ImportError:
        return False
    return shutil.which("horovodrun") is not None and shutil.which("numactl") is not None


needs_horovod = pytest.mark.skipif(not have_horovod(), reason="native Horovod not installed (invoke setup --native)")


def docker_ok() -> bool:
    return shutil.which("docker") is not None and subprocess.run(
        ["docker", "info"], capture_output=True).returncode == 0


def image_ok(tag="xeontl:latest") -> bool:
    return docker_ok() and subprocess.run(["docker", "image", "inspect", tag], capture_output=True).returncode == 0


@pytest.fixture(scope="session")
def image():
    """The image for the docker tests. CI builds it first (.ci/run); locally, build it or the tests skip.
    With XEONTL_REQUIRE_IMAGE=1 (CI) a missing image is a failure, not a skip."""
    if not image_ok():
        if os.environ.get("XEONTL_REQUIRE_IMAGE") == "1":
            pytest.fail("xeontl:latest is not built: run `invoke build --offline` before the image tests")
        pytest.skip("xeontl:latest not built (invoke build --offline)")
    return "xeontl:latest"


def one_line_error(result, *needles):
    """A user mistake: non-zero exit, one 'xeontl: error:' line naming the problem, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("xeontl: error:")]
    assert len(errors) == 1, result.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def pytest_collection_modifyitems(items):
    """Every test that uses the built image is a `docker` test (the fast tier, `-m "not slow and not docker"`,
    leaves them out), whether it says so itself or not."""
    for item in items:
        if "image" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)
