"""The product's pure rules, checked in the fast tier (a change to any of them fails here in seconds, not only in a
training run): the LR rule, steps per epoch, secret redaction, container detection, compose's env file."""

import pytest

from conftest import invoke, one_line_error
from xeontl.common.errors import UserError
from xeontl.engines import compose
from xeontl.experiment import config
from xeontl.launch import options
from xeontl.records import provenance


def test_the_lr_grows_linearly_with_the_workers():
    from xeontl.experiment.train import scaled_learning_rate

    paper = config.resolve("paper")
    printed = " (the paper profile's 'printed' reading)"
    assert scaled_learning_rate(paper, 1) == (0.001, "linear: 0.001 x 1 workers" + printed)
    lr, rule = scaled_learning_rate(paper, 2)
    # the paper's rule, base x workers, from the reading its printed 0.002 and Intel's kit agree on
    assert lr == pytest.approx(0.002) and rule == "linear: 0.001 x 2 workers" + printed
    stated = config.resolve("paper", {"learning_rate": 0.01})  # the other reading, one flag away
    assert scaled_learning_rate(stated, 2) == (0.02, "linear: 0.01 x 2 workers (the paper profile's 'stated' reading)")
    assert scaled_learning_rate({**paper, "lr_scaling": "none"}, 2)[0] == 0.001
    other = config.resolve("paper", {"learning_rate": 0.5})
    assert scaled_learning_rate(other, 2)[1] == "linear: 0.5 x 2 workers"  # no reading of the paper's


def test_steps_per_epoch_is_the_shard_over_the_batch_capped_by_the_config():
    from xeontl.experiment.train import steps_per_epoch

    cfg = config.resolve("paper")
    assert steps_per_epoch(cfg, 2000) == 62  # a 2-socket run's half of 4000 training images, batch 32
    assert steps_per_epoch({**cfg, "steps_per_epoch": 3}, 2000) == 3
    with pytest.raises(UserError, match="larger than this worker's shard"):
        steps_per_epoch(cfg, 31)


def test_secrets_in_the_environment_are_redacted_and_the_rest_named():
    env = {"AWS_SECRET_ACCESS_KEY": "s1", "GITHUB_TOKEN": "s2", "DB_PASSWORD": "s3", "KMP_AFFINITY": "compact",
           "OMP_NUM_THREADS": "56", "HOME": "/home/u", "SSH_AUTH_SOCK": "/tmp/agent", "MY_PRIVATE_THING": "s4"}
    got = provenance.redact_env(env)
    for k in ("AWS_SECRET_ACCESS_KEY", "GITHUB_TOKEN", "DB_PASSWORD", "SSH_AUTH_SOCK", "MY_PRIVATE_THING"):
        assert got["values"][k] == provenance.REDACTED, k
    assert got["values"]["KMP_AFFINITY"] == "compact" and got["values"]["OMP_NUM_THREADS"] == "56"
    assert "HOME" in got["other_names"] and "HOME" not in got["values"]  # named, value not recorded
    assert not {"s1", "s2", "s3", "s4", "/home/u"} & set(map(str, got["values"].values()))


@pytest.mark.parametrize("marks,expected", [
    ({"CH_RUNNING": "Weird Al Yankovic"}, "charliecloud"),  # what ch-run sets in every process it starts
    ({"KUBERNETES_SERVICE_HOST": "10.0.0.1"}, "kubernetes"),
    ({}, None),
])
def test_the_container_runtime_is_named_by_its_own_mark(monkeypatch, marks, expected):
    for k in ("CH_RUNNING", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(k, raising=False)
    for k, v in marks.items():
        monkeypatch.setenv(k, v)
    monkeypatch.setattr(provenance, "_read", lambda path: "")  # no docker cgroup
    real_exists = provenance.Path.exists
    monkeypatch.setattr(provenance.Path, "exists",
                        lambda self: False if str(self) in ("/.dockerenv", "/run/.containerenv") else real_exists(self))
    assert provenance.container_runtime() == expected
    assert provenance.execution_inside()["in_container"] is (expected is not None)


def test_compose_env_writes_where_told_and_never_over_a_users_own_file(tmp_path):
    out = tmp_path / "compose.env"
    env = {"XEONTL_IMAGE": "xeontl:latest", "XEONTL_CPUSET_2S": "0-1"}
    text = compose.write_env(out, env)
    assert text == "XEONTL_IMAGE=xeontl:latest\nXEONTL_CPUSET_2S=0-1\n"
    assert out.read_text() == compose.COMPOSE_ENV_HEADER + text
    compose.write_env(out, {**env, "XEONTL_CPUSET_2S": "0"})  # its own file: rewritten
    assert out.read_text().endswith("XEONTL_CPUSET_2S=0\n")
    mine = tmp_path / ".env"
    mine.write_text("MY_SETTING=1\n")
    with pytest.raises(UserError, match="not written by invoke compose-env"):
        compose.write_env(mine, env)
    assert mine.read_text() == "MY_SETTING=1\n" and sorted(p.name for p in tmp_path.iterdir()) == [".env",
                                                                                                   "compose.env"]


def test_compose_env_task_refuses_a_users_env_in_one_line(tmp_path):
    mine = tmp_path / "user.env"
    mine.write_text("MINE=1\n")
    one_line_error(invoke("compose-env", "--results-dir", str(tmp_path / "r"), "--output", str(mine)),
                   "not written by invoke compose-env")
    assert mine.read_text() == "MINE=1\n"


@pytest.mark.parametrize("rc,trainer,status,exit_code", [
    (0, "success", "success", 0),
    (0, None, "failed", 1),          # exited 0 but the trainer never wrote its metrics
    (1, "success", "failed", 1),     # a rank failed after rank 0 wrote success: the launch's exit wins
    (137, None, "failed", 1),
    (130, "aborted", "aborted", 130),
])
def test_one_mapping_from_an_exit_to_a_status_and_back(rc, trainer, status, exit_code):
    from xeontl.launch import outcome

    assert outcome.status(rc, trainer) == status and outcome.exit_code(status) == exit_code


@pytest.mark.parametrize("state,status", [("COMPLETED", None), ("CANCELLED", "aborted"), ("FAILED", "failed"),
                                          ("TIMEOUT", "failed"), ("NODE_FAIL", "failed"), ("OUT_OF_MEMORY", "failed")])
def test_slurm_job_states_as_statuses(state, status):
    from xeontl.launch import outcome

    assert outcome.from_slurm(state) == status  # COMPLETED: the trainer's own metrics decide


# mpirun's own words when a worker pod is lost (from a run of the MPIJob under tests/mpijob_harness.py)
LOST = """ORTE has lost communication with a remote daemon.

  HNP daemon   : [[47550,0],0] on node xeontl-j-launcher
  Remote daemon: [[47550,0],2] on node xeontl-j-worker-1.xeontl-j.default.svc

This is usually due to either a failure of the TCP network
"""


# ... and when mpirun sees the loss while its ssh session to the daemon ends (another run, same kill)
LOST_SSH = """Connection to xeontl-j-worker-1.xeontl-j.default.svc closed by remote host.
--------------------------------------------------------------------------
ORTE was unable to reliably start one or more daemons.
This usually is caused by:
...
  Local host: xeontl-j-worker-0
  Local PID:  18
  Peer host:  xeontl-j-worker-1.xeontl-j.default.svc
"""


@pytest.mark.parametrize("log", [LOST, LOST_SSH, LOST_SSH.split("\n", 2)[2]])
def test_a_lost_worker_pod_is_named_with_the_ranks_it_ran(log):
    from xeontl.engines.mpijob_launcher import lost_node

    hostfile = "".join(f"xeontl-j-worker-{i}.xeontl-j.default.svc slots=2\n" for i in range(3))
    assert lost_node(log, hostfile) == {"node": "xeontl-j-worker-1.xeontl-j.default.svc", "rank": 2,
                                        "ranks": [2, 3]}
    assert lost_node("mpirun: a process exited with status 1", hostfile) is None


def test_the_launcher_pod_refuses_to_reuse_a_run_dir(tmp_path):
    from xeontl.engines import mpijob_launcher

    (tmp_path / "r1").mkdir()
    (tmp_path / "r1" / "metrics.json").write_text("{}")
    # a concluded run dir is never reused: the launcher Job's retry concludes into r1-attempt-2 (r1 kept whole)
    assert mpijob_launcher.attempt_dir(tmp_path, "r1") == (tmp_path / "r1-attempt-2", 2)
    with pytest.raises(UserError, match="lacks config.json, plan.json"):  # nothing staged before the records check
        mpijob_launcher.launch_pod("r1", tmp_path, tmp_path, ["true"])
    with pytest.raises(UserError, match="after --"):
        mpijob_launcher.launch_pod("r2", tmp_path, tmp_path, [])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r1"]
    assert (tmp_path / "r1" / "metrics.json").read_text() == "{}"


def test_every_launch_option_says_what_resume_does_with_it():
    """launch.json and --resume are derived from the options' own declarations (a new option cannot be forgotten)."""
    import dataclasses

    assert all(f.metadata.get("resume") in ("keep", "anew", "no") for f in dataclasses.fields(options.Options))
    # the continuation is the same launch: sockets, pinning, controller, engine and its placement
    assert set(options.RESUME_KEYS) == {"sockets", "emulate_sockets", "cores_per_socket", "controller", "hosts",
                                       "extra_env", "engine", "nodes", "partition", "container", "time_limit", "stack"}
    # recorded but may be given anew; never recorded: the config (config.json) and per-invocation choices
    assert set(options.LAUNCH_KEYS) - set(options.RESUME_KEYS) == {"profile", "native", "image"}
    assert not {"overrides", "dry_run", "results_dir", "resume", "wait", "fault_after_epoch"} & set(options.LAUNCH_KEYS)
