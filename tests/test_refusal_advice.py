"""A refusal is the first thing a command prints, and its advice is something the command that refused takes: no
"--stack" from commands without one (compose-env, smoke), no "--set" from a --resume (which refuses --set) or from
`python -m xeontl` (whose flag is --precision); compose-env's services run on this host, so its profile's precision is
held to this CPU; smoke makes its temp dir only once nothing refuses."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from invoke import Context
from invoke.exceptions import Exit
from test_stacks import ZEN1, _image, invoke, played

from conftest import run, scaled, tasks_module
from xeontl.common.errors import UserError
from xeontl.launch import launch, options

TASKS = tasks_module()


def refusal(task, tmp_path, **kwargs) -> str:
    with pytest.raises(Exit) as got:
        getattr(TASKS, task).body(Context(), **kwargs)
    assert got.value.code == 2, got.value.message
    msg = str(got.value.message)
    assert "\n" not in msg and msg.startswith("xeontl: error: "), msg
    return msg


# (what, task, its arguments, words the line has, words it must not have)
TASK_REFUSALS = [
    ("compose-env --profile paper: its containers run here, at bf16", "compose_env", {"profile": "paper"},
     ["precision bf16", "no oneDNN BF16 kernels", "--profile demo"], ["--set", "--stack"]),
    ("compose-env --image xeontl:paper: compose-env has no --stack", "compose_env", {"image": "xeontl:paper"},
     ["--image xeontl:paper", "drop --image"], ["give --stack", "--stack default"]),
    ("smoke --image xeontl:paper: smoke has no --stack", "smoke", {"image": "xeontl:paper"},
     ["lacks AVX-512 (avx512f)", "--image xeontl:latest"], ["--stack default", "give --stack"]),
]


@pytest.mark.parametrize("what,task,kwargs,has,hasnt", TASK_REFUSALS, ids=[c[0] for c in TASK_REFUSALS])
def test_a_task_refuses_with_advice_it_takes(what, task, kwargs, has, hasnt, tmp_path, monkeypatch):
    import tempfile

    from xeontl.supply import stacks

    played(tmp_path, monkeypatch, ZEN1, real=False)
    monkeypatch.setattr(stacks, "REAL_CPUINFO", str(tmp_path / "cpuinfo"))  # this host a Zen 1, whatever it is
    _image(monkeypatch, None)  # no image here: the run would name it
    monkeypatch.setattr(launch, "execute", lambda job: pytest.fail("the run started"))
    monkeypatch.setattr(launch, "reproduce", lambda opts: pytest.fail("the run started"))
    temp = tmp_path / "temp"
    temp.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(temp))
    out = tmp_path / "env"
    extra = {"output": str(out), "results_dir": str(tmp_path / "res")} if task == "compose_env" else {}
    msg = refusal(task, tmp_path, **kwargs, **extra)
    assert all(w in msg for w in has) and not any(w in msg for w in hasnt), msg
    assert not out.exists() and list(temp.iterdir()) == []  # nothing written, no smoke dir made


def test_repeats_refuse_before_their_first_line(tmp_path, monkeypatch):
    env = {**played(tmp_path, monkeypatch, ZEN1), "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock",
           "XEONTL_CACHE_DIR": str(tmp_path / "cache")}
    r = invoke("reproduce", "--profile", "demo", "--set", "precision=bf16", "--repeats", "3", "--emulate-sockets",
               "--results-dir", str(tmp_path / "results"), env=env)
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    assert r.stderr.startswith("xeontl: error: precision bf16: "), r.stderr


def bf16_run(tmp_path, monkeypatch) -> Path:
    from xeontl.common import records
    from xeontl.experiment import checkpoint, config
    from xeontl.launch import rundir

    dead = tmp_path / "dead"
    dead.mkdir()
    (dead / "config.json").write_text("{}")
    monkeypatch.setattr(rundir, "read_metrics", lambda r: {"status": "failed"})
    monkeypatch.setattr(checkpoint, "latest", lambda r: Path("epoch-0003"))
    monkeypatch.setattr(config, "load", lambda p: {**config.resolve("demo"), "precision": "bf16"})
    monkeypatch.setattr(records, "read_record", lambda p, kind: {"sockets": 2, "emulate_sockets": True})
    return dead


def test_resuming_a_bf16_run_refuses_first_and_advises_what_a_resume_can_do(tmp_path, monkeypatch, capsys):
    played(tmp_path, monkeypatch, ZEN1)
    _image(monkeypatch, None)
    dead = bf16_run(tmp_path, monkeypatch)
    with pytest.raises(UserError) as got:
        launch.prepare(options.Options(resume=dead, results_dir=tmp_path / "results"))
    msg = str(got.value)
    assert capsys.readouterr().out == ""  # no "resuming ..." before the refusal
    assert msg.startswith(f"--resume {dead}: precision bf16: ") and "--set precision=fp32" not in msg, msg
    assert "a new run with --set precision=auto" in msg and "AVX-512 or AMX host" in msg, msg


@pytest.mark.parametrize("argv,flag", [(["reproduce", "--precision", "bf16", "--emulate-sockets", "--sockets", "2"],
                                        "--precision auto"),
                                       (["reproduce", "--profile", "paper", "--emulate-sockets", "--sockets", "2"],
                                        "--precision auto")])
def test_the_python_cli_advises_its_own_flag(argv, flag, tmp_path, monkeypatch):
    env = {**played(tmp_path, monkeypatch, ZEN1), "XEONTL_CACHE_DIR": str(tmp_path / "cache"),
           "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock"}
    r = run([sys.executable, "-m", "xeontl", *argv, "--results-dir", str(tmp_path / "results")], env=env,
            timeout=scaled(120))
    assert r.returncode == 2, r.stdout + r.stderr
    line, = [ln for ln in r.stderr.splitlines() if "precision bf16" in ln]
    assert flag in line and "--set" not in line, line
