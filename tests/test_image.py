"""The image: built offline (CI builds it before the tests), runs the reviewer's path, and the 2-node compose layout."""

import json
import secrets
import shutil
import subprocess

import pytest

from conftest import ROOT, invoke, run
from xeontl.smoke import check_run

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_image_labels_user_and_build_checks(image):
    info = json.loads(run(["docker", "image", "inspect", image]).stdout)[0]
    labels = info["Config"]["Labels"]
    assert len(labels["org.opencontainers.image.revision"]) == 40
    assert labels["io.xeontl.versions.horovod"] == "0.28.1" and "2.14.0" in labels["io.xeontl.versions.tensorflow"]
    assert info["Config"]["User"] == "xeontl"
    out = run(["docker", "run", "--rm", image, "horovodrun", "--check-build"], timeout=120).stdout
    assert "[X] TensorFlow" in out and "[X] MPI" in out and "[X] Gloo" in out
    tools = run(["docker", "run", "--rm", image, "sh", "-c", "command -v g++ cmake || echo no-compilers"]).stdout
    assert tools.strip() == "no-compilers"  # multi-stage: compilers stay in the builder


def test_invoke_smoke_two_ranks_in_the_image(image, tmp_path):
    r = invoke("smoke", "--image", image, timeout=900)
    assert r.returncode == 0 and "xeontl smoke: OK" in r.stdout, (r.stdout + r.stderr)[-3000:]


def test_reproduce_in_docker_records_the_container(image, tmp_path):
    r = invoke("reproduce", "--sockets", "2", "--emulate-sockets", "--profile", "smoke", "--image", image,
               "--results-dir", str(tmp_path), timeout=900)
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    run_dir, = [p for p in tmp_path.iterdir() if p.is_dir()]
    check_run(run_dir, 2)
    prov = json.loads((run_dir / "provenance.json").read_text())
    ex = prov["execution"]
    assert ex["mode"] == "docker" and ex["inside"]["in_container"] and ex["inside"]["uid"] != 0
    assert ex["capabilities_added"] == ["SYS_NICE"] and "sys_nice" in ex["inside"]["capabilities_bounding"]
    assert {"sys_ptrace", "sys_admin"}.isdisjoint(ex["inside"]["capabilities_bounding"])
    assert ex["image"]["labels"]["io.xeontl.versions.horovod"] == "0.28.1"
    assert ex["inside"]["cpuset_cpus"] == "0-1"
    assert prov["software"]["lock_sha256"]  # the image's lock file is recorded


@pytest.mark.skipif(shutil.which("docker-compose") is None, reason="docker-compose not installed")
def test_compose_two_node_layout(image, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o777)  # written by the image's user on both "hosts"
    env_file = tmp_path / ".env"
    r = invoke("compose-env", "--results-dir", str(results), "--profile", "smoke", "--image", image)
    assert r.returncode == 0, r.stderr
    shutil.move(ROOT / ".env", env_file)
    project = f"xeontl-test-{secrets.token_hex(3)}"
    compose = ["docker-compose", "-f", str(ROOT / "compose.yaml"), "--env-file", str(env_file), "-p", project,
               "--profile", "two-node"]
    try:
        up = run([*compose, "up", "--abort-on-container-exit", "--exit-code-from", "node1"], timeout=900)
        assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
    finally:
        subprocess.run([*compose, "down", "-v", "--remove-orphans"], capture_output=True, timeout=300)
    run_dir, = [p for p in results.iterdir() if p.is_dir()]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["status"] == "success"
    assert sorted((x["rank"], x["host"]) for x in m["ranks"]) == [(0, "node1"), (1, "node2")]  # both hosts trained
    assert "-H node1:1,node2:1" in (run_dir / "command.txt").read_text()
    assert not run([*compose, "ps", "-q"]).stdout.strip()  # torn down
