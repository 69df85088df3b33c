"""xeontl.supply.dockerapi, the one place that asks the Docker daemon (through the Docker SDK), and the docker
engine's run of a container with it: the daemon's answers as one line, a container's output teed and its exit code
kept, the container removed however it ends."""

import pytest

from xeontl.common.errors import UserError
from xeontl.engines import docker as docker_engine
from xeontl.supply import dockerapi


@pytest.fixture
def fresh_clients(monkeypatch):
    monkeypatch.setattr(dockerapi, "_clients", {})


@pytest.mark.parametrize("host, why", [("unix:///nonexistent/docker.sock", "no Docker socket"),
                                       ("tcp://127.0.0.1:9", "connection refused")])
def test_an_unreachable_daemon_is_one_line(monkeypatch, fresh_clients, host, why):
    monkeypatch.setenv("DOCKER_HOST", host)
    for ask in (dockerapi.check_daemon, lambda: dockerapi.inspect("xeontl:latest"),
                lambda: dockerapi.require_image("xeontl:latest")):
        with pytest.raises(UserError) as e:
            ask()
        assert f"the Docker daemon is not reachable ({why})" in str(e.value) and "\n" not in str(e.value)


def test_the_container_and_its_docker_run_line_are_one_spec():
    spec = dockerapi.Container(image="img", command=("sh", "-c", "echo hi"), name="n", cpuset_cpus="0-1",
                               cpuset_mems="0", cap_add=("SYS_NICE",), user="1000:1000", env=(("A", "1"),),
                               mounts=(("/r", "/results", "rw"), ("/w", "/w", "ro")))
    assert spec.cli() == ["docker", "run", "--rm", "--name", "n", "--cpuset-cpus=0-1", "--cpuset-mems=0",
                          "--cap-drop", "ALL", "--cap-add", "SYS_NICE", "--security-opt", "no-new-privileges",
                          "--shm-size=2g", "--user", "1000:1000", "-e", "A=1", "-v", "/r:/results", "-v", "/w:/w:ro",
                          "img", "sh", "-c", "echo hi"]


@pytest.mark.docker
def test_inspect_of_a_missing_or_invalid_reference_is_none(image):
    assert dockerapi.inspect("xeontl:no-such-tag-ever") is None
    assert dockerapi.inspect("Not A Reference") is None
    assert dockerapi.inspect(image)["Id"].startswith("sha256:")


@pytest.mark.docker
def test_a_container_runs_teed_with_its_exit_code_and_is_removed(image, tmp_path, capfdbinary):
    import docker

    name = f"xeontl-test-{tmp_path.name}"[:60]
    spec = dockerapi.Container(image=image, command=("sh", "-c", "echo out; echo err >&2; sleep 1; echo late; "
                                                                 "exit 3"), name=name, cpuset_cpus="0", user="65534")
    ended = docker_engine.run_container(spec, tmp_path / "log")
    assert ended.rc == 3 and ended.status is None
    log = (tmp_path / "log").read_bytes()
    # stdout and stderr are two streams of the daemon's protocol: lines written together may come in either order
    lines = log.splitlines()
    assert sorted(lines[:2]) == [b"err", b"out"] and lines[2:] == [b"late"] and log in capfdbinary.readouterr().out
    with pytest.raises(docker.errors.NotFound):
        docker.from_env().api.inspect_container(name)


@pytest.mark.docker
def test_a_container_that_cannot_be_made_is_one_line(image, tmp_path):
    spec = dockerapi.Container(image="xeontl:no-such-tag-ever", command=("true",), name="xeontl-test-missing")
    with pytest.raises(UserError, match="image xeontl:no-such-tag-ever is not built"):
        docker_engine.run_container(spec, tmp_path / "log")
    spec = dockerapi.Container(image=image, command=("true",), name="xeontl-test-bad", cpuset_cpus="4096")
    with pytest.raises(UserError, match="docker could not (create|start) the run's container") as e:
        docker_engine.run_container(spec, tmp_path / "log")
    assert "\n" not in str(e.value)


# ------------------------------------------------------------------------------------------------ issue 39: limits
GiB = 1 << 30


def spr_plan(sockets: int, **kw):
    from conftest import SPR
    from xeontl.placement import plan as planlib
    from xeontl.placement import topology

    return planlib.make_plan(topology.load_file(SPR), sockets, **kw)


@pytest.mark.parametrize("name, plan, host, want", [
    # the paper's 2-socket run on its own Sapphire Rapids (224 CPUs, 2 ranks of 112): all of the host's memory
    ("2 sockets", lambda: spr_plan(2), (512 * GiB, 224), {"pids_limit": 512 + 2 * (256 + 8 * 112),
                                                          "memory": 512 * GiB, "network": "none"}),
    # one socket: half the CPUs, half the memory
    ("1 socket", lambda: spr_plan(1), (512 * GiB, 224), {"pids_limit": 512 + 256 + 8 * 112, "memory": 256 * GiB,
                                                         "network": "none"}),
    # a small host's share below the floor (2 GiB a rank + /dev/shm): the floor
    ("1 socket, small host", lambda: spr_plan(1), (6 * GiB, 224), {"pids_limit": 512 + 256 + 8 * 112,
                                                                   "memory": 4 * GiB, "network": "none"}),
    # never more than the host has
    ("floor above the host", lambda: spr_plan(2), (3 * GiB, 224), {"pids_limit": 512 + 2 * (256 + 8 * 112),
                                                                   "memory": 3 * GiB, "network": "none"}),
    # ranks on other hosts (mpirun over ssh): the network stays
    ("several hosts", lambda: spr_plan(2, hosts="node1:2,node2:2"), (512 * GiB, 224),
     {"pids_limit": 512 + 2 * (256 + 8 * 112), "memory": 512 * GiB, "network": None}),
])
def test_the_containers_limits_are_sized_from_the_plan(name, plan, host, want):
    assert docker_engine.limits(plan(), *host) == want, name


def test_the_runs_container_has_the_limits_in_its_docker_run_line_and_its_spec():
    """issue 39: the run's container had networking on and no pids or memory limit."""
    p = spr_plan(1)
    spec = docker_engine.container(p, "xeontl:latest", ["true"], "/r", "1000:1000")
    want = docker_engine.limits(p, *docker_engine.host_size())
    assert (spec.pids_limit, spec.memory, spec.network) == (want["pids_limit"], want["memory"], "none")
    cmd = spec.cli()
    for flag in (f"--pids-limit={want['pids_limit']}", f"--memory={want['memory']}",
                 f"--memory-swap={want['memory']}", "--network=none"):
        assert flag in cmd, flag
    assert cmd.index("--network=none") < cmd.index("xeontl:latest")


@pytest.mark.docker
@pytest.mark.skipif(not __import__("conftest").docker_ok(), reason="needs a Docker daemon")
def test_the_daemon_creates_the_container_with_exactly_those_limits(tmp_path):
    """What the daemon records of the container create() makes (HostConfig), on a tiny imported image, never
    started."""
    import io
    import secrets
    import tarfile

    ref = f"xeontl-test-limits:{secrets.token_hex(3)}"
    layer = io.BytesIO()
    with tarfile.open(fileobj=layer, mode="w") as t:
        info = tarfile.TarInfo("hello")
        info.size = 2
        t.addfile(info, io.BytesIO(b"hi"))
    dockerapi.import_rootfs(iter([layer.getvalue()]), ref, ["LABEL io.xeontl.test=limits"])
    spec = dockerapi.Container(image=ref, command=("true",), name=f"xeontl-test-limits-{secrets.token_hex(3)}",
                               pids_limit=321, memory=3 * GiB, network="none")
    try:
        ctr = spec.create()
        host = dockerapi.client().api.inspect_container(ctr.id)["HostConfig"]
        assert (host["PidsLimit"], host["Memory"], host["MemorySwap"], host["NetworkMode"]) == \
            (321, 3 * GiB, 3 * GiB, "none")
    finally:
        dockerapi.remove(spec.name)
        dockerapi.remove_image(ref)


# ------------------------------------------------------------------------------------------------ issue 39: the watch
def test_the_runs_command_is_watched_through_the_launchers_log():
    from xeontl.launch import outcome
    from xeontl.launch.options import Options
    from xeontl.placement import plan as planlib

    class Job:  # what DockerEngine.commands reads and writes
        plan, run_id, staging, read_only = spr_plan(2), "r1", "/tmp/staging", []

    engine = docker_engine.DockerEngine(Options(sockets=2, image="xeontl:latest"))
    engine.launch_line = lambda job: setattr(job, "inner", ["mpirun", "-np", "2", "x"])
    job = Job()
    engine.commands(job)
    assert list(engine.container.command) == ["sh", "-c", docker_engine.WATCH, "xeontl-watch",
                                              f"{planlib.CONTAINER_RESULTS}/{outcome.LAUNCHER_LOG}", "mpirun", "-np",
                                              "2", "x"]
    assert job.command == engine.container.cli()
    assert "\n" not in __import__("shlex").join(job.command)  # the launch record's `docker run` line is one line


LAUNCHER = """
import sys, time
from pathlib import Path
from xeontl.engines import docker as docker_engine
from xeontl.supply import dockerapi
image, name, results, uid = sys.argv[1:]
spec = dockerapi.Container(image=image, name=name, user=uid, network="none",
                           command=tuple(docker_engine.watched(["sleep", "300"], "/results/launcher.log")),
                           mounts=((results, "/results", "rw"),))
docker_engine.run_container(spec, Path(results) / "launcher.log")
"""


@pytest.mark.docker
def test_a_cgroup_wide_kill_of_launcher_and_guardian_stops_the_container(image, tmp_path):
    """issue 39: a CI cancel (scancel, a cgroup-wide kill) took the guardian down with the launcher, and the container
    ran on, holding cores the released CPU locks called free. Both are SIGKILLed here at once; the container's own
    watch stops the job within seconds."""
    import os
    import signal
    import subprocess
    import sys
    import time
    from pathlib import Path

    import docker

    name = f"xeontl-test-watch-{tmp_path.name}"[-60:]
    results = tmp_path / "results"
    results.mkdir()
    launcher = subprocess.Popen([sys.executable, "-c", LAUNCHER, image, name, str(results),
                                 f"{os.getuid()}:{os.getgid()}"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    api = docker.from_env().api
    try:
        for _ in range(120):
            try:
                if api.inspect_container(name)["State"]["Running"]:
                    break
            except docker.errors.NotFound:
                pass
            time.sleep(0.5)
        else:
            pytest.fail("the container never ran")
        time.sleep(3)
        assert api.inspect_container(name)["State"]["Running"]  # while its launcher lives, the watch waits
        children = Path(f"/proc/{launcher.pid}/task/{launcher.pid}/children").read_text().split()
        guardian = [int(c) for c in children if "xeontl.launch.guard" in Path(f"/proc/{c}/cmdline").read_text()]
        assert len(guardian) == 1
        for pid in (launcher.pid, guardian[0]):  # as a cgroup kill does: every process of the launcher's at once
            os.kill(pid, signal.SIGKILL)
        launcher.wait()
        t0 = time.time()
        while time.time() - t0 < 30 and api.inspect_container(name)["State"]["Running"]:
            time.sleep(0.5)
        state = api.inspect_container(name)["State"]
        assert not state["Running"] and state["ExitCode"] == 128 + signal.SIGTERM
        assert time.time() - t0 < 15
    finally:
        if launcher.poll() is None:
            launcher.kill()
        dockerapi.remove(name)


SLEEP_UNTIL_INT = "import sys, time\ntry:\n    time.sleep(60)\nexcept KeyboardInterrupt:\n    sys.exit(7)"


@pytest.mark.docker
@pytest.mark.parametrize("command, sig, rc", [
    (["sh", "-c", "exit 3"], None, 3),  # the job's exit status is the container's
    (["python3", "-c", SLEEP_UNTIL_INT], "SIGINT", 7),  # Ctrl-C (run_container's SIGINT) reaches Python's handler
    (["sleep", "60"], "SIGTERM", 128 + 15),
])
def test_the_watch_passes_the_jobs_signals_and_status_on(image, tmp_path, command, sig, rc):
    import fcntl
    import secrets
    import time

    lock = tmp_path / "launcher.log"
    lock.write_text("")
    spec = dockerapi.Container(image=image, name=f"xeontl-test-watch-{secrets.token_hex(3)}", network="none",
                               user=f"{__import__('os').getuid()}", command=tuple(docker_engine.watched(
                                   command, "/results/launcher.log")), mounts=((str(tmp_path), "/results", "ro"),))
    with open(lock) as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # this test is the launcher
        ctr = spec.create()
        try:
            ctr.start()
            if sig:
                time.sleep(2)
                dockerapi.kill(ctr.id, sig)
            assert ctr.wait(timeout=30)["StatusCode"] == rc
        finally:
            dockerapi.remove(ctr.id)
