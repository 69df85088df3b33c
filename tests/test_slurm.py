"""The Slurm engine: the sbatch script rendered from the plan, and real jobs on a real Slurm cluster of two emulated
nodes on this machine (scripts/slurm-test-cluster.sh: munge, slurmctld, two slurmd), in the image via Charliecloud."""

import json
import os
import re
import shlex
import shutil
import subprocess
import sys

import pytest

from conftest import (
    SPR,
    ctrl_c,
    invoke,
    one_line_error,
    only_run,
    processes_naming,
    run,
    scaled,
    staged_epoch,
    start,
    tasks_module,
    wait_for,
)
from xeontl.experiment import events
from xeontl.records import claims, ranks

HAVE_SLURM = all(shutil.which(t) for t in ("slurmctld", "slurmd", "sbatch", "munged", "ch-run"))


def script_of(dry_run_stdout: str) -> str:
    return dry_run_stdout[dry_run_stdout.index("#!/bin/bash"):]


# ---------------------------------------------------------------------------------------------- rendering
def test_dry_run_prints_the_sbatch_script_for_the_papers_nodes():
    r = invoke("reproduce", "--engine", "slurm", "--nodes", "2", "--sockets", "2", "--profile", "paper",
               "--topology", str(SPR), "--partition", "spr", "--time-limit", "00:30:00", "--dry-run",
                   timeout=scaled(120))
    assert r.returncode == 0, r.stderr
    script = script_of(r.stdout)
    for line in ("#SBATCH --nodes=2", "#SBATCH --ntasks-per-node=2", "#SBATCH --cpus-per-task=112",
                 "#SBATCH --exclusive", "#SBATCH --partition=spr", "#SBATCH --time=00:30:00",
                 "export SRUN_CPUS_PER_TASK=112", "export KMP_AFFINITY=granularity=fine,compact,1,0",
                 "export OMPI_MCA_mpi_yield_when_idle=1", "export XEONTL_HEARTBEAT=1",
                 # emulated nodes (one machine): TCP over lo only (a DOWN container bridge's address hung the ranks)
                 "  export OMPI_MCA_btl_tcp_if_include=lo"):
        assert line in script.splitlines(), line
    train = next(x for x in script.splitlines() if x.startswith("srun --mpi=pmix"))
    cmd = shlex.split(train)
    assert "--cpu-bind=none" in cmd and "--ntasks-per-node=2" in cmd and "--kill-on-bad-exit=1" in cmd
    wrapper = cmd[cmd.index("xeontl-ch") - 1] + cmd[cmd.index("xeontl-rank") - 1]
    assert "ch-run --set-env" in wrapper and "$SLURM_LOCALID" in wrapper
    # the paper's pinning, per socket, by position in each node's cpuset; each rank its own threads
    assert "0) exec env OMP_NUM_THREADS=54 numactl -C +0-55,112-167 -m +0" in wrapper
    assert "1) exec env OMP_NUM_THREADS=54 numactl -C +56-111,168-223 -m +1" in wrapper
    assert "--intra-threads 54 --inter-threads 56" in wrapper and "--config /results/config.json" in wrapper
    assert "xeontl probe" not in script  # rank 0 writes probe.json itself: no second step after the training
    assert subprocess.run(["bash", "-n"], input=script, text=True).returncode == 0  # valid bash


def test_without_a_container_the_nodes_stack_runs_the_run_dir_directly():
    r = invoke("reproduce", "--engine", "slurm", "--nodes", "1", "--sockets", "1", "--container", "none",
               "--topology", str(SPR), "--dry-run", "--results-dir", "/shared/results", timeout=scaled(120))
    assert r.returncode == 0, r.stderr
    script = script_of(r.stdout)
    assert "ch-run" not in script and "--mpi=pmix" not in script  # one rank: the paper's plain 1-socket run
    assert re.search(r"numactl -C \+0-55,112-167 -m \+0 python -m xeontl train --config "
                     r"/shared/results/\.staging-\S+/config\.json", script)


@pytest.mark.parametrize("pmix_dir,image_has,bound", [
    ("/var/spool/slurmd/n1/pmix.7.0", ["var/spool"], "/var/spool"),  # Slurm's default spool: its nearest parent
    ("/tmp/slurmd/pmix.7.0", ["tmp"], "/tmp"),
    ("/var/spool/slurmd/pmix.7.0", ["var/spool/slurmd/pmix.7.0"], "/var/spool/slurmd/pmix.7.0"),  # there already
])
def test_the_pmix_directory_appears_in_the_image_at_its_own_path(tmp_path, pmix_dir, image_has, bound):
    """The rank's PMIx client reads host paths from its environment: what ch-run binds must keep them valid."""
    from xeontl.engines import slurm

    img = tmp_path / "img"
    for d in image_has:
        (img / d).mkdir(parents=True)
    stub = tmp_path / "bin"
    stub.mkdir()
    (stub / "ch-run").write_text('#!/bin/sh\nprintf "%s\\n" "$@"\n')
    (stub / "ch-run").chmod(0o755)
    enter = slurm.slurm_enter(slurm.SlurmJob("/shared/run", "j", image_dir=str(img)))
    r = subprocess.run([*enter, "python", "-m", "xeontl"], capture_output=True, text=True, timeout=scaled(60),
                       env={"PATH": f"{stub}:/usr/bin:/bin", "PMIX_SERVER_TMPDIR": pmix_dir})
    assert r.returncode == 0, r.stderr
    args = r.stdout.splitlines()
    binds = [args[i + 1] for i, a in enumerate(args) if a == "-b"]
    assert binds == ["/shared/run:/results", bound], args
    assert args[args.index("--") - 1] == str(img) and args[args.index("--") + 1:] == ["python", "-m", "xeontl"]
    without = subprocess.run([*enter, "true"], capture_output=True, text=True, timeout=scaled(60),
                             env={"PATH": f"{stub}:/usr/bin:/bin"})
    binds = [a for a in without.stdout.splitlines() if a.startswith("/") and a != str(img)]
    assert without.returncode == 0 and binds == ["/shared/run:/results"]  # no PMIx (one rank): nothing more bound


def test_a_pmix_directory_with_no_parent_in_the_image_is_one_line(tmp_path):
    from xeontl.engines import slurm

    (tmp_path / "img").mkdir()
    enter = slurm.slurm_enter(slurm.SlurmJob("/shared/run", "j", image_dir=str(tmp_path / "img")))
    r = subprocess.run([*enter, "true"], capture_output=True, text=True, timeout=scaled(60),
                       env={"PATH": "/usr/bin:/bin", "PMIX_SERVER_TMPDIR": "/scratch/pmix.1.0"})
    assert r.returncode == 1 and r.stderr.count("\n") == 1 and r.stderr.startswith("xeontl: error: PMIx directory")


@pytest.mark.parametrize("args,needle", [
    (["--engine", "nomad"], "--engine nomad: must be local, slurm or k8s"),
    (["--engine", "slurm", "--container", "docker", "--topology", str(SPR)], "--container 'docker'"),
    (["--engine", "slurm", "--nodes", "0", "--topology", str(SPR)], "--nodes 0"),
    # options the chosen engine cannot honour: refused, not silently ignored
    (["--nodes", "2"], "--nodes: only with --engine slurm"),
    (["--container", "none", "--partition", "spr"], "--partition, --container: only with --engine slurm"),
    (["--time-limit", "00:10:00"], "--time-limit: only with --engine slurm"),
    (["--engine", "slurm", "--native", "--topology", str(SPR)], "--native: not with --engine slurm"),
    (["--engine", "slurm", "--hosts", "a:2,b:2", "--topology", str(SPR)], "--hosts: not with --engine slurm"),
])
def test_bad_engine_input_is_one_line(tmp_path, args, needle):
    one_line_error(invoke("reproduce", "--dry-run", "--results-dir", str(tmp_path / "r"), *args,
                          timeout=scaled(120)), needle)
    assert not (tmp_path / "r").exists()


# issue 39 audit: the image was unpacked with a plain `tar -x -C`, which as root keeps the image's owners and its setuid
# and setgid bits: a setuid file of the image's became one on the login node.
def test_the_image_unpack_keeps_no_owner_and_no_set_id_bit():
    from xeontl.engines import slurm

    cmd = slurm.unpack_command(__import__("pathlib").Path("/x/dest"), euid=1000)
    assert cmd[:2] == ["tar", "-x"] and cmd[-2:] == ["-C", "/x/dest"]
    for option in ("--no-same-owner", "--no-same-permissions", "--no-xattrs", "--no-acls"):
        assert option in cmd, (option, cmd)
    assert not {"-p", "--same-owner", "--same-permissions", "--preserve-permissions", "--xattrs", "--acls"} & set(cmd)


def test_a_setuid_file_in_the_image_unpacks_without_its_set_id_bits(tmp_path, monkeypatch):
    """Through slurm.unpack with a real tar (the daemon's export replaced by a crafted one): a 4755 file, a 2755 file
    and a 1777 dir owned by uid 1234 come out owned by the unpacking user, with no set-id bit, and nothing group- or
    world-writable, even with TAR_OPTIONS asking tar to keep them (as root the old command kept all of it)."""
    import io
    import stat
    import tarfile

    from xeontl.engines import slurm
    from xeontl.supply import dockerapi

    def export(image, out):
        with tarfile.open(fileobj=out, mode="w|") as t:
            for name, mode, kind in (("bin/su", 0o4755, tarfile.REGTYPE), ("bin/sg", 0o2755, tarfile.REGTYPE),
                                     ("tmp", 0o1777, tarfile.DIRTYPE), ("share", 0o2777, tarfile.DIRTYPE),
                                     ("share/w", 0o666, tarfile.REGTYPE)):
                m = tarfile.TarInfo(name)
                m.type, m.mode, m.uid, m.gid, m.uname, m.gname = kind, mode, 1234, 1234, "", ""
                body = b"x" if kind == tarfile.REGTYPE else b""
                m.size = len(body)
                t.addfile(m, io.BytesIO(body) if body else None)

    monkeypatch.setattr(dockerapi, "export_image", export)
    monkeypatch.setenv("TAR_OPTIONS", "--same-owner --same-permissions --xattrs")
    dest = tmp_path / "image"
    dest.mkdir()
    slurm.unpack("xeontl:test", {"Config": {"Env": ["A=1"]}}, dest)
    for name in ("bin/su", "bin/sg", "tmp", "share", "share/w"):
        st = os.lstat(dest / name)
        assert st.st_mode & (stat.S_ISUID | stat.S_ISGID | stat.S_ISVTX) == 0, (name, oct(st.st_mode))
        assert st.st_mode & 0o022 == 0, (name, oct(st.st_mode))
        assert (st.st_uid, st.st_gid) == (os.geteuid(), os.getegid()), name
    assert (dest / "ch" / "environment").read_text() == "A=1\n"


def test_the_image_unpack_as_root_holds_no_mknod_and_a_device_node_is_refused(tmp_path, monkeypatch):
    """The adversary's second round: as root, tar made the image's device nodes (`c 1 1`, root's, 0644) on the login
    node. Root's tar runs without CAP_MKNOD (setpriv); /dev's entries are left out (the real image has debootstrap's,
    which a user's tar could not make either); a device node elsewhere is one line, nothing kept."""
    import io
    import tarfile

    from xeontl.engines import slurm
    from xeontl.supply import dockerapi

    assert slurm.unpack_command(tmp_path, euid=0)[:3] == list(slurm.DROP_MKNOD)
    assert slurm.unpack_command(tmp_path, euid=1000)[0] == "tar"
    if os.geteuid() != 0:
        pytest.skip("the device node's refusal needs root (a user's tar cannot make one either)")

    def exporting(where):
        def export(image, out):
            with tarfile.open(fileobj=out, mode="w|") as t:
                ok = tarfile.TarInfo("bin/ok")
                ok.size = 1
                t.addfile(ok, io.BytesIO(b"x"))
                for name in ("dev/null", where):  # debootstrap's /dev (as the image has it), and WHERE
                    dev = tarfile.TarInfo(name)
                    dev.type, dev.devmajor, dev.devminor, dev.mode = tarfile.CHRTYPE, 1, 1, 0o644
                    t.addfile(dev)
        return export

    monkeypatch.setattr(dockerapi, "export_image", exporting("opt/mem"))
    dest = tmp_path / "image"
    dest.mkdir()
    with pytest.raises(slurm.UserError, match=r"holds device nodes \(.*opt/mem"):
        slurm.unpack("xeontl:test", {"Config": {"Env": []}}, dest)
    assert not (dest / "opt" / "mem").exists()
    # /dev's own nodes are left out (ch-run binds the host's), the rest unpacks
    monkeypatch.setattr(dockerapi, "export_image", exporting("dev/mem"))
    dest = tmp_path / "image2"
    dest.mkdir()
    slurm.unpack("xeontl:test", {"Config": {"Env": []}}, dest)
    assert (dest / "bin" / "ok").is_file() and not any((dest / "dev").iterdir() if (dest / "dev").exists() else [])


# issue 39 audit: the results dir reaches `#SBATCH --output=<run dir>/logs-launcher.txt`, and only white space and %
# were refused: a quote (sbatch's own quoting), a backslash (Slurm's file name escapes), a `#` and the rest reached the
# script. Deny by default: only SBATCH_PATH's characters. Each refused in one line naming it, exit 2, nothing written.
TASKS = tasks_module()
SBATCH_UNSAFE = ['"', "'", "`", "$", "\\", "%", "#", ";", "&", "|", "<", ">", "(", ")", "*", "?", "[", "]", "!", "{",
                 "}", "~", "^", " ", "\t", "\x1b", "\x7f", "é", "\u00a0", "\u2028", "\u202e"]


@pytest.mark.parametrize("char", SBATCH_UNSAFE, ids=[repr(c) for c in SBATCH_UNSAFE])
def test_a_results_dir_unsafe_in_an_sbatch_line_is_refused_naming_the_character(tmp_path, capsys, char):
    """As `invoke reproduce --engine slurm --dry-run --results-dir DIR` runs it (the task's body, in-process)."""
    from invoke import Exit

    with pytest.raises(Exit) as e:
        TASKS._reproduce(None, engine="slurm", nodes="2", sockets="2", topology=str(SPR), dry_run=True,
                         results_dir=str(tmp_path / f"res{char}ults"))
    line = e.value.message
    assert e.value.code == 2 and line.startswith("xeontl: error: --results-dir ") and "\n" not in line, line
    assert f"character {char!r}" in line or "control character" in line, line
    assert "#SBATCH" not in capsys.readouterr().out and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("path", ["/srv/runs/a-b_c.d/x+y,z=1@host:2", "/"])
def test_a_results_dir_of_safe_characters_reaches_the_sbatch_line(path):
    from xeontl.engines import slurm

    assert slurm.sbatch_path(path, "--results-dir") == path


@pytest.mark.parametrize("char", SBATCH_UNSAFE, ids=[repr(c) for c in SBATCH_UNSAFE])
def test_the_sbatch_renderer_refuses_an_unchecked_run_dir(char):
    """The second guard: slurm_script itself asserts its run dir is one sbatch_path allows."""
    from xeontl.engines import slurm
    from xeontl.placement import plan as planlib
    from xeontl.placement import topology

    plan = planlib.make_plan(topology.load_file(SPR), 2)
    with pytest.raises(AssertionError, match="unchecked script values"):
        slurm.slurm_script(plan, slurm.SlurmJob(f"/r/run{char}x", "xeontl-x"), lambda w: [])


def test_without_slurm_tools_says_so(tmp_path):
    r = invoke("reproduce", "--engine", "slurm", "--nodes", "2", "--sockets", "1", "--results-dir", str(tmp_path),
               timeout=scaled(120), env={"PATH": os.path.dirname(sys.executable)})
    one_line_error(r, "sinfo is not on PATH")


# ---------------------------------------------------------------------------------------------- following a job
# What `scontrol show job` says at each poll (None: scontrol does not know the job), and how the run must end. The
# clock moves POLL seconds a poll; "beats" polls of RUNNING touch a heartbeat first (the ranks progressing).
# (name, polls, env, beats, status, words); the last poll repeats.
R, P = ("RUNNING", "None"), ("PENDING", "Resources")
FOLLOW_CASES = [
    ("queued then done", [P, R, ("COMPLETED", "None")], {}, 0, "success", "completed"),
    ("held by the admin", [("PENDING", "JobHeldAdmin")], {}, 0, "failed", "JobHeldAdmin"),
    ("partition down", [("PENDING", "PartitionDown")], {}, 0, "failed", "PartitionDown"),
    ("requeued and held", [("PENDING", "launch_failed_requeued_held")], {}, 0, "failed", "no wait resolves"),
    ("a QOS per-job limit", [("PENDING", "QOSMaxNodePerJobLimit")], {}, 0, "failed", "QOSMaxNodePerJobLimit"),
    ("requeue-held after a run", [R, ("REQUEUE_HOLD", "None")], {}, 0, "failed", "requeue_hold for a reason"),
    ("no first step", [R], {"XEONTL_FIRST_BEAT_SECONDS": "30"}, 0, "failed", "no rank made its first step in 30 s"),
    ("progress, then none", [R], {"XEONTL_STALL_SECONDS": "30"}, 20, "failed", "no rank progressed for 30 s"),
    ("waits for resources", [P] * 100 + [("COMPLETED", "None")], {"XEONTL_FIRST_BEAT_SECONDS": "30"}, 0,
     "success", "completed"),
    # a run that is requeued, or suspended, is not watched while it waits: its beats start over when it runs again
    ("requeued to the queue after a run", [R] * 10 + [("PENDING", "BeginTime")] * 100 + [("COMPLETED", "None")],
     {"XEONTL_STALL_SECONDS": "30"}, 10, "success", "completed"),
    ("suspended a long time", [R] * 10 + [("SUSPENDED", "None")] * 100 + [("COMPLETED", "None")],
     {"XEONTL_STALL_SECONDS": "30"}, 10, "success", "completed"),
    ("stopped is not the end", [R] * 3 + [("STOPPED", "None")] * 3 + [("COMPLETED", "None")], {}, 0,
     "success", "completed"),
    ("a controller's timeout, once", [None, P, R, ("COMPLETED", "None")], {}, 0, "success", "completed"),
    ("a job scontrol forgot", [P, None], {}, 0, "failed", "did not know the job for 30 polls"),
]
POLL = 2.0


@pytest.mark.parametrize("name,polls,env,beats,status,words", FOLLOW_CASES, ids=[c[0] for c in FOLLOW_CASES])
def test_following_a_job_ends_it_when_no_wait_can(monkeypatch, tmp_path, capsys, name, polls, env, beats, status,
                                                  words):
    """A held job, one the partition or a per-job limit cannot run, one scontrol forgot, or a running job no rank
    advances: cancelled and failed in one line (never a launcher polling forever); a job queued, requeued or
    suspended is waited for."""
    import time as timemod

    from xeontl.engines import slurm

    clock = {"now": 2_000_000_000.0}
    monkeypatch.setattr(timemod, "time", lambda: clock["now"])
    monkeypatch.setattr(slurm.time, "sleep", lambda s: clock.update(now=clock["now"] + POLL))
    script, cancelled, running = iter(polls), [], [0]
    info = {}
    (tmp_path / "heartbeat").mkdir()

    def job_info(job_id):
        if cancelled:
            return {**info, "JobState": "CANCELLED"}
        poll = next(script, polls[-1])
        if poll is None:
            return {}
        info.update(JobState=poll[0], Reason=poll[1], ExitCode="0:0", NodeList="n[1-2]")
        if poll == R:
            running[0] += 1
            if running[0] <= beats:
                beat = tmp_path / "heartbeat" / "rank-0"
                beat.touch()
                os.utime(beat, (clock["now"], clock["now"]))
        return dict(info)

    monkeypatch.setattr(slurm, "job_info", job_info)
    monkeypatch.setattr(slurm.subprocess, "run", lambda cmd, **kw: cancelled.append(cmd))
    for k, v in env.items():
        monkeypatch.setenv(k, v)
    ended, seen = slurm.follow("7", tmp_path, 2)
    out = capsys.readouterr().out
    assert (ended.status or "success") == status and (ended.rc == 0) == (status == "success") and words in out, out
    assert bool(cancelled) == (status == "failed") and all(c == ["scancel", "7"] for c in cancelled)
    assert (seen.get("stopped") is not None) == (status == "failed")
    assert len(out.splitlines()) < 12, out  # a line a change, not a line a poll


@pytest.mark.parametrize("value", ["10m", "nan", "inf", "-5", "0", ""])
def test_a_bad_progress_bound_is_one_line_before_anything_is_submitted(value):
    r = invoke("reproduce", "--engine", "slurm", "--nodes", "2", "--sockets", "1", "--topology", str(SPR),
               "--dry-run", env={"XEONTL_STALL_SECONDS": value})
    one_line_error(r, "XEONTL_STALL_SECONDS", "seconds > 0")


def test_scontrols_fields_are_whole_words(monkeypatch):
    """`scontrol show job -o`: a field's value can hold "X=Y" (a WorkDir, a Comment): the job's own field wins."""
    from xeontl.engines import slurm

    # a job name with a space holds "JobState=..." before the real field (first wins), and a later value holds one
    line = ("JobId=7 JobName=a b/JobState=COMPLETED UserId=root(0) JobState=PENDING Reason=Resources "
            "WorkDir=/home/a/JobState=COMPLETED Comment=see_JobState=RUNNING\n")
    monkeypatch.setattr(slurm.subprocess, "run", lambda cmd, **kw: subprocess.CompletedProcess(cmd, 0, line, ""))
    info = slurm.job_info("7")
    assert info["JobState"] == "PENDING" and info["Reason"] == "Resources"


# ---------------------------------------------------------------------------------------------- a real cluster
@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    if not HAVE_SLURM:
        if os.environ.get("XEONTL_REQUIRE_SLURM") == "1":
            pytest.fail("Slurm/munge/Charliecloud not installed: run scripts/setup-host.sh --slurm")
        pytest.skip("Slurm test cluster needs slurm-wlm, munge and charliecloud (scripts/setup-host.sh --slurm)")
    d = tmp_path_factory.mktemp("slurm")
    up = run(["bash", "scripts/slurm-test-cluster.sh", "start", str(d)], timeout=scaled(180))
    assert up.returncode == 0, up.stdout + up.stderr
    env = {"SLURM_CONF": str(d / "slurm.conf")}
    yield env
    run(["bash", "scripts/slurm-test-cluster.sh", "stop", str(d)], timeout=scaled(120))


@pytest.mark.slow
def test_two_nodes_one_socket_each_in_the_image(cluster, image, tmp_path):
    """The issue's command, through the real sbatch: each rank on its own node and CPU, a complete run dir."""
    r = invoke("reproduce", "--engine", "slurm", "--nodes", "2", "--sockets", "1", "--profile", "smoke",
               "--results-dir", str(tmp_path), env=cluster, timeout=scaled(1200))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    assert re.search(r"slurm job \d+: running on n\[1-2\]", r.stdout)
    run_dir = only_run(tmp_path)
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["status"] == "success" and m["workers"] == 2
    prov = json.loads((run_dir / "provenance.json").read_text())
    ex = prov["execution"]
    assert ex["mode"] == "slurm" and ex["slurm"]["job_id"].isdigit() and ex["slurm"]["node_list"] == "n[1-2]"
    assert ex["slurm"]["container"]["runtime"] == "charliecloud" and ex["slurm"]["slurm_version"].startswith("slurm")
    assert "share one hostname" in ex["slurm"]["emulated_nodes"]
    placed = sorted((a["node"], a["cpus"]) for a in ex["per_rank_affinity"])
    assert placed == [("n1", "0"), ("n2", "1")]  # each rank on its own node and CPU
    # ... and each rank recorded what its own node's step cgroup allowed its shell before numactl (n1 reserves CPU 1
    # and n2 CPU 0: position 0 is each node's own CPU), by which the report judges it healthy, not by rank 0's node's
    assert sorted((r["node"], r["allowed_cpus"]) for r in m["ranks"]) == [("n1", "0"), ("n2", "1")], m["ranks"]
    assert ranks.health(claims.load_run(run_dir)) == [], ranks.health(claims.load_run(run_dir))
    # the probe ran in the job, inside the image under ch-run (not on the login host, not in Docker)
    assert ex["inside"]["container_runtime"] == "charliecloud" and ex["inside"]["in_container"] is True
    assert prov["math_path"]["isas_dispatched"]
    for f in ("job.sbatch", "command.txt", "config.json", "plan.json", "report.md", events.FILE, "logs/rank-0.log",
              "logs/rank-1.log"):
        assert (run_dir / f).exists(), f
    assert events.last_status(run_dir / events.FILE) == "success"
    assert events.check(run_dir / events.FILE) == []


@pytest.mark.slow
def test_a_failing_rank_fails_the_job_and_the_run(cluster, image, tmp_path):
    r = invoke("reproduce", "--engine", "slurm", "--nodes", "2", "--sockets", "1", "--profile", "smoke",
               "--set", "epochs=3", "--fault-after-epoch", "1", "--results-dir", str(tmp_path), env=cluster,
               timeout=scaled(1200))
    assert r.returncode == 1, (r.stdout + r.stderr)[-3000:]
    run_dir = only_run(tmp_path)
    m = json.loads((run_dir / "metrics.json").read_text())
    assert m["status"] == "failed" and m["failure"]["rank"] == 1 and m["failure"]["signal"] == 9, m.get("failure")
    prov = json.loads((run_dir / "provenance.json").read_text())
    assert prov["status"] == "failed" and prov["execution"]["slurm"]["state"] == "FAILED"
    assert (run_dir / "checkpoints" / "epoch-0001").is_dir()  # resumable


@pytest.mark.slow
def test_scancel_ends_the_run_as_aborted_with_the_run_dir_kept(cluster, image, tmp_path):
    proc = start([sys.executable, "-m", "invoke", "reproduce", "--engine", "slurm", "--nodes", "2", "--sockets", "1",
                  "--profile", "smoke", "--set", "epochs=200", "--set", "patience=200", "--results-dir", str(tmp_path)],
                 env=cluster)

    def training_job():
        if staged_epoch(tmp_path, 1, rank=0):
            return re.search(r"job (\d+) on", next(tmp_path.glob(".staging-*/logs-launcher.txt")).read_text())[1]
        return None
    try:
        job = wait_for(training_job, timeout=scaled(900), what="the job training", proc=proc)
        subprocess.run(["scancel", job], env={**os.environ, **cluster}, check=True)
        out, _ = proc.communicate(timeout=scaled(300))
        assert proc.returncode == 130, out[-2000:]
    finally:
        if proc.poll() is None:
            ctrl_c(proc)
            proc.wait(timeout=scaled(120))
    run_dir = only_run(tmp_path)
    assert json.loads((run_dir / "metrics.json").read_text())["status"] == "aborted"
    assert json.loads((run_dir / "provenance.json").read_text())["execution"]["slurm"]["state"] == "CANCELLED"
    squeue = subprocess.run(["squeue", "-h", "-j", job], env={**os.environ, **cluster}, capture_output=True, text=True)
    assert not squeue.stdout.strip()
    # the ranks and their ch-run name the run dir on their command lines
    wait_for(lambda: not processes_naming(run_dir.name), timeout=scaled(120), what="the ranks ending after scancel")
