"""Topology -> plan -> command lines, on recorded machines. Pure: no process is started."""

import shlex

import pytest

from conftest import SPR, TOPOLOGIES, invoke, one_line_error, scaled
from xeontl.common.errors import UserError
from xeontl.engines.docker import docker_command
from xeontl.engines.host import launch_command
from xeontl.placement import plan as planlib
from xeontl.placement import topology


def load(name):
    return topology.load_file(TOPOLOGIES / name)


# ---------------------------------------------------------------------------------------------- the paper's host
def test_spr_topology_read_from_file():
    t = topology.load_file(SPR)
    s = t.summary()
    assert (s["sockets"], s["cores_per_socket"], s["threads_per_core"]) == (2, [56, 56], 2)
    assert s["numa_nodes"] == {0: "0-55,112-167", 1: "56-111,168-223"}


def test_spr_one_socket_is_the_papers_command():
    p = planlib.make_plan(topology.load_file(SPR), 1)
    w, = p.workers
    assert shlex.join(w.numactl) == "numactl -C 0-55,112-167 -m 0"
    assert (w.intra, w.inter, w.env["OMP_NUM_THREADS"]) == (56, 56, "56")
    assert {k: p.env[k] for k in planlib.PAPER_KMP_ENV} == {
        "KMP_SETTINGS": "1", "KMP_BLOCKTIME": "1", "KMP_AFFINITY": "granularity=fine,compact,1,0"}
    cmd = launch_command(p, lambda w: planlib.train_args(w, "/r/config.json", "/r"))
    assert cmd[:7] == ["env", "OMP_NUM_THREADS=56", "numactl", "-C", "0-55,112-167", "-m", "0"]
    assert "horovodrun" not in cmd and cmd[cmd.index("--intra-threads") + 1] == "56"
    assert cmd[cmd.index("--inter-threads") + 1] == "56" and cmd[cmd.index("--config") + 1] == "/r/config.json"


def test_spr_two_sockets_is_the_papers_command():
    p = planlib.make_plan(topology.load_file(SPR), 2)
    assert [shlex.join(w.numactl) for w in p.workers] == ["numactl -C 0-55,112-167 -m 0",
                                                          "numactl -C 56-111,168-223 -m 1"]
    assert [w.intra for w in p.workers] == [54, 54] and [w.env["OMP_NUM_THREADS"] for w in p.workers] == ["54", "54"]
    line = shlex.join(launch_command(p, lambda w: planlib.train_args(w, "/r/config.json", "/r")))
    # horovodrun's own mpirun line, run directly (horovodrun spends ~6 s importing TensorFlow to check its MPI build)
    assert line.startswith("mpirun --allow-run-as-root --tag-output -np 2 -H localhost:2 -bind-to none -map-by slot "
                           "-mca pml ob1 -mca btl '^openib' -mca btl_tcp_if_include lo -x NCCL_SOCKET_IFNAME=lo sh -c")
    assert "numactl -C 0-55,112-167 -m 0" in line and "numactl -C 56-111,168-223 -m 1" in line
    assert "-bind-to none" in line  # MPI's own binding must not fight numactl
    assert not p.emulated


def test_rank_wrapper_picks_numactl_by_local_rank(tmp_path):
    """Run the generated per-rank wrapper with each local rank and see which numactl it would exec."""
    import subprocess

    p = planlib.make_plan(topology.load_file(SPR), 2)
    fake = tmp_path / "numactl"
    fake.write_text("#!/bin/sh\necho \"$@\"\n")
    fake.chmod(0o755)
    for rank, var in [(0, "OMPI_COMM_WORLD_LOCAL_RANK"), (1, "HOROVOD_LOCAL_RANK"), (1, "SLURM_LOCALID")]:
        out = subprocess.run(planlib.rank_wrapper(p, lambda w: ["x", str(w.rank)]), capture_output=True, text=True,
                             env={"PATH": f"{tmp_path}:/usr/bin:/bin", var: str(rank)})
        assert out.stdout.split() == ["-C", p.workers[rank].numactl[2], "-m", str(rank), "python", "-m", "xeontl",
                                      "x", str(rank)]


def test_the_rank_wrapper_hands_its_rank_what_its_own_shell_was_allowed(tmp_path):
    """plan.rank_wrapper reads its shell's Cpus_allowed_list and Mems_allowed_list (what numactl's '+' positions
    index) and the rank records them (provenance.rank_place) as its own only: through the wrapper's execs its PID is
    the shell's, while a value inherited from elsewhere (a stale export) names another PID and is not recorded. A
    one-rank plan of positions (--hosts HOST:1 --sockets 1) is wrapped too (the adversary's fourteenth round: it ran
    plain, its health always unknown)."""
    import json
    import os
    import subprocess
    import sys

    fake = tmp_path / "numactl"  # execs the rank (the same PID), which prints what it records
    fake.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import json; from xeontl.records import provenance; "
                    f"print(json.dumps(provenance.rank_place()))'\n")
    fake.chmod(0o755)
    cpu = min(os.sched_getaffinity(0))
    mems = next(ln.split()[1] for ln in open("/proc/self/status") if ln.startswith("Mems_allowed_list:"))
    stale = {"XEONTL_ALLOWED_CPUS": "0-999", "XEONTL_ALLOWED_MEMS": "0-9", "XEONTL_ALLOWED_PID": "1"}
    env = {**os.environ, "PATH": f"{tmp_path}:{os.environ['PATH']}", **stale}
    t = topology.load_file(SPR)
    one = planlib.make_plan(topology.Topology(t.cpus, frozenset({5}), "cpuset"), 1, hosts="a:1")
    assert one.workers[0].relative and not one.horovod
    two = planlib.make_plan(t, 2, hosts="a:2,b:2")
    for command in (launch_command(one, lambda w: []), planlib.rank_wrapper(two, lambda w: [])):
        out = subprocess.run(["taskset", "-c", str(cpu), *command], capture_output=True, text=True, check=True,
                             env={**env, "OMPI_COMM_WORLD_LOCAL_RANK": "1"})
        place = json.loads(out.stdout)
        assert (place["allowed_cpus"], place["allowed_mems"]) == (str(cpu), mems), (command, place)
    inherited = subprocess.run([str(fake)], capture_output=True, text=True, check=True, env=env)
    assert json.loads(inherited.stdout)["allowed_cpus"] is None  # no wrapper ran for this process


def test_the_memory_policy_is_what_numactl_set_and_nodes_unshown_are_unknown(tmp_path):
    """numactl -m sets the process's memory policy (get_mempolicy(2): placement.topology.memory_policy), never its
    Mems_allowed_list (the cpuset's); where the kernel shows no NUMA node a rank records none, not node 0."""
    import json
    import shutil
    import subprocess
    import sys

    probe = [sys.executable, "-c", "import json; from xeontl.placement import topology; "
                                   "print(json.dumps(topology.memory_policy()))"]
    assert json.loads(subprocess.run(probe, capture_output=True, text=True, check=True).stdout) == {
        "mode": "default", "nodes": None}
    if shutil.which("numactl"):
        bound = subprocess.run(["numactl", "-m", "0", *probe], capture_output=True, text=True, check=True)
        assert json.loads(bound.stdout) == {"mode": "bind", "nodes": "0"}
    (tmp_path / "cpu").mkdir()
    assert not topology.kernel_names_nodes(tmp_path)
    (tmp_path / "node" / "node0").mkdir(parents=True)
    assert topology.kernel_names_nodes(tmp_path)


def test_a_ranks_cpus_are_its_threads_not_the_one_an_openmp_region_bound():
    """A rank records the CPUs all its threads may use at the end (train.threads_affinity): the main thread bound to
    one CPU (what the paper's KMP_AFFINITY does to it in an OpenMP region) leaves the others' set, while every
    thread narrowed (a cpuset narrowed: `docker update --cpuset-cpus`) is seen."""
    import os
    import subprocess
    import sys

    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("needs 2 CPUs")
    script = ("import os, threading, json; from xeontl.experiment.train import threads_affinity as t\n"
              "stop = threading.Event(); th = threading.Thread(target=stop.wait); th.start()\n"
              f"os.sched_setaffinity(0, {{{cpus[0]}}}); one = t()\n"
              f"[os.sched_setaffinity(int(i), {{{cpus[0]}}}) for i in os.listdir('/proc/self/task')]; both = t()\n"
              "stop.set(); print(json.dumps([one, both]))")
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True)
    one, both = __import__("json").loads(out.stdout.splitlines()[-1])
    assert one == cpus and both == [cpus[0]], (one, both)


# ---------------------------------------------------------------------------------------------- other hosts
def test_this_kind_of_host_needs_emulation_for_two_sockets():
    t = load("ci-host-1s-2c.lscpu")
    with pytest.raises(UserError, match="--emulate-sockets"):
        planlib.make_plan(t, 2)
    p = planlib.make_plan(t, 2, emulate=True)
    assert p.emulated and [w.cpus for w in p.workers] == [(0,), (1,)]
    assert [w.intra for w in p.workers] == [1, 1] and any("clamped" in n for n in p.notes)
    assert planlib.make_plan(t, 2, emulate="auto").emulated and not planlib.make_plan(t, 1, emulate="auto").emulated
    assert "EMULATED SOCKETS" in p.describe() and p.env["XEONTL_EMULATED_SOCKETS"] == "2"


def test_adjacent_siblings_are_read_not_assumed():
    p = planlib.make_plan(load("adjacent-siblings-2s-ht.lscpu"), 2)
    assert [shlex.join(w.numactl) for w in p.workers] == ["numactl -C 0-7 -m 0", "numactl -C 8-15 -m 1"]
    assert [w.cores for w in p.workers] == [4, 4] and [w.intra for w in p.workers] == [2, 2]


def test_sub_numa_clustering_binds_all_nodes_of_the_socket():
    p = planlib.make_plan(load("snc2-2s-ht.lscpu"), 2)
    assert [shlex.join(w.numactl) for w in p.workers] == ["numactl -C 0-3,8-11 -m 0,1", "numactl -C 4-7,12-15 -m 2,3"]


def test_cores_per_socket_caps_each_worker_with_siblings():
    p = planlib.make_plan(topology.load_file(SPR), 2, cores_per_socket=4)
    assert [shlex.join(w.numactl) for w in p.workers] == ["numactl -C 0-3,112-115 -m 0",
                                                          "numactl -C 56-59,168-171 -m 1"]


def test_usable_cpus_restrict_the_plan():
    t = topology.load_file(SPR)
    inside = topology.Topology(t.cpus, frozenset(range(0, 8)), "cpuset")
    p = planlib.make_plan(inside, 1)
    assert shlex.join(p.workers[0].numactl) == "numactl -C 0-7 -m 0"
    with pytest.raises(UserError, match="usable socket"):
        planlib.make_plan(inside, 2)


# ---------------------------------------------------------------------------------------------- bad input
@pytest.mark.parametrize("sockets,needle", [(0, "must be 1 or more"), (-1, "must be 1 or more"), (3, "2 usable")])
def test_bad_socket_counts(sockets, needle):
    with pytest.raises(UserError, match=needle):
        planlib.make_plan(topology.load_file(SPR), sockets)


@pytest.mark.parametrize("text,needle", [("0,0,0,0\nfoo,bar\n", "not a CPU,CORE,SOCKET,NODE row"),
                                         ("# only comments\n", "no CPU rows"), ("0,0,0,0\n0,1,0,0\n", "appears twice")])
def test_garbled_topology_files(tmp_path, text, needle):
    f = tmp_path / "t.lscpu"
    f.write_text(text)
    with pytest.raises(UserError, match=needle):
        topology.load_file(f)


def test_unreadable_topology_file(tmp_path):
    with pytest.raises(UserError, match="cannot read topology file"):
        topology.load_file(tmp_path / "missing.lscpu")


def test_cpuset_smaller_than_plan():
    p = planlib.make_plan(topology.load_file(SPR), 2)
    with pytest.raises(UserError, match="may not use"):
        planlib.check_fits(p, topology.Topology(topology.load_file(SPR).cpus, frozenset({0, 1}), "cpuset"))


def test_cpulist_roundtrip():
    assert topology.cpulist([0, 1, 2, 3, 8, 9, 11]) == "0-3,8-9,11"
    assert topology.parse_cpulist("0-3,8-9,11") == {0, 1, 2, 3, 8, 9, 11}


# ---------------------------------------------------------------------------------------------- rendering
def test_docker_command_is_confined_and_unprivileged():
    p = planlib.make_plan(topology.load_file(SPR), 2)
    cmd = docker_command(p, "xeontl:latest", ["true"], "/r", "1000:1000")
    assert "--privileged" not in cmd and cmd[cmd.index("--cap-add") + 1] == "SYS_NICE"
    assert "--cpuset-cpus=0-223" in cmd and "--cpuset-mems=0,1" in cmd
    assert cmd[cmd.index("--user") + 1] == "1000:1000"
    assert "OMPI_MCA_btl_vader_single_copy_mechanism=none" in cmd  # shared memory without SYS_PTRACE


def test_dry_run_prints_the_papers_two_socket_run():
    r = invoke("reproduce", "--sockets", "2", "--dry-run", "--topology", str(SPR), "--profile", "paper",
               timeout=scaled(120))
    assert r.returncode == 0, r.stderr
    for s in ["numactl -C 0-55,112-167 -m 0", "numactl -C 56-111,168-223 -m 1", "mpirun --allow-run-as-root",
              "-np 2 -H localhost:2", "KMP_AFFINITY=granularity=fine,compact,1,0", "KMP_BLOCKTIME=1", "KMP_SETTINGS=1",
              "OMP_NUM_THREADS=54", "--intra-threads 54 --inter-threads 56", "docker run"]:
        assert s in r.stdout, s


@pytest.mark.parametrize("args,needle", [
    (["--sockets", "0"], "--sockets 0"),
    (["--sockets", "3", "--topology", str(SPR)], "--sockets 3"),
    (["--topology", "/nonexistent/file"], "cannot read topology file"),
    (["--profile", "nope"], "unknown profile"),
    (["--set", "epochs"], "KEY=VALUE"),
    (["--image", "xeontl:does-not-exist", "--sockets", "1", "--no-build"], "is not built"),
])
def test_reproduce_bad_input_is_one_line_and_launches_nothing(tmp_path, args, needle):
    r = invoke("reproduce", "--results-dir", str(tmp_path / "res"), *args, timeout=scaled(120))
    one_line_error(r, needle)
    assert not (tmp_path / "res").exists() or not any((tmp_path / "res").iterdir())


def test_reproduce_without_docker_says_so(tmp_path):
    # no daemon where DOCKER_HOST points (the launcher talks to the daemon through the SDK; it needs no docker CLI)
    r = invoke("reproduce", "--sockets", "1", "--results-dir", str(tmp_path), timeout=scaled(120),
               env={"DOCKER_HOST": f"unix://{tmp_path}/no-docker.sock", "PYTHONPATH": ""})
    one_line_error(r, "the Docker daemon is not reachable")
    assert not any(tmp_path.iterdir())


def test_multi_node_plan_is_cpuset_relative():
    t = topology.load_file(SPR)
    p = planlib.make_plan(t, 2, hosts="node1:2,node2:2")
    assert [shlex.join(w.numactl) for w in p.workers] == ["numactl -C +0-55,112-167 -m +0",
                                                          "numactl -C +56-111,168-223 -m +1"]
    line = shlex.join(launch_command(p, lambda w: []))
    assert line.startswith("horovodrun -np 4 -H node1:2,node2:2 --mpi '--binding-args=-bind-to none -map-by slot'")
    # a container whose cpuset is only CPU 5: position 0 of its cpuset
    one = topology.Topology(t.cpus, frozenset({5}), "cpuset")
    assert planlib.make_plan(one, 1, hosts="a:1,b:1").workers[0].numactl == ["numactl", "-C", "+0", "-m", "+0"]
    with pytest.raises(UserError, match="expected HOST:2"):
        planlib.make_plan(t, 2, hosts="node1:1")


def test_docker_command_without_results_mounts_nothing():
    p = planlib.make_plan(topology.load_file(SPR), 1)
    assert "-v" not in docker_command(p, "xeontl:latest", ["true"], None, "1000:1000")
