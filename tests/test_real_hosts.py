"""Plans on hosts that are not textbook 2-socket boxes: a CPU with no memory node, sockets with unequal cores,
multi-die packages read from /sys, and the preflight that refuses a plan the live host cannot run. Every expectation
is a set of CPUs / nodes / thread counts per rank, and the rendered command lines must agree with it."""

import re
import shlex
import shutil
import subprocess

import pytest

from conftest import TOPOLOGIES, invoke, one_line_error, scaled
from xeontl.common.errors import UserError
from xeontl.engines.docker import docker_command
from xeontl.placement import plan as planlib
from xeontl.placement import topology

SYS_2DIE = TOPOLOGIES / "sys-2pkg-2die"


def per_rank(plan):
    return [(set(w.cpus), set(w.nodes), w.intra, w.inter) for w in plan.workers]


def rendered(plan):
    """What each rank's command really asks for: CPUs, memory nodes, OMP_NUM_THREADS, --intra/--inter-threads."""
    out = []
    for w in plan.workers:
        cmd = planlib.worker_command(w, planlib.train_args(w, "/r/config.json", "/r"))
        numactl = cmd[cmd.index("numactl"):cmd.index("python")]
        cpus = topology.parse_cpulist(numactl[numactl.index("-C") + 1])
        nodes = topology.parse_cpulist(numactl[numactl.index("-m") + 1]) if "-m" in numactl else set()
        omp = int(next(a for a in cmd if a.startswith("OMP_NUM_THREADS=")).split("=")[1])
        intra, inter = int(cmd[cmd.index("--intra-threads") + 1]), int(cmd[cmd.index("--inter-threads") + 1])
        assert omp == intra
        out.append((cpus, nodes, intra, inter))
    return out


# ---------------------------------------------------------------------------------------------- no memory node
def test_empty_node_field_is_no_node_not_node_0():
    t = topology.load_file(TOPOLOGIES / "empty-node-2s-ht.lscpu")
    assert {c.node for c in t.cpus if c.socket == 1} == {None} and {c.node for c in t.cpus if c.socket == 0} == {0}
    assert t.summary()["cpus_without_node"] == "4-7,12-15"


def test_socket_without_memory_node_gets_no_memory_binding():
    p = planlib.make_plan(topology.load_file(TOPOLOGIES / "empty-node-2s-ht.lscpu"), 2)
    expected = [({0, 1, 2, 3, 8, 9, 10, 11}, {0}, 2, 4), ({4, 5, 6, 7, 12, 13, 14, 15}, set(), 2, 4)]
    assert per_rank(p) == rendered(p) == expected
    assert "-m" not in p.workers[1].numactl
    assert any("socket 1 has no memory node of its own" in n for n in p.notes)
    docker = docker_command(p, "img", ["true"], None, "1000:1000")
    assert "--cpuset-mems=0" in docker  # never a node that may not exist


def test_three_column_file_still_means_node_0(tmp_path):
    f = tmp_path / "t.lscpu"
    f.write_text("# CPU,Core,Socket\n0,0,0\n1,1,0\n")
    assert {c.node for c in topology.load_file(f).cpus} == {0}


# ---------------------------------------------------------------------------------------------- unequal sockets
def test_unequal_sockets_get_their_own_threads():
    p = planlib.make_plan(topology.load_file(TOPOLOGIES / "offline-cores-2s-ht.lscpu"), 2)
    expected = [(set(range(0, 8)) | set(range(16, 24)), {0}, 6, 8),
                (set(range(8, 14)) | set(range(24, 30)), {1}, 4, 6)]
    assert per_rank(p) == rendered(p) == expected
    assert "OMP_NUM_THREADS" not in p.env  # each rank's own, never one exported to all
    assert any("unequal usable cores [8, 6]" in n for n in p.notes)


def test_unequal_sockets_rank_wrapper_execs_each_ranks_threads(tmp_path):
    """Run the per-rank wrapper with a stand-in numactl that prints what it got, for each local rank."""
    p = planlib.make_plan(topology.load_file(TOPOLOGIES / "offline-cores-2s-ht.lscpu"), 2)
    fake = tmp_path / "numactl"
    fake.write_text('#!/bin/sh\necho "$OMP_NUM_THREADS $*"\n')
    fake.chmod(0o755)
    wrapper = planlib.rank_wrapper(p, lambda w: planlib.train_args(w, "/r/config.json", "/r"))
    for rank, (cpus, nodes, intra, inter) in enumerate(rendered(p)):
        out = subprocess.run(wrapper, capture_output=True, text=True, check=True,
                             env={"PATH": f"{tmp_path}:/usr/bin:/bin", "OMPI_COMM_WORLD_LOCAL_RANK": str(rank)}).stdout
        words = out.split()
        assert int(words[0]) == intra and topology.parse_cpulist(words[2]) == cpus
        assert words[3] == "-m" and topology.parse_cpulist(words[4]) == nodes
        assert words[words.index("--intra-threads") + 1] == str(intra)
        assert words[words.index("--inter-threads") + 1] == str(inter)


def test_dry_run_lists_each_rank_as_its_command_runs_it():
    r = invoke("reproduce", "--sockets", "2", "--dry-run", "--topology",
               str(TOPOLOGIES / "offline-cores-2s-ht.lscpu"), timeout=scaled(120))
    assert r.returncode == 0, r.stderr
    listed = re.findall(r"rank (\d): socket \d, \d+ cores, CPUs (\S+), memory nodes (\S+), OMP_NUM_THREADS (\d+), "
                        r"intra (\d+), inter (\d+)", r.stdout)
    commands = re.findall(r"# rank (\d) \(inside the container\)\n(.*)\n", r.stdout)
    assert len(listed) == len(commands) == 2
    for (rank, cpus, nodes, omp, intra, inter), (rank2, line) in zip(listed, commands):
        cmd = shlex.split(line)
        assert rank == rank2 and cmd[cmd.index("-C") + 1] == cpus and cmd[cmd.index("-m") + 1] == nodes
        assert f"OMP_NUM_THREADS={omp}" in cmd and omp == intra
        assert cmd[cmd.index("--intra-threads") + 1] == intra and cmd[cmd.index("--inter-threads") + 1] == inter
    assert [x[3] for x in listed] == ["6", "4"]


# ---------------------------------------------------------------------------------------------- multi-die packages
def test_multi_die_packages_are_grouped_by_thread_siblings():
    t = topology.live(SYS_2DIE, allowed=frozenset(range(16)), mems_allowed=frozenset(range(4)))
    s = t.summary()
    assert s["sockets"] == 2 and s["cores_per_socket"] == [8, 8] and s["threads_per_core"] == 1
    assert any("core_id repeats across dies" in w for w in t.warnings)
    p = planlib.make_plan(t, 2)
    assert per_rank(p) == rendered(p) == [(set(range(0, 8)), {0, 1}, 6, 8), (set(range(8, 16)), {2, 3}, 6, 8)]


def sys_copy(tmp_path):
    root = tmp_path / "sys"
    shutil.copytree(SYS_2DIE, root)
    return root


def test_live_reader_skips_offline_cpus_and_memoryless_nodes(tmp_path):
    root = sys_copy(tmp_path)
    shutil.rmtree(root / "cpu" / "cpu15" / "topology")  # the kernel removes an offline CPU's topology
    (root / "cpu" / "cpu15" / "online").write_text("0\n")
    (root / "node" / "node3" / "meminfo").write_text("Node 3 MemTotal:       0 kB\n")
    (root / "node" / "has_memory").write_text("0-2\n")
    t = topology.live(root, allowed=frozenset(range(16)), mems_allowed=frozenset(range(4)))
    assert t.summary()["cores_per_socket"] == [8, 7] and t.memory_nodes == {0, 1, 2}
    p = planlib.make_plan(t, 2)
    assert per_rank(p) == rendered(p) == [(set(range(0, 8)), {0, 1}, 6, 8), (set(range(8, 15)), {2}, 5, 7)]


# ---------------------------------------------------------------------------------------------- preflight
def spr_plan():
    return planlib.make_plan(topology.load_file(TOPOLOGIES / "spr-8480-2s-ht.lscpu"), 2)


def spr_here(**kw):
    t = topology.load_file(TOPOLOGIES / "spr-8480-2s-ht.lscpu")
    return topology.Topology(kw.pop("cpus", t.cpus), kw.pop("allowed", t.allowed), "live", **kw)


@pytest.mark.parametrize("here,needle", [
    (lambda: spr_here(cpus=tuple(c for c in spr_here().cpus if c.cpu != 200)), "CPUs 200, which are offline"),
    (lambda: spr_here(allowed=frozenset(range(200))), "CPUs 200-223 that this process may not use"),
    (lambda: spr_here(memory_nodes=frozenset({0})), "NUMA node 1, which has no memory"),
    (lambda: spr_here(memory_nodes=frozenset({0, 1}), mems_allowed=frozenset({0})),
     "NUMA node 1, which this process may not use"),
])
def test_a_plan_the_host_cannot_run_is_refused_in_one_line(here, needle):
    with pytest.raises(UserError, match=needle) as e:
        planlib.check_fits(spr_plan(), here())
    assert "\n" not in str(e.value)
    planlib.check_fits(spr_plan(), spr_here(memory_nodes=frozenset({0, 1}), mems_allowed=frozenset({0, 1})))


def test_live_host_fits_its_own_plan():
    here = topology.live()
    planlib.check_fits(planlib.make_plan(here, 1), here)
    assert here.memory_nodes and here.mems_allowed


def test_train_user_error_before_training_leaves_nothing(tmp_path):
    import sys

    from conftest import run

    out = tmp_path / "run"
    r = run([sys.executable, "-m", "xeontl", "train", "--profile", "smoke", "--dataset", f"folder:{tmp_path}/missing",
             "--output", str(out)], timeout=scaled(300))
    one_line_error(r, "does not exist")
    assert not out.exists()
    bad = tmp_path / "bad.json"
    bad.write_text('{"profile": "smoke", "epochs": 2}')
    one_line_error(run([sys.executable, "-m", "xeontl", "train", "--config", str(bad), "--output", str(out)],
                       timeout=scaled(300)), "not a resolved config", "missing")
    assert not out.exists()
