"""The image: built offline (CI builds it before the tests), runs the reviewer's path, and the 2-node compose layout."""

import json
import re
import secrets
import shutil
import subprocess
import time
from datetime import datetime

import pytest

from conftest import ROOT, invoke, run, scaled
from xeontl.measure.smoke import check_run

pytestmark = [pytest.mark.docker, pytest.mark.slow]


def test_image_labels_user_and_build_checks(image):
    info = json.loads(run(["docker", "image", "inspect", image]).stdout)[0]
    labels = info["Config"]["Labels"]
    from xeontl.supply import image as imagelib

    assert labels["io.xeontl.inputs"] == imagelib.checkout_inputs_hash()  # the sources it was built from
    # OCI's labels: traceable to its commit once pushed to a registry; never a placeholder
    head = run(["git", "rev-parse", "HEAD"]).stdout.strip()
    assert re.fullmatch(r"[0-9a-f]{40}(-dirty)?", labels["org.opencontainers.image.revision"])
    assert labels["org.opencontainers.image.revision"].removesuffix("-dirty") == head or run(
        ["git", "merge-base", "--is-ancestor", labels["org.opencontainers.image.revision"].removesuffix("-dirty"),
         head]).returncode == 0  # built at this commit, or reused from an earlier one with the same inputs
    assert datetime.fromisoformat(labels["org.opencontainers.image.created"]).tzinfo is not None
    assert labels["org.opencontainers.image.version"] == "0.1.0"
    assert "example.invalid" not in json.dumps(labels)
    assert labels.get("org.opencontainers.image.source", "") == "" or "://" in labels[
        "org.opencontainers.image.source"] or labels["org.opencontainers.image.source"].startswith("git@")
    assert labels["io.xeontl.versions.horovod"] == "0.28.1" and "2.14.0" in labels["io.xeontl.versions.tensorflow"]
    assert info["Config"]["User"] == "xeontl"
    # one container for what is checked inside: Horovod's TensorFlow extension with MPI and Gloo (what
    # `horovodrun --check-build` reports, which the deps build runs; it takes 26 s probing every framework), no
    # compilers, the deps image's wheel
    out = run(["docker", "run", "--rm", image, "sh", "-c", "python -c 'import horovod.tensorflow as h; "
               "print(\"built\", h.mpi_built(), h.gloo_built())'; echo ---; "
               "command -v g++ cmake || echo no-compilers; echo ---; ls /opt/xeontl/wheels"],
                   timeout=scaled(300)).stdout
    check_build, tools, wheel_list = out.split("---\n")
    assert check_build.split()[-3:] == ["built", "True", "True"], out
    assert tools.strip() == "no-compilers"  # multi-stage: compilers stay in the builder
    # on top of the deps image of this lock, which keeps its one Horovod build as the wheel the host's --native uses
    deps = json.loads(run(["docker", "image", "inspect", imagelib.deps_tag()]).stdout)[0]
    assert deps["Config"]["Labels"]["io.xeontl.deps"] == imagelib.deps_tag().split(":")[1]
    assert set(deps["RootFS"]["Layers"]) <= set(info["RootFS"]["Layers"])
    wheels = wheel_list.split()
    assert len(wheels) == 1 and wheels[0].startswith("horovod-0.28.1-cp311-cp311-linux_x86_64")


def test_invoke_smoke_two_ranks_in_the_image(image, tmp_path):
    r = invoke("smoke", "--image", image, timeout=scaled(900))
    assert r.returncode == 0 and "xeontl smoke: OK" in r.stdout, (r.stdout + r.stderr)[-3000:]


def test_a_container_run_records_the_container(docker_runs):
    """The image run (conftest.docker_runs: 2 ranks, resumed in the container after a killed rank)."""
    run_dir = docker_runs["cont"]
    check_run(run_dir, 2)
    prov = json.loads((run_dir / "provenance.json").read_text())
    ex = prov["execution"]
    assert ex["mode"] == "docker" and ex["inside"]["container_runtime"] == "docker" and ex["inside"]["uid"] != 0
    # --cap-drop ALL --cap-add SYS_NICE: the rank's bounding set is that one capability, and it holds none
    assert ex["capabilities_added"] == ["SYS_NICE"] and ex["inside"]["capabilities_bounding"] == ["sys_nice"]
    assert ex["inside"]["capabilities"] == []
    assert ex["image"]["labels"]["io.xeontl.versions.horovod"] == "0.28.1"
    assert ex["inside"]["cpuset_cpus"] == "0-1"
    assert prov["software"]["lock_sha256"]  # the image's lock file is recorded


def test_compose_two_node_layout(image, compose, tmp_path):
    results = tmp_path / "results"
    results.mkdir()
    results.chmod(0o777)  # written by the image's user on both "hosts"
    env_file = tmp_path / "compose.env"
    r = invoke("keys", "--dir", str(tmp_path / "keys"))
    assert r.returncode == 0, r.stderr
    # Two "hosts" with their own copy of the key dir, as on two machines: nothing shared but the results dir.
    for node in ("node1", "node2"):  # copied keeping ownership (the image's user must read the private key)
        subprocess.run(["cp", "-a", str(tmp_path / "keys"), str(tmp_path / f"keys-{node}")], check=True)
    shutil.rmtree(tmp_path / "keys")
    r = invoke("compose-env", "--results-dir", str(results), "--profile", "smoke", "--image", image,
               "--keys", str(tmp_path / "keys-node1"), "--output", str(env_file))
    assert r.returncode == 0, r.stderr
    with env_file.open("a") as f:
        f.write(f"XEONTL_KEYS_NODE2={tmp_path / 'keys-node2'}\n")
    project = f"xeontl-test-{secrets.token_hex(3)}"
    compose = [*compose, "-f", str(ROOT / "compose.yaml"), "--env-file", str(env_file), "-p", project,
               "--profile", "two-node"]
    try:
        up = run([*compose, "up", "--abort-on-container-exit", "--exit-code-from", "node1"], timeout=scaled(900))
        assert up.returncode == 0, (up.stdout + up.stderr)[-4000:]
    finally:
        subprocess.run([*compose, "down", "-v", "--remove-orphans"], capture_output=True, timeout=scaled(300))
    run_dir, = [p for p in results.iterdir() if p.is_dir()]
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["status"] == "success"
    assert sorted((x["rank"], x["host"]) for x in m["ranks"]) == [(0, "node1"), (1, "node2")]  # both hosts trained
    assert "-H node1:1,node2:1" in (run_dir / "command.txt").read_text()
    assert not run([*compose, "ps", "-q"]).stdout.strip()  # torn down
    import yaml

    assert not yaml.safe_load(run([*compose, "config"]).stdout).get("volumes")  # no named volume shared by nodes


def test_node_entrypoint_takes_the_mpi_operators_key_secret(image, tmp_path):
    """What the Kubeflow MPI Operator mounts at the MPIJob's sshAuthMountPath (id_rsa, id_rsa.pub, authorized_keys;
    root-owned, 0644, read-only): the node's sshd accepts it and the image's ssh client uses it, port 2222."""
    secret = tmp_path / "ssh"
    secret.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "rsa", "-b", "2048", "-N", "", "-f", str(secret / "id_rsa")], check=True)
    shutil.copy(secret / "id_rsa.pub", secret / "authorized_keys")
    for f in secret.iterdir():
        f.chmod(0o644)
    name = f"xeontl-k8s-{secrets.token_hex(3)}"
    started = run(["docker", "run", "-d", "--rm", "--name", name, "--user", "1000:1000",
                   "-e", "XEONTL_AUTHORIZED_KEYS=/home/xeontl/.ssh/authorized_keys",
                   "-v", f"{secret}:/home/xeontl/.ssh:ro", image, "node"], timeout=scaled(120))
    assert started.returncode == 0, started.stderr
    try:
        for _ in range(60):
            r = run(["docker", "exec", name, "ssh", "-o", "BatchMode=yes", "-o", "ConnectTimeout=2", "localhost",
                     "echo", "ssh-ok"], timeout=scaled(60))
            if "ssh-ok" in r.stdout:
                break
            time.sleep(1)
        assert "ssh-ok" in r.stdout, r.stderr
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=scaled(120))


def test_a_source_only_rebuild_builds_on_the_deps_image_and_cleans_up(image):
    """What the bench times: the package's few layers on the existing deps image, from a sub-MB context."""
    from xeontl.supply import image as imagelib

    r = imagelib.time_source_rebuild()
    assert r["seconds"] > 0 and r["context_bytes"] < 5 << 20
    deps = json.loads(run(["docker", "image", "inspect", imagelib.deps_tag()]).stdout)[0]["RootFS"]["Layers"]
    assert r["layers"][:len(deps)] == deps  # every deps layer reused as is, in order: nothing of TF/Horovod rebuilt
    assert 0 < len(r["layers"]) - len(deps) <= 6  # only the package's own few layers are new
    assert run(["docker", "image", "inspect", "xeontl:bench-rebuild"]).returncode != 0  # scratch tag removed
