import functools
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# As an activated venv would: the tests' own Python environment (.venv/bin: horovodrun, invoke) first on PATH.
os.environ["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
TOPOLOGIES = Path(__file__).parent / "topologies"
SPR = TOPOLOGIES / "spr-8480-2s-ht.lscpu"


def run(cmd, timeout=None, env=None, **kw):
    """A subprocess with a hard time limit (default 600 s on the reference machine, scaled): a hang fails the test
    instead of blocking CI."""
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout or scaled(600), cwd=kw.pop("cwd", ROOT),
                          env={**os.environ, **(env or {})}, **kw)


def invoke(*args, timeout=None, env=None):
    return run([sys.executable, "-m", "invoke", *args], timeout=timeout, env=env)


def tasks_module():
    """tasks.py loaded in-process: a task's body (and its guard: `xeontl: error: ...`, invoke.Exit's code) without the
    seconds a `python -m invoke` process costs."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("tasks_in_process", ROOT / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    return tasks


def render_in_process(*args) -> subprocess.CompletedProcess:
    """`invoke render ARGS` (each --flag VALUE; --set repeatable) run as the task's body in this process: what it
    printed, as the command's result. Only for renders that succeed: a refusal raises invoke.Exit (the CLI's own
    one-line errors are tested through `invoke`)."""
    import contextlib
    import io

    import invoke as invoke_lib

    kwargs: dict = {}
    pairs = iter(args)
    for flag in pairs:
        assert flag.startswith("--"), flag
        key, value = flag[2:].replace("-", "_"), str(next(pairs))
        if key == "set":
            kwargs.setdefault("set", []).append(value)
        else:
            kwargs[key] = value
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        _tasks().render(invoke_lib.Context(), **kwargs)
    return subprocess.CompletedProcess(["invoke", "render", *args], 0, out.getvalue(), "")


@functools.lru_cache(maxsize=1)
def _tasks():
    return tasks_module()


def start(cmd, sigint="default", env=None, **kw) -> subprocess.Popen:
    """A launcher started as a terminal starts a foreground job: its own process group, SIGINT at its default (a
    job started with `&` by a non-interactive shell, e.g. `nohup bash .ci/run &`, inherits SIGINT *ignored*, and so
    would every child that did not reset it). sigint="ignore" starts it the way `nohup`/`&` do."""
    disposition = signal.SIG_IGN if sigint == "ignore" else signal.SIG_DFL

    def child():
        os.setpgid(0, 0)
        signal.signal(signal.SIGINT, disposition)

    return subprocess.Popen(cmd, cwd=kw.pop("cwd", ROOT), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            env={**os.environ, **(env or {})}, preexec_fn=child, **kw)


def ctrl_c(proc: subprocess.Popen) -> None:
    """What a terminal's Ctrl-C does: SIGINT to every process of the foreground process group."""
    os.killpg(proc.pid, signal.SIGINT)


def ignores_sigint(pid: int) -> bool:
    """The process's SIGINT disposition is 'ignored' (its SigIgn mask in /proc, as `nohup` leaves it)."""
    mask = next(ln for ln in Path(f"/proc/{pid}/status").read_text().splitlines() if ln.startswith("SigIgn:"))
    return bool(int(mask.split()[1], 16) >> (signal.SIGINT - 1) & 1)


def wait_for(predicate, timeout=None, what="the condition", proc: subprocess.Popen | None = None, every=0.5):
    """Poll until predicate() is truthy (returned); fail after `timeout` s (default scaled(600)), or at once if `proc`
    ended first. A generous ceiling for a loaded machine, never a statement about speed."""
    timeout = timeout or scaled(600)
    deadline = time.monotonic() + timeout
    while True:
        got = predicate()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read() if proc.stdout else ""
            raise AssertionError(f"the process ended (exit {proc.returncode}) before {what}: {out[-2000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {timeout} s")
        time.sleep(every)


def staged_epoch(results: Path, epoch: int, rank: int = 1):
    """The staging run dir once `rank` has logged epoch `epoch` (training is under way), else None."""
    for log in results.glob(f".staging-*/logs/rank-{rank}.log"):
        if f"epoch {epoch}:" in log.read_text(errors="replace"):
            return log.parents[1]
    return None


def rank_pid(rank: int, marker: str) -> int:
    """The training process of MPI rank `rank` whose command line names `marker` (its run dir; a container's
    processes are in the host's process table too), found by its environment."""
    import psutil

    want = str(rank)
    for proc in psutil.process_iter(["cmdline"]):
        try:
            cmd = proc.info["cmdline"] or []
            if "train" in cmd and any(marker in a for a in cmd) and \
                    proc.environ().get("OMPI_COMM_WORLD_RANK") == want:
                return proc.pid
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
    raise AssertionError(f"no process for rank {rank} of {marker}")


def processes_naming(marker: str) -> list[str]:
    """Command lines of live processes that name `marker` (a run dir or id): what a clean stop leaves none of."""
    import psutil

    found = []
    for proc in psutil.process_iter(["cmdline", "status"]):
        cmd = proc.info["cmdline"] or []
        if proc.info["status"] != psutil.STATUS_ZOMBIE and any(marker in a for a in cmd) and proc.pid != os.getpid():
            found.append(" ".join(cmd))
    return found


def runs_in(results: Path) -> list[Path]:
    return sorted(p for p in results.iterdir() if p.is_dir() and not p.name.startswith("."))


def only_run(results: Path, status: str | None = None) -> Path:
    """The one finished run dir under results (of that status, if given)."""
    found = [r for r in runs_in(results)
             if status is None or json.loads((r / "metrics.json").read_text())["status"] == status]
    assert len(found) == 1, [(r.name, json.loads((r / "metrics.json").read_text()).get("status")) for r in
                             runs_in(results)]
    return found[0]


def load(run_dir: Path, name: str) -> dict:
    return json.loads((run_dir / name).read_text())


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


@pytest.fixture(scope="session")
def paper_image():
    """The paper stack's image (xeontl:paper), which `invoke test` builds first where this CPU runs it; None on a CPU
    that cannot run it (no AVX-512: the stack and its build are refused there). Missing: the test skips, or fails
    under XEONTL_REQUIRE_IMAGE=1 (CI)."""
    from xeontl.supply.stacks import STACKS, cpu_lacks

    paper = STACKS["paper"]
    if cpu_lacks(paper):
        return None
    if not image_ok(paper.tag):
        if os.environ.get("XEONTL_REQUIRE_IMAGE") == "1":
            pytest.fail(f"{paper.tag} is not built: run `invoke build --offline --stack paper` before the tests")
        pytest.skip(f"{paper.tag} not built (invoke build --offline --stack paper)")
    return paper.tag


@pytest.fixture(scope="session")
def compose():
    """The Compose CLI this host has: v2's `docker compose` plugin or v1's `docker-compose` (both read compose.yaml
    alike). Missing, the compose tests skip, and fail under XEONTL_REQUIRE_IMAGE=1 (CI)."""
    if docker_ok() and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose"):
        return ["docker-compose"]
    if os.environ.get("XEONTL_REQUIRE_IMAGE") == "1":
        pytest.fail("neither `docker compose` (v2) nor docker-compose (v1) is installed")
    pytest.skip("no Compose CLI (docker compose v2 or docker-compose v1)")


def one_line_error(result, *needles):
    """A user mistake: non-zero exit, one 'xeontl: error:' line naming the problem, no traceback."""
    assert result.returncode != 0, result.stdout + result.stderr
    assert "Traceback" not in result.stderr + result.stdout, result.stderr
    errors = [ln for ln in result.stderr.splitlines() if ln.startswith("xeontl: error:")]
    assert len(errors) == 1, result.stderr
    for n in needles:
        assert n in errors[0], errors[0]
    return errors[0]


def pytest_collection_modifyitems(config, items):
    """Every test that uses the built image is a `docker` test (the fast tier, `-m "not slow and not docker"`,
    leaves them out), whether it says so itself or not."""
    for item in items:
        if "image" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.docker)


def pytest_collection_finish(session):
    """Once the selection is known (-m, -k, node ids): this machine's speed, measured once (machine_speed: the
    training step only where a selected test can train, a `slow` or `docker` one), and every selected test's time
    limit (pytest-timeout: its own mark, else pyproject's) scaled to it (scaled()); --timeout or $PYTEST_TIMEOUT,
    given, replace pyproject's unscaled (scaled_timeout()). Before any test runs, so none can play another CPU."""
    global PROBE_TRAINING
    PROBE_TRAINING = not session.config.option.collectonly and any(
        item.get_closest_marker(m) for item in session.items for m in ("slow", "docker"))
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    if reporter:  # where the header would have said it: the speed is measured only now
        reporter.write_line(speed_line(machine_speed()))
    scale_timeouts(session.config, session.items)


def scale_timeouts(config, items) -> None:
    if config.pluginmanager.hasplugin("timeout"):
        given = config.getoption("timeout")
        given = given if given is not None else os.environ.get("PYTEST_TIMEOUT") or None
        for item in items:
            mark = scaled_timeout(item.get_closest_marker("timeout"), config.getini("timeout"), given)
            if mark:
                item.add_marker(mark, append=False)


def scaled_timeout(own, ini, given):
    """The timeout mark a test gets (None: leave it as it is), as pytest-timeout ranks them: the test's own mark
    (args and kwargs kept, the number scaled), else --timeout or $PYTEST_TIMEOUT (GIVEN: the user's, as given), else
    pyproject's (INI, scaled)."""
    if own is not None:
        args, kwargs = list(own.args), dict(own.kwargs)
        if "timeout" in kwargs:
            kwargs["timeout"] = scaled(float(kwargs["timeout"])) if kwargs["timeout"] else kwargs["timeout"]
        elif args and args[0]:
            args[0] = scaled(float(args[0]))
        return pytest.mark.timeout(*args, **kwargs)
    if given is not None or not ini:
        return None
    return pytest.mark.timeout(scaled(float(ini)))


# ------------------------------------------------------------------------------------------ the CPU and its speed
def cpu_has(want: str) -> bool:
    """WANT is a CPU flag, or alternatives "a|b" (any one), of this CPU as the code reads it (xeontl.supply.stacks:
    a CPU played with XEONTL_TEST_CPUINFO too)."""
    from xeontl.supply.stacks import run_cpu

    return any(f in run_cpu()["flags"] for f in want.split("|"))  # a played CPU: never a flag this one lacks


@pytest.hookimpl(tryfirst=True)  # before the test's fixtures are set up
def pytest_runtest_setup(item):
    """@pytest.mark.needs_cpu("avx512f", why="..."): on a CPU that lacks a flag named, the test skips, naming it."""
    for mark in item.iter_markers("needs_cpu"):
        missing = [w for w in mark.args if not cpu_has(w)]
        if missing:
            pytest.skip(f"needs a CPU with {' and '.join(missing)}, which this one lacks"
                        + (f": {mark.kwargs['why']}" if mark.kwargs.get("why") else ""))


# The suite's time bounds were set on the reference machine below: scaled() makes them this machine's, measured:
# - how fast it trains: tests/speed_probe.py times the demo's own calibration step (its model, batch and precision
#   here, one thread, as each quick-start rank) against the reference's committed value (the same function's, in
#   its quick-start runs' metrics.json). It sees what no flag tells: a Xeon VM with AMX hidden has AVX512-BF16 and
#   trains 3-4.6x slower than with AMX; a Zen 5 with the same flags is faster than the reference. Run where the
#   session can train (TensorFlow importable, a slow or docker test selected: the fast tier trains nothing);
# - how fast it runs Python: a pure-Python loop in WALL-clock, best of 9 (no BLAS: numpy's OpenBLAS needs
#   OPENBLAS_CORETYPE on some CPUs, which this workplace's environment sets and tests must never change);
# - fewer CPUs than the reference's 2 (affinity, or a cgroup quota in /sys/fs/cgroup/cpu.max): reference / these.
# Both measures see load and CPU quotas as training would. Factor: the larger of training and loop, times the CPUs.
# Where the step cannot be measured (no TensorFlow, no selected test trains, the probe failed), the vector ISA is
# modelled instead, times the loop:
# - no BF16 arithmetic (no amx_bf16/avx512_bf16): precision auto trains fp32, the reference's bf16/fp32 epoch speedup
#   slower (2.64, results/reference/bench-20261130-231143);
# - no avx512f (AVX2 only): an AVX2-only Zen 1 trained the demo in fp32 in 787 s (issue 37), the AMX reference the
#   same demo in bf16 in 81 s (results/reference/20261130-233112-demo-2s-dd8d, metrics.json train_seconds 80.7):
#   787 / 81 = 9.7 in all, 2.64 of it the bf16 factor above, so AVX-512 -> AVX2 is 9.7 / 2.64 = 3.7.
# The reference's loop: 0.022 s, the best of 14 runs x 9 measures on 2026-12-06 (0.0223-0.0589 s) with the machine
# loaded (load average 7.5-19 on 2 vCPUs: 7 engineers and an image build). Its step: 0.112 s, the lowest calibration
# of its six quick-start runs (results/reference/20261206-03*-demo-2s-*, 0.112-0.129 s). Load makes a reference
# slower, which would make every other machine look faster (less time): the lowest seen is taken; a machine near the
# reference's speed may get up to that difference less time than exact (the bounds' own slack covers it).
SPEED_REFERENCE = {"loop_s": 0.022, "step_s": 0.112, "bf16_epoch_speedup": 2.64,
                   "avx2_vs_avx512": round(787 / 81 / 2.64, 2), "cpus": 2,
                   "machine": "Intel Xeon (family 6 model 207, AMX), 2 vCPUs under KVM; step from "
                              "results/reference/20261206-03*-demo-2s-*, bf16 speedup from "
                              "results/reference/bench-20261130-231143"}
FAILED_PROBE = 8.0  # a loop that could not be timed counts as this much slower: generous, never 1
PROBE_TRAINING = True  # pytest_collection_finish: whether a selected test can train (slow or docker)


def _loop_s(n: int = 200_000, tries: int = 9) -> float:
    def once():
        t = time.perf_counter()
        s = 0
        for i in range(n):
            s += i * i
        return time.perf_counter() - t
    return min(once() for _ in range(tries))


def cgroup_cpus(text: str | None) -> float | None:
    """The CPUs a cgroup v2 cpu.max ("QUOTA PERIOD", "max PERIOD") allows; None: no quota (or unreadable)."""
    try:
        quota, period = (text or "").split()[:2]
        return None if quota == "max" else int(quota) / int(period)
    except ValueError:
        return None


def speed_factor(loop_s, flags, cpus: float, step_s: float | None = None, ref: dict = SPEED_REFERENCE) -> dict:
    """How much slower than the reference this machine trains (at least 1), and its parts: the measured training
    step where there is one (STEP_S), else the vector ISA modelled from FLAGS."""
    from xeontl.experiment.runtime import bf16_native

    loop = max(1.0, loop_s / ref["loop_s"]) if loop_s else FAILED_PROBE
    cpus_part = max(1.0, ref["cpus"] / cpus) if cpus > 0 else float(ref["cpus"])
    if step_s:
        train = max(1.0, step_s / ref["step_s"])
        return {"factor": max(loop, train) * cpus_part, "parts": {"loop": loop, "train": train, "cpus": cpus_part}}
    parts = {"loop": loop, "bf16": 1.0 if bf16_native(flags) else ref["bf16_epoch_speedup"],
             "avx2": 1.0 if "avx512f" in flags else ref["avx2_vs_avx512"], "cpus": cpus_part}
    factor = 1.0
    for v in parts.values():
        factor *= v
    return {"factor": factor, "parts": parts}


def train_step_s(bound: float) -> tuple[float | None, str | None]:
    """tests/speed_probe.py's step seconds with this Python (None and why, where it cannot run), within BOUND s.
    The real CPU's: XEONTL_TEST_CPUINFO is not passed on; ONEDNN_MAX_CPU_ISA is (training sees it)."""
    import importlib.util

    if importlib.util.find_spec("tensorflow") is None:
        return None, "no TensorFlow in this Python (invoke setup --native)"
    env = {k: v for k, v in os.environ.items() if k != "XEONTL_TEST_CPUINFO"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT / "src"), env.get("PYTHONPATH")]))
    env.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    env["OMP_NUM_THREADS"] = "1"  # one thread, as each quick-start rank (and the reference's calibration) ran
    try:
        r = subprocess.run([sys.executable, str(ROOT / "tests" / "speed_probe.py")], capture_output=True, text=True,
                           timeout=bound, env=env, cwd=ROOT)
        return float(json.loads(r.stdout.strip().splitlines()[-1])["seconds_per_step"]), None
    except Exception as e:  # noqa: BLE001 - any failure: the modelled factor, and why in the header
        tail = (getattr(e, "stderr", None) or "").strip().splitlines()[-1:] or [repr(e)]
        return None, f"the step probe failed: {tail[0][:200]}"


def measure_speed(probe_training: bool | None = None) -> dict:
    """This machine against SPEED_REFERENCE: the REAL CPU's flags (/proc/cpuinfo, never a CPU a test plays with
    XEONTL_TEST_CPUINFO), its CPUs (affinity and cgroup quota), the loop and (PROBE_TRAINING) the training step."""
    from xeontl.supply.stacks import cpu_fields

    flags = cpu_fields(path="/proc/cpuinfo")["flags"]
    try:
        quota = cgroup_cpus(Path("/sys/fs/cgroup/cpu.max").read_text())
    except OSError:
        quota = None
    cpus = min(len(os.sched_getaffinity(0)), quota or float("inf"))
    error = None
    try:
        loop_s = _loop_s()
    except Exception as e:  # noqa: BLE001 - any failure: the generous FAILED_PROBE
        loop_s, error = None, repr(e)
    step_s, step_error = None, "not measured: no selected test trains"
    if PROBE_TRAINING if probe_training is None else probe_training:
        # bounded by the modelled factor (a step of ~0.1-1 s, TensorFlow's import and a build: ~3-15 s where seen)
        step_s, step_error = train_step_s(bound=speed_factor(loop_s, flags, cpus)["factor"] * 30)
    return {"loop_s": loop_s, "step_s": step_s, "step_error": step_error, "cpus": cpus, "error": error,
            "reference": SPEED_REFERENCE, **speed_factor(loop_s, flags, cpus, step_s)}


@functools.cache
def machine_speed() -> dict:
    """measure_speed(), once per session (pytest_collection_finish): {"factor": how much slower, at least 1, ...}."""
    return measure_speed()


def scaled(seconds: float) -> float:
    """A bound of SECONDS on the reference machine, on this one: longer by how much slower it is, never shorter."""
    return round(seconds * machine_speed()["factor"])


@pytest.fixture(scope="session")
def speed():
    """This machine's speed against the reference machine (machine_speed())."""
    return machine_speed()


def speed_line(m: dict) -> str:
    parts = ", ".join(f"{k} x{v:.2f}" for k, v in m["parts"].items())
    loop = f"{m['loop_s']:.4f} s" if m["loop_s"] else f"not measured ({m['error']})"
    step = f"{m['step_s']:.3f} s" if m["step_s"] else f"modelled from the CPU's flags ({m['step_error']})"
    return (f"time bounds x{m['factor']:.2f} ({parts}): training step {step} vs {m['reference']['step_s']} s, loop "
            f"{loop} vs {m['reference']['loop_s']} s, {m['cpus']} CPUs, on the reference "
            f"({m['reference']['machine']})")


# ------------------------------------------------------------------------------------------------ shared runs
# One expensive run, many small tests asserting on it (each angle its own test, so a failure names what broke).
CANARY = "canary-9f3b2c-do-not-leak"
# Early stopping that fires deterministically: min_delta 10 means no epoch after the first counts as better, so the
# ranks stop together after epoch 1 + patience 1 = 2 epochs (the broadcast decision is what is tested).
EARLY_STOP = ["--set", "epochs=6", "--set", "patience=1", "--set", "min_delta=10"]


@pytest.fixture(scope="session")
def native_run(tmp_path_factory):
    """`invoke reproduce` natively, 2 Horovod ranks over MPI on 2 emulated sockets, smoke profile, stopping early
    after 2 epochs, with a secret in the launcher's environment: the run dir every native angle is checked on."""
    if not have_horovod():
        pytest.skip("native Horovod not installed (invoke setup --native)")
    results = tmp_path_factory.mktemp("native-run")
    r = invoke("reproduce", "--sockets", "2", "--emulate-sockets", "--profile", "smoke", "--native", *EARLY_STOP,
               "--results-dir", str(results), timeout=scaled(900), env={"XEONTL_TEST_API_TOKEN": CANARY})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    run_dir = only_run(results)
    return run_dir


# The single-process runs (no Horovod): uninterrupted, killed after epoch 2, resumed from it (test_train asserts
# the training angles, test_resume the resume angles).
SINGLE = [sys.executable, "-m", "xeontl", "train", "--profile", "smoke", "--epochs", "4", "--patience", "20",
          "--verbose", "0", "--synthetic-train", "320", "--synthetic-val", "160"]


@pytest.fixture(scope="session")
def single(tmp_path_factory):
    d = tmp_path_factory.mktemp("single")
    whole = run([*SINGLE, "--output", str(d / "whole")])
    assert whole.returncode == 0, whole.stderr[-2000:]
    killed = run([*SINGLE, "--output", str(d / "killed"), "--fault-after-epoch", "2"])
    assert killed.returncode == -9, killed.stderr[-2000:]
    resumed = run([*SINGLE, "--output", str(d / "resumed"), "--resume-from", str(d / "killed")])
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    return {"dir": d, "whole": d / "whole", "killed": d / "killed", "resumed": d / "resumed", "stdout": whole.stdout}


@pytest.fixture(scope="session")
def docker_runs(image, tmp_path_factory):
    """The image runs: 2 ranks in the container, rank 1 killed after epoch 2 (the fault reaches the ranks inside the
    container), then `invoke reproduce --resume` of it, again in the container: a failed run and a successful one,
    asserted by test_image (the container record) and test_resume (the continuation)."""
    from xeontl.launch import launch
    from xeontl.launch.options import Options

    results = tmp_path_factory.mktemp("docker-runs")
    opts = Options(sockets=2, emulate_sockets=True, profile="smoke", image=image, results_dir=results,
                          overrides={"epochs": "4", "patience": "20", "verbose": "0"}, fault_after_epoch=2)
    rc, dead = launch.execute(launch.prepare(opts))
    assert rc == 1, (dead / "logs-launcher.txt").read_text()[-2000:]
    r = invoke("reproduce", "--resume", str(dead), "--results-dir", str(results), timeout=scaled(900))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return {"dead": dead, "cont": only_run(results, "success"), "stdout": r.stdout}


# ------------------------------------------------------------------------------------------------ real runs' records
def _ranks_on_host(dest: Path, docs: dict) -> list[dict]:
    """The rank records (of DOCS' metrics.json, loaded into it) whose CPU is the host's: same model and boot."""
    from xeontl.records import ranks

    for name in ("metrics", "provenance"):
        docs.setdefault(name, json.loads((dest / f"{name}.json").read_text()))
    host = ranks.host_cpu({"provenance": docs["provenance"]}) or {}
    same = ranks.cpu_identity(host)
    return [r for r in docs["metrics"].get("ranks") or [] if r.get("cpu") and ranks.cpu_identity(r["cpu"]) == same]


def derive(src: Path, dest: Path, **changes) -> Path:
    """A copy of a run dir the code wrote, with some fields of its records changed: keys are dotted paths into them
    ("metrics.train_seconds", "provenance.host.cpu.flags_of_note.amx_bf16", "metrics.ranks.1.affinity"), a value of
    DELETE removes the field. Every record is then checked as its writer checks it (metrics.json and provenance.json
    against their schemas, config.json as the ranks load it), so a value the code cannot produce fails the test that
    wrote it: a verdict test never judges a record the code could not have written."""
    from xeontl.common import records
    from xeontl.experiment import config

    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("checkpoints", "logs", "*.png", "*.h5"))
    # another run: its own run id, as the code names a run's dir by it (a copy keeping its source's is the same run)
    name = dest.name.lower()
    if not re.fullmatch(r"[0-9]{8}-[0-9]{6}-[a-z0-9_-]+", name):
        source = json.loads((dest / "provenance.json").read_text())["run_id"]
        name = f"{source}-{re.sub(r'[^a-z0-9_-]+', '-', name)}"
    changes = {"provenance.run_id": name, **changes}
    docs = {}
    for path, value in changes.items():
        name, *keys = path.split(".")
        doc = docs.setdefault(name, json.loads((dest / f"{name}.json").read_text()))
        if path.startswith("provenance.host"):  # the CPU where the code records it: the host's, and its ranks'
            on_host = _ranks_on_host(dest, docs)
        at = doc
        for k in keys[:-1]:
            at = at[int(k)] if isinstance(at, list) else at.setdefault(k, {})
        last = int(keys[-1]) if isinstance(at, list) else keys[-1]
        if value is DELETE:
            del at[last]
        else:
            at[last] = value
        if path.startswith("provenance.host") and (host := docs["provenance"].get("host") or {}).get("cpu"):
            import verdict_corpus

            for r in on_host:  # a host's CPU edited is the CPU of every rank that ran on it (records/ranks.py)
                r["cpu"] = verdict_corpus.rank_cpu(host)
    for name, doc in docs.items():
        (dest / f"{name}.json").write_text(json.dumps(doc, indent=1))
    for name in ("metrics", "provenance"):  # the schemas the writers hold them to (rundir.validate_metrics,
        # provenance.validate), through the reader: a text found valid is not checked again when a verdict reads it
        records.read_record(dest / f"{name}.json", name)
    config.load(dest / "config.json")
    return dest


DELETE = object()
# A run as a CPU with BF16 arithmetic records its precision (what derived records of the paper's hardware need, on
# any machine the suite runs on)
AS_BF16 = {"metrics.precision": {"precision": "bf16", "mechanism": "grappler auto_mixed_precision_onednn_bfloat16"}}


@pytest.fixture(scope="session")
def paper_inputs(tmp_path_factory):
    """The paper's inputs' stand-ins (tests/paper_inputs.py): TF-Slim's ResNet50 v1.5 as a TF-Hub-shaped SavedModel,
    Keras' v1 weight file, and a TFDS colorectal_histology build of a Kather-layout archive (10 tiles per class); and a
    claims table whose [paper_data] pins are that build's (XEONTL_CLAIMS_TABLE)."""
    import paper_inputs as made

    if not have_horovod():
        pytest.skip("native TensorFlow/Horovod not installed (invoke setup --native)")
    d = tmp_path_factory.mktemp("paper-inputs")
    tfds = made.make("tfds", d / "data", "10")
    saved = made.make("savedmodel", d / "savedmodel")["path"]
    from xeontl.experiment import model as weights_digest  # the digest a run records as weights.sha256

    return {"savedmodel": saved,
            "keras_v1": made.make("keras_v1", d / "resnet50_v1.h5")["path"],
            "data_dir": tfds["data_dir"], "manual_dir": str(d / "data" / "manual"), "origin": tfds["origin"],
            "table": str(made.claims_table(d / "claims.toml", tfds["origin"],
                                           weights_digest.weights_sha256(Path(saved)))),
            # precision auto: BF16 where the CPU has BF16 arithmetic (the paper's), else fp32, which the verdict then
            # names ("ran fp32, not bf16"): emulated BF16 at 224 px took ~10x longer on an Ice Lake Xeon
            "sets": ["--set", f"data_dir={tfds['data_dir']}", "--set", f"manual_dir={d / 'data' / 'manual'}",
                     "--set", "precision=auto"]}


def bf16_native() -> bool:
    """This CPU has BF16 arithmetic (AMX or AVX512-BF16): precision auto runs the paper's BF16 here."""
    from xeontl.experiment import runtime
    from xeontl.records.provenance import cpuinfo

    return runtime.bf16_native(cpuinfo()["flags"])


@pytest.fixture(scope="session")
def paper_fixture(paper_inputs, tmp_path_factory):
    """`invoke paper` as a reviewer runs it, on the stand-ins: the paper profile's 1-socket and 2-socket runs (2
    emulated sockets, natively), judged with the stand-ins' claims table. Returns (claims dir, claims.json)."""
    results = tmp_path_factory.mktemp("paper-fixture")
    r = invoke("paper", "--native", "--emulate-sockets", "--set", f"weights=savedmodel:{paper_inputs['savedmodel']}",
               *paper_inputs["sets"], "--results-dir", str(results), timeout=scaled(2400),
               env={"XEONTL_CLAIMS_TABLE": paper_inputs["table"]})
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    out, = results.glob("paper-*-paper")
    return out, json.loads((out / "claims.json").read_text())


@pytest.fixture
def shared(monkeypatch):
    """A dir every user reaches (pytest's tmp dirs are root's alone), XEONTL_LOCK_DIR unset: the CPU locks' tests."""
    import tempfile

    from xeontl.launch import cpulock

    monkeypatch.delenv(cpulock.ENV, raising=False)
    d = Path(tempfile.mkdtemp(prefix="xeontl-locks-test-", dir="/tmp"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)
