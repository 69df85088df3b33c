"""Faults on 2 ranks, natively and in the container: a killed worker stops the run fast and is named; Ctrl-C aborts
cleanly. Time-bounded: a hang fails the test."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import ROOT, have_horovod
from xeontl import events

pytestmark = pytest.mark.slow


@pytest.fixture(params=["native", pytest.param("docker", marks=pytest.mark.docker)])
def mode(request):
    if request.param == "native" and not have_horovod():
        pytest.skip("native Horovod not installed (invoke setup --native)")
    if request.param == "docker":
        request.getfixturevalue("image")  # built, or skipped (a failure under XEONTL_REQUIRE_IMAGE=1)
    return request.param


def start_run(results: Path, mode: str) -> subprocess.Popen:
    # Enough epochs that the run is still training when we strike.
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", "reproduce", "--sockets", "2", "--emulate-sockets", "--profile", "smoke",
         *(["--native"] if mode == "native" else []), "--set", "epochs=200", "--set", "patience=200",
         "--results-dir", str(results)],
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def wait_for_training(results: Path, timeout=300) -> Path:
    deadline = time.time() + timeout
    while time.time() < deadline:
        for log in results.glob(".staging-*/logs/rank-1.log"):
            if "epoch 1:" in log.read_text():
                return log.parents[1]
        time.sleep(1)
    raise AssertionError("training never started")


def rank_pid(rank: int) -> int:
    """The python process of MPI rank `rank` (found by its environment, not by guessing; a container's processes are
    in the host's /proc too)."""
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmd = (proc / "cmdline").read_bytes().split(b"\0")
            env = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"xeontl" in cmd and b"train" in cmd and f"OMPI_COMM_WORLD_RANK={rank}".encode() in env:
            return int(proc.name)
    raise AssertionError(f"no process for rank {rank}")


def finished_run(results: Path) -> Path:
    runs = [p for p in results.iterdir() if p.is_dir() and not p.name.startswith(".")]
    assert len(runs) == 1, list(results.iterdir())
    return runs[0]


def test_killed_rank_stops_the_run_within_60s_and_is_recorded(tmp_path, mode):
    proc = start_run(tmp_path, mode)
    try:
        wait_for_training(tmp_path)
        os.kill(rank_pid(1), signal.SIGKILL)
        t0 = time.time()
        out, _ = proc.communicate(timeout=180)  # includes the report
        assert proc.returncode == 1, out[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    run = finished_run(tmp_path)
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["status"] == "failed"
    assert metrics["failure"]["rank"] == 1 and metrics["failure"]["signal"] == 9, metrics["failure"]
    log = events.read(run / events.FILE)
    assert log[-1]["key"] == "run_stop" and log[-1]["metadata"]["status"] == "failed"
    stopped = log[-1]["time_ms"] / 1000
    assert stopped - t0 < 60, "the surviving rank hung"
    assert (run / "logs" / "rank-0.log").exists() and (run / "logs" / "rank-1.log").exists()
    assert json.loads((run / "provenance.json").read_text())["status"] == "failed"


def test_ctrl_c_aborts_with_130_and_keeps_a_record(tmp_path, mode):
    proc = start_run(tmp_path, mode)
    try:
        wait_for_training(tmp_path)
        proc.send_signal(signal.SIGINT)
        out, _ = proc.communicate(timeout=180)
        assert proc.returncode == 130, out[-2000:]
    finally:
        if proc.poll() is None:
            proc.kill()
    run = finished_run(tmp_path)
    assert json.loads((run / "metrics.json").read_text())["status"] == "aborted"
    assert json.loads((run / "provenance.json").read_text())["status"] == "aborted"
    assert events.last_status(run / events.FILE) == "aborted"
    time.sleep(2)
    if mode == "native":
        leftover = subprocess.run(["pgrep", "-f", f"xeontl train.*{tmp_path}"], capture_output=True, text=True).stdout
    else:
        leftover = subprocess.run(["docker", "ps", "-q", "--filter", f"name=xeontl-{run.name}"],
                                  capture_output=True, text=True).stdout
    assert not leftover.strip(), "ranks (or their container) still running after Ctrl-C"
