"""A shared host and a hostile user: the CPU locks through /tmp, values that reach scripts and shells, secrets, the
weights' hashes, a launcher that dies, a disk that fills, nothing of anyone's rewritten. Each reproducer of issue 32
is a test here (or in test_archive.py / test_assets.py for archives and bundles)."""

import functools
import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, SPR, invoke, one_line_error, processes_naming, scaled, start, wait_for
from xeontl.common import redact
from xeontl.common.errors import UserError
from xeontl.launch import cpulock
from xeontl.records import provenance
from xeontl.supply import assets

ROOT_ONLY = pytest.mark.skipif(os.getuid() != 0, reason="needs root (the shared-host case: a root run, a 2nd user)")
NOBODY = 65534


@pytest.fixture
def shared(tmp_path):
    """A dir every user of the host can reach, as /tmp is (pytest's own tmp dirs are root's alone)."""
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="xeontl-shared-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


@functools.cache
def readable_src() -> Path:
    """This checkout's package, copied once where every user can read it (a dir like /tmp's others, 0755, files
    0644): the checkout itself may sit under a dir only root can enter (a clone under `mktemp -d`, root's home), and
    the other user must import the same code, not fail to import it."""
    import atexit
    import shutil
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="xeontl-src-", dir="/tmp"))
    atexit.register(shutil.rmtree, d, ignore_errors=True)
    shutil.copytree(ROOT / "src" / "xeontl", d / "xeontl", ignore=shutil.ignore_patterns("__pycache__"))
    for p in [d, *d.rglob("*")]:
        p.chmod(0o755 if p.is_dir() else 0o644)
    return d


def as_user(uid: int, code: str, env: dict) -> subprocess.CompletedProcess:
    """CODE as another user (setpriv, util-linux), with the package importable (readable_src()): the system's Python
    3.11 where there is one (the venv's may live under root's home), which is all the lock code needs."""
    python = "/usr/bin/python3" if Path("/usr/bin/python3").exists() else sys.executable
    return subprocess.run(["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", python, "-c", code],
                          capture_output=True, text=True, timeout=scaled(120), cwd="/",
                          env={**os.environ, **env, "PYTHONPATH": str(readable_src()), "HOME": "/tmp"})


# ------------------------------------------------------------------------------------------------ CPU locks
@ROOT_ONLY
def test_a_symlink_planted_in_the_lock_dir_is_refused_and_its_target_untouched(shared):
    """The issue's reproducer: another user makes the lock dir first and points cpu-0.lock at a file; the root run
    must neither make that file world-writable nor overwrite it."""
    locks, victim = shared / "L", shared / "victim"
    victim.write_text("keep\n")
    victim.chmod(0o600)
    shared.chmod(0o1777)  # like /tmp: anyone may create in it
    r = as_user(NOBODY, f"import os; os.mkdir({str(locks)!r}, 0o1777); os.chmod({str(locks)!r}, 0o1777); "
                        f"os.symlink({str(victim)!r}, {str(locks / 'cpu-0.lock')!r})", {})
    assert r.returncode == 0, r.stderr
    os.environ["XEONTL_LOCK_DIR"] = str(locks)
    try:
        with pytest.raises(UserError, match="cpu-0.lock is a symbolic link: refused, it was not written to"):
            with cpulock.hold([0], "run-x"):
                pass
    finally:
        del os.environ["XEONTL_LOCK_DIR"]
    assert victim.read_text() == "keep\n" and oct(victim.stat().st_mode & 0o777) == "0o600"


@ROOT_ONLY
def test_a_hard_link_or_a_linked_lock_dir_is_refused(tmp_path, monkeypatch):
    locks = tmp_path / "L"
    locks.mkdir(mode=0o1777)
    locks.chmod(0o1777)
    other = tmp_path / "other"
    other.write_text("x")
    os.link(other, locks / "cpu-0.lock")
    monkeypatch.setenv("XEONTL_LOCK_DIR", str(locks))
    with pytest.raises(UserError, match="is not a plain file of its own .* 2 links"):
        with cpulock.hold([0], "run-x"):
            pass
    (tmp_path / "real").mkdir()
    (tmp_path / "linked").symlink_to(tmp_path / "real")
    monkeypatch.setenv("XEONTL_LOCK_DIR", str(tmp_path / "linked"))
    with pytest.raises(UserError, match="is a symbolic link: refused"):
        cpulock.lock_dir()


@ROOT_ONLY
def test_the_locks_hold_across_users_whatever_the_umask(shared, monkeypatch):
    """Root makes the dir under umask 077 (mkdir's 1777 cut to 1700); it is made shareable anyway, a second user's
    run takes its own CPU there, and each sees the other's held CPU as busy."""
    locks = shared / "L"
    monkeypatch.setenv("XEONTL_LOCK_DIR", str(locks))
    old = os.umask(0o077)
    try:
        with cpulock.hold([0], "root-run"):
            assert oct(locks.stat().st_mode & 0o7777) == "0o1777"
            code = ("from xeontl.launch import cpulock\nfrom xeontl.common.errors import UserError\n"
                    "with cpulock.hold([1], 'nobody-run'):\n    pass\n"
                    "try:\n    cpulock.hold([0], 'nobody-run').__enter__()\nexcept UserError as e:\n    print(e)\n")
            r = as_user(NOBODY, code, {"XEONTL_LOCK_DIR": str(locks)})
            assert r.returncode == 0, r.stderr
            assert "CPUs 0 by run root-run" in r.stdout  # the other user's run sees root's CPU held
    finally:
        os.umask(old)
    r = as_user(NOBODY, "from xeontl.launch import cpulock\nc = cpulock.hold([2], 'nobody-holds')\n"
                        "c.__enter__(); print('held', flush=True)", {"XEONTL_LOCK_DIR": str(locks)})
    assert r.returncode == 0 and "held" in r.stdout, r.stderr


# ------------------------------------------------------------------------------------------------ values into scripts
@pytest.mark.parametrize("flag,value,needle", [
    ("--partition", "p\ntouch /tmp/pwn", "must be a Slurm partition name"),
    ("--partition", "p;id", "must be a Slurm partition name"),
    ("--time-limit", "10\n#SBATCH --uid=0", "must be a Slurm time"),
    ("--time-limit", "$(id)", "must be a Slurm time"),
    ("--image", "-v/:/host", "must be an image reference"),
])
def test_a_value_for_a_script_is_checked_before_anything_is_written(tmp_path, flag, value, needle):
    r = invoke("reproduce", "--engine", "slurm", "--nodes", "2", "--sockets", "2", "--profile", "paper", "--topology",
               str(SPR), f"{flag}={value}", "--dry-run", "--results-dir", str(tmp_path), timeout=scaled(120))
    one_line_error(r, needle)
    assert "touch /tmp/pwn" not in r.stdout and list(tmp_path.iterdir()) == []


def test_hosts_and_a_results_dir_with_a_newline_are_one_line(tmp_path):
    r = invoke("reproduce", "--native", "--sockets", "1", "--hosts", "node1:1,$(id):1", "--dry-run",
               timeout=scaled(120))
    one_line_error(r, "--hosts")
    r = invoke("reproduce", "--engine", "slurm", "--nodes", "2", "--sockets", "2", "--topology", str(SPR),
               "--results-dir", str(tmp_path / "a b"), "--dry-run", timeout=scaled(120))
    one_line_error(r, "white space")


def test_render_with_a_word_for_a_number_is_one_line():
    one_line_error(invoke("render", "--engine", "k8s", "--nodes", "two", "--topology", str(SPR)),
                   "--nodes 'two': must be a whole number")
    one_line_error(invoke("render", "--engine", "k8s", "--memory-per-rank", "8G", "--topology", str(SPR)),
                   "--memory-per-rank '8G'")


def test_compare_of_paths_that_are_not_runs_is_one_line(tmp_path):
    one_line_error(invoke("compare", str(tmp_path / "typo1"), str(tmp_path / "typo2")), "is not a run dir")


def test_invoke_test_passes_its_k_expression_as_one_word():
    """json.dumps is not shell quoting: `invoke test -k "$(id)"` ran `id`. The command line is shlex-quoted now."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tasks", ROOT / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    ran = []

    class Context:
        def run(self, cmd, **kw):
            ran.append(cmd)

    tasks.test.body(Context(), k='$(id) or "x"; touch /tmp/pwn', fast=True)
    words = shlex.split(ran[-1])
    assert words[words.index("-k") + 1] == '$(id) or "x"; touch /tmp/pwn'


# ------------------------------------------------------------------------------------------------ --resume
@pytest.mark.parametrize("launch_json,needle", [
    (None, "launch.json (No such file or directory)"),
    ('{"sockets": 2, "emul', "launch.json: not JSON"),
    ('{"sockets": "two"}', "launch.json: field sockets: 'two' is not of type 'integer'"),
    ('{"controller": "bogus"}', "launch.json: field controller: 'bogus' is not one of ['mpi', 'gloo']"),
    ('[1, 2]', "launch.json: field (the whole record): [1, 2] is not of type 'object'"),
])
def test_resume_with_a_damaged_launch_json_is_one_line(tmp_path, launch_json, needle):
    from xeontl.experiment import config

    run = tmp_path / "20261204-000000-smoke-2s-abcd"
    (run / "checkpoints" / "epoch-0001").mkdir(parents=True)
    config.save(config.resolve("smoke"), run / "config.json")
    (run / "metrics.json").write_text(json.dumps({"status": "failed"}))
    if launch_json is not None:
        (run / "launch.json").write_text(launch_json)
    one_line_error(invoke("reproduce", "--resume", str(run), "--native", "--results-dir", str(tmp_path / "res")),
                   needle)


# ------------------------------------------------------------------------------------------------ config values
@pytest.mark.parametrize("setting,needle", [
    ("weights=imagenet", "weights='imagenet' must be random, savedmodel:DIR"),
    ("train_split=bogus", "train_split='bogus' must be a TFDS slice"),
    ("seed=5000000000", "seed=5000000000 must be between 0 and 2147483647"),
    ("learning_rate=inf", "learning_rate=inf must be a finite number"),
    ("learning_rate=nan", "learning_rate=nan must be a finite number"),
    ("archive_sha256=abc", "must be 64 lowercase hex digits"),
])
def test_a_config_value_is_typed_and_ranged_before_anything_runs(tmp_path, setting, needle):
    r = invoke("reproduce", "--native", "--sockets", "1", "--set", setting, "--results-dir", str(tmp_path),
               timeout=scaled(120))
    one_line_error(r, needle)
    assert list(tmp_path.iterdir()) == []


# ------------------------------------------------------------------------------------------------ secrets
def test_secret_names_and_url_credentials_never_reach_a_record():
    env = {"TF_VAR_db_pass": "hunter2", "XEONTL_API_TOKEN": "t", "OMPI_MCA_x": "https://user:hunter2@host/p",
           "KMP_AFFINITY": "compact", "MY_SESSION": "s", "HOME": "/root"}
    got = provenance.redact_env(env)
    assert got["values"]["TF_VAR_db_pass"] == redact.REDACTED and got["values"]["MY_SESSION"] == redact.REDACTED
    assert got["values"]["OMPI_MCA_x"] == "https://<redacted>@host/p" and got["values"]["KMP_AFFINITY"] == "compact"
    assert "hunter2" not in json.dumps(got) and got["other_names"] == ["HOME"]


# ------------------------------------------------------------------------------------------------ the weights' hash
def test_weights_are_held_to_their_first_seen_hash(tmp_path, monkeypatch):
    from xeontl.experiment import config

    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path / "state"))
    weights = tmp_path / "w.h5"
    weights.write_bytes(b"weights v1")
    cfg = config.resolve("paper", {"weights": f"keras:{weights}"})
    first = assets.pin_weights(cfg)
    assert first["status"].startswith("first use") and Path(first["store"]).is_file()
    assert assets.pin_weights(cfg)["status"] == "the hash of its first use"
    weights.write_bytes(b"weights swapped")
    with pytest.raises(UserError, match="not the .* they had at their first use"):
        assets.pin_weights(cfg)
    pinned = config.resolve("paper", {"weights": f"keras:{weights}", "weights_sha256": assets.sha256_file(weights)})
    assert assets.pin_weights(pinned)["status"].startswith("pinned by the config")


# ------------------------------------------------------------------------------------------------ what users made
@pytest.mark.slow
def test_train_output_takes_back_only_what_it_added(tmp_path):
    """An existing --output: one holding a file this run would write (mllog.txt) is refused before anything is
    touched; one holding the user's own logs/ has a check that fails once the run has started writing (a batch
    larger than the data) take back what the run added, nothing of theirs."""
    out = tmp_path / "mine"
    (out / "logs").mkdir(parents=True)
    (out / "logs" / "notes.txt").write_text("mine")
    (out / "mllog.txt").write_text("mine too")
    train = [sys.executable, "-m", "xeontl", "train", "--profile", "smoke", "--batch-size", "10000", "--output"]
    r = subprocess.run([*train, str(out)], capture_output=True, text=True, timeout=scaled(300), cwd=ROOT)
    one_line_error(r, "already holds mllog.txt, which this run would write")
    assert (out / "mllog.txt").read_text() == "mine too"
    (out / "mllog.txt").unlink()
    r = subprocess.run([*train, str(out)], capture_output=True, text=True, timeout=scaled(300), cwd=ROOT)
    one_line_error(r, "is larger than this worker's shard")
    assert (out / "logs" / "notes.txt").read_text() == "mine"
    assert sorted(p.name for p in out.rglob("*")) == ["logs", "notes.txt"]


def test_report_refuses_a_committed_reference():
    ref = ROOT / "results" / "reference" / "20261130-233112-demo-2s-dd8d"
    before = {p: p.read_bytes() for p in ref.iterdir() if p.is_file()}
    one_line_error(invoke("report", "--runs", str(ref)), "is a committed reference run")
    assert {p: p.read_bytes() for p in ref.iterdir() if p.is_file()} == before


# ------------------------------------------------------------------------------------------------ runs that go wrong
@pytest.mark.slow
@ROOT_ONLY
def test_a_disk_that_fills_during_a_run_is_one_line_and_the_run_dir_is_kept_failed(tmp_path):
    """The results dir's disk (a 256 MiB tmpfs) filled by another process once training runs: the run stops, one
    line, its dir kept under its run id and marked failed, nothing left running."""
    results = tmp_path / "disk"
    results.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256m", "tmpfs", str(results)], check=True)
    try:
        proc = start([sys.executable, "-m", "invoke", "reproduce", "--native", "--sockets", "2", "--emulate-sockets",
                      "--profile", "smoke", "--set", "epochs=50", "--set", "patience=50", "--results-dir",
                      str(results)])
        log = wait_for(lambda: next(results.glob(".staging-*/logs/rank-0.log"), None), what="the ranks", proc=proc)
        wait_for(lambda: "epoch 1:" in log.read_text(errors="replace"), what="training", proc=proc)
        with open(results / "ballast", "wb") as f:  # another writer takes what is left
            try:
                while True:
                    f.write(b"\0" * (1 << 20))
                    f.flush()
            except OSError:
                pass
        out, _ = proc.communicate(timeout=scaled(600))
        assert proc.returncode == 1, out[-3000:]
        errors = [ln for ln in out.splitlines() if ln.startswith("xeontl: error:")]
        assert len(errors) == 1 and "writing the run failed (No space left on device" in errors[0], out[-3000:]
        assert "Traceback" not in out.split("xeontl: error:")[-1]
        (results / "ballast").unlink()
        run, = [d for d in results.iterdir() if d.is_dir()]
        assert not run.name.startswith(".staging-") and run.name in errors[0]
        assert json.loads((run / "metrics.json").read_text())["status"] == "failed"
        assert processes_naming(run.name) == []
    finally:
        subprocess.run(["umount", "-l", str(results)])


@pytest.mark.slow
def test_a_killed_launcher_leaves_no_rank_running(tmp_path):
    """SIGKILL to the launcher alone (not its group): its guardian stops the ranks, whose CPUs its lock no longer
    holds."""
    proc = start([sys.executable, "-m", "invoke", "reproduce", "--native", "--sockets", "2", "--emulate-sockets",
                  "--profile", "smoke", "--set", "epochs=50", "--set", "patience=50", "--results-dir", str(tmp_path)])
    staged = wait_for(lambda: next(tmp_path.glob(".staging-*/logs/rank-1.log"), None), what="the ranks start",
                      proc=proc)
    marker = staged.parents[1].name
    wait_for(lambda: "epoch 1:" in staged.read_text(errors="replace"), what="training", proc=proc)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    wait_for(lambda: not processes_naming(marker), timeout=scaled(60), what="the ranks gone after the launcher died")
    assert time.monotonic() - t0 < 60


def as_created(docker_run: list[str]) -> dict:
    """What the daemon should hold for the `docker run` line a launch record shows, in its inspect data's terms."""
    args, want = docker_run[2:], {"CapDrop": [], "CapAdd": [], "SecurityOpt": [], "Binds": [], "Env": []}
    keys = {"--cap-drop": "CapDrop", "--cap-add": "CapAdd", "--security-opt": "SecurityOpt", "-v": "Binds",
            "-e": "Env", "--name": "Name", "--user": "User"}
    while args[0].startswith("-"):
        flag, _, value = args.pop(0).partition("=")
        if flag == "--rm":
            continue
        if flag in keys:
            value = args.pop(0)
            want[keys[flag]] = [*want[keys[flag]], value] if isinstance(want.get(keys[flag]), list) else value
        else:
            want[{"--cpuset-cpus": "CpusetCpus", "--cpuset-mems": "CpusetMems", "--shm-size": "ShmSize",
                  "--pids-limit": "PidsLimit", "--memory": "Memory", "--memory-swap": "MemorySwap",
                  "--network": "NetworkMode"}[flag]] = value
    want["ShmSize"] = {"2g": 2 << 30}[want["ShmSize"]]
    want.update({k: int(want[k]) for k in ("PidsLimit", "Memory", "MemorySwap") if k in want})
    want["Image"], want["Cmd"] = args[0], args[1:]
    return want


@pytest.mark.slow
def test_a_killed_launcher_leaves_no_container_running(image, tmp_path):
    """The docker engine: the container the launch record shows is the one the daemon runs (made through the Docker
    SDK, compared field by field with the record's `docker run` line); the launcher SIGKILLed while it trains, the
    guardian removes it, so no run keeps cores that the released CPU lock calls free."""
    proc = start([sys.executable, "-m", "invoke", "reproduce", "--sockets", "2", "--emulate-sockets", "--profile",
                  "smoke", "--set", "epochs=50", "--set", "patience=50", "--results-dir", str(tmp_path)])
    try:
        killed_while_training(proc, tmp_path)
    finally:  # a failed check must not leave a 50-epoch run holding the CPUs the next tests plan for
        if proc.poll() is None:
            proc.send_signal(signal.SIGINT)
            proc.wait(timeout=scaled(120))


def killed_while_training(proc, tmp_path):
    import docker

    staged = wait_for(lambda: next(tmp_path.glob(".staging-*/logs/rank-1.log"), None), what="the ranks start",
                      proc=proc)
    wait_for(lambda: "epoch 1:" in staged.read_text(errors="replace"), what="training", proc=proc)
    name = "xeontl-" + staged.parents[1].name.removeprefix(".staging-")
    record = (staged.parents[1] / "command.txt").read_text().split("# on the host\n")[1].splitlines()[0]
    want = as_created(shlex.split(record))
    client = docker.from_env()
    c = client.api.inspect_container(name)
    host, config = c["HostConfig"], c["Config"]
    assert c["Name"] == "/" + want["Name"] and config["Image"] == want["Image"] and config["Cmd"] == want["Cmd"]
    assert config["User"] == want["User"] and set(want["Env"]) <= set(config["Env"])
    for key in ("CpusetCpus", "CpusetMems", "CapDrop", "CapAdd", "SecurityOpt", "ShmSize", "PidsLimit", "Memory",
                "MemorySwap", "NetworkMode"):
        assert host[key] == want[key], key
    assert sorted(host["Binds"]) == sorted(want["Binds"]) and "--privileged" not in record and not host["Privileged"]

    def present():
        return [x.name for x in client.containers.list(all=True, filters={"name": f"^{name}$"})]

    assert present() == [name]
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    t0 = time.monotonic()
    wait_for(lambda: not present(), timeout=scaled(60), what="the container removed after its launcher died")
    assert time.monotonic() - t0 < 60
