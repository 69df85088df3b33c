"""`invoke bench --check-host`: the verdict and predicted times from constructed probes (the paper's host, this
machine's kinds), and the real probes on this host at small sizes."""

import copy
import shutil

import pytest

from conftest import needs_horovod
from xeontl.experiment import runtime
from xeontl.measure import checkhost
from xeontl.supply import stacks

SPR_FLAGS = ["avx512f", "avx512_bf16", "amx_bf16", "amx_tile", "avx2", "fma"]


def raw(flags=SPR_FLAGS, sockets=2, cores=56, isa="avx512_core_amx", backbone=180.0, vendor="GenuineIntel",
        family=6):
    return {
        "cpu": {"model_name": "Intel Xeon Platinum 8480+", "vendor": vendor, "family": family, "mhz": "2000.0",
                "flags": flags},
        "topology": {"sockets": sockets, "cores_per_socket": [cores] * sockets,
                     "numa_nodes": {n: "" for n in range(sockets)}},
        "cores": cores, "cpus": "0-55,112-167", "precision": "bf16", "sizes": checkhost.SIZES,
        "matmul": {"fp32": {"median": 5000.0}, "bf16": {"median": 60000.0, "onednn": {
            "cpu_isa": isa, "implementations": [f"brg:{isa}"]}}},
        "bandwidth": {"median": 12.0}, "backbone": {"median": backbone}}


def test_the_papers_host_at_the_papers_speed_can_reproduce_its_times():
    v = checkhost.verdict(raw())
    # 43 epochs (the paper's 1-socket run) x 5000 images / 180 images/s = 1194 s = 19.9 min... too slow: the paper's
    # speed is ~700 images/s
    assert not v["can_reproduce_times"] and "predicted 19.9 min" in v["reasons"][-1]
    v = checkhost.verdict(raw(backbone=700.0))
    assert v["predicted_minutes"]["1s"] == pytest.approx(43 * 5000 / 700 / 60)
    assert v["predicted_minutes"]["2s"] == pytest.approx(43 * 5000 / 700 / 60 / 2 / 0.92)
    assert v["can_reproduce_times"] and v["reasons"] == [] and all(c["ok"] for c in v["checks"])
    # AMX peak: 1024 FLOP/cycle x 2.0 GHz x 56 cores = 114.7 TFLOP/s; 60 TFLOP/s measured
    assert v["bf16_fraction_of_theoretical"] == pytest.approx(60000 / (1024 * 2.0 * 56))
    assert "**yes**" in checkhost.markdown(v) and "boost" not in checkhost.markdown(v)
    fast = checkhost.verdict({**raw(backbone=700.0), "matmul": {"fp32": {"median": 1.0}, "bf16": {
        "median": 130000.0, "onednn": {"cpu_isa": "avx512_core_amx"}}}})
    assert fast["bf16_fraction_of_theoretical"] > 1 and "the cores boost above it" in checkhost.markdown(fast)


@pytest.mark.parametrize("kind,needles", [
    (dict(flags=["avx512f", "avx512_bf16", "avx2", "fma"], sockets=1, cores=2, isa="avx512_core_bf16",
          vendor="AuthenticAMD", family=25, backbone=20.0),
     ["AMX present (amx_bf16): no", "AMX dispatched by oneDNN for bf16 matmul: no (oneDNN ISA: avx512_core_bf16)",
      "2 sockets: no (this host: 1)", "56 cores per socket: no (this host: [2])"]),
    (dict(isa="avx512_core_bf16", backbone=700.0), ["AMX dispatched by oneDNN for bf16 matmul: no"]),
])
def test_each_reason_a_host_cannot_reproduce_the_times_is_named(kind, needles):
    v = checkhost.verdict(raw(**kind))
    assert not v["can_reproduce_times"]
    for n in needles:
        assert any(r.startswith(n) for r in v["reasons"]), (n, v["reasons"])
    md = checkhost.markdown(v)
    assert "**no**" in md and "Why not:" in md


def direct(size, plain, once):
    return {"size": size, "plain": {"gflops": plain, "implementation": "brg:avx512_core_amx", "reorder_once_s": None},
            "once": {"gflops": once, "implementation": "brg:avx512_core_amx", "reorder_once_s": 0.01}}


def test_the_curve_rows_are_the_probes_points_against_the_cores_limit():
    r = raw()
    r["curve"] = {"one core": {"median": 2000.0, "points": [{"size": 1024, "gflops": 1000.0, "reorder_share": 0.25,
                                                             "outside_share": 0.1, "kernels": ["matmul:brg:amx"]}]},
                  "socket": {"median": None, "reason": "killed"}}
    r["onednn"] = {"one core": {"median": 1500.0, "points": [direct(1024, 1200.0, 1500.0)]},
                   "socket": {"median": None, "skipped": "oneDNN v3.2 has no bf16 matmul for this CPU"}}
    r["tmul"] = {"median": 1900.0}
    v = checkhost.verdict(r)
    # the limit: 1024 FLOP/cycle x 2.0 GHz = 2048 GFLOP/s per core
    assert v["matmul_curve"] == [{"cores": 1, "size": 1024, "gflops": 1000.0, "fraction": 1000.0 / 2048,
                                  "reorder_share": 0.25, "outside_share": 0.1, "kernels": ["matmul:brg:amx"],
                                  "direct_plain_gflops": 1200.0, "direct_once_gflops": 1500.0,
                                  "direct_once_fraction": 1500.0 / 2048, "direct_implementation": "brg:avx512_core_amx",
                                  "weights_reorder_s": 0.01}]
    # a failed probe is an error; a probe this CPU cannot run is not
    assert v["probe_errors"] == {"curve, socket": "killed"}
    md = checkhost.markdown(v)
    assert "| 1 | 1024 | 1000 | 0.49 | 25% | 10% | 1200 | 1500 | 0.73 | matmul:brg:amx |" in md
    assert v["amx_limit"]["best_fraction"] == pytest.approx(1500 / 2048)
    assert "the best: 0.73 of it, oneDNN direct, weights reordered once, 1024^2 on 1 core(s)" in md
    assert "the tile unit alone, on tiles already in registers, reaches 0.93 (1900 GFLOP/s)" in md


@pytest.mark.parametrize("tmul,why", [
    ({"median": 1900.0}, "the tile unit alone, on tiles already in registers, reaches 0.93 (1900 GFLOP/s): the "
                         "multiply is not the limit, feeding the tiles is"),
    ({"median": 600.0}, "the tile unit alone, on tiles already in registers, reaches only 0.29 (600 GFLOP/s): the "
                        "limit is the core's AMX throughput"),
    ({"median": None, "skipped": "no C compiler (cc) on this host to build the AMX probe"},
     "the tile unit alone was not measured (no C compiler (cc) on this host to build the AMX probe)"),
])
def test_where_the_matmul_stops_is_told_from_the_tile_units_own_rate(tmul, why):
    """Below 0.5 of the limit, the tile unit's own rate (no memory traffic) says whether the hardware or the
    feeding of it stops the matmul."""
    r = raw()
    r["curve"] = {"one core": {"median": 500.0, "points": [{"size": 2048, "gflops": 500.0, "kernels": []}]},
                  "socket": {"median": 900.0, "points": [{"size": 2048, "gflops": 900.0, "kernels": []}]}}
    r["cores"] = 2
    r["onednn"] = {"one core": {"median": 640.0, "points": [direct(2048, 600.0, 640.0)]}}
    r["tmul"] = tmul
    amx = checkhost.verdict(r)["amx_limit"]
    assert amx["best_fraction"] == pytest.approx(640 / 2048)
    assert amx["best_configuration"] == "oneDNN direct, weights reordered once, 2048^2 on 1 core(s)"
    assert amx["why"].startswith("no configuration reaches 0.5 of the limit; the best: 0.31 of it, oneDNN direct")
    # TF's best (500 GFLOP/s on 1 core = 0.24; 900 on 2 cores is 0.22 of theirs), named beside oneDNN's own
    assert "through TensorFlow at most 0.24 (2048^2 on 1 core(s))" in amx["why"]
    assert why in amx["why"]


def test_a_failed_probe_is_named_not_hidden():
    r = copy.deepcopy(raw())
    r["backbone"] = {"median": None, "reason": "oneDNN: bf16 not supported"}
    v = checkhost.verdict(r)
    assert v["predicted_minutes"] == {"1s": None, "2s": None} and not v["can_reproduce_times"]
    assert v["probe_errors"] == {"backbone": "oneDNN: bf16 not supported"}
    assert "backbone: oneDNN: bf16 not supported" in checkhost.markdown(v)


# A Zen 1 played here (AVX2 only): its features from the tests-only cpuinfo file, oneDNN's kernels held to AVX2
ZEN1_CPUINFO = ("processor\t: 0\nvendor_id\t: AuthenticAMD\ncpu family\t: 23\nmodel\t\t: 1\n"
                "model name\t: AMD EPYC 7551 32-Core Processor\ncpu MHz\t\t: 1996.249\n"
                "flags\t\t: fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2 bmi2\n")
KINDS = [("this host", None), ("a Zen 1 played here", ZEN1_CPUINFO)]


@pytest.mark.slow
@needs_horovod
@pytest.mark.parametrize("kind,cpuinfo", KINDS, ids=[k for k, _ in KINDS])
def test_the_probes_run_on_this_host(kind, cpuinfo, tmp_path, monkeypatch):
    """The real probes, small: every figure measured that the CPU can measure, what it lacks said in a line each,
    never a probe error; on this bundle's 2-core machines the answer is no, with the sockets and cores named."""
    if cpuinfo:
        (tmp_path / "cpuinfo").write_text(cpuinfo)
        monkeypatch.setenv(stacks.CPUINFO_ENV, str(tmp_path / "cpuinfo"))
        monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    out = checkhost.run(tmp_path, {"matmul": 256, "bandwidth_mib": 16, "image": 32, "batch": 2, "repeats": 2,
                                   "curve": 2048})
    import json

    v = json.loads((out / "check.json").read_text())
    md = (out / "check.md").read_text()
    assert v["probe_errors"] == {}, v["probe_errors"]
    flags = set(v["raw"]["cpu"]["flags"])
    assert v["cpu_lacks"] == checkhost.lacks(flags)[1] and all(f"- {ln}" in md for ln in v["cpu_lacks"])
    bf16 = runtime.bf16_kernels(flags)
    assert v["precision"] == ("bf16" if bf16 else "fp32")
    if cpuinfo:  # the played Zen 1 lacks all three, and its bf16 probes are said not run, not failed
        assert [ln.split(":")[0] for ln in v["cpu_lacks"]] == [
            "lacks AVX-512 (avx512f)", "lacks BF16 arithmetic (amx_bf16 or avx512_bf16)",
            "lacks AMX (amx_bf16, amx_tile)"]
        assert v["raw"]["matmul"]["bf16"]["skipped"].startswith("this CPU lacks BF16 kernels")
    assert v["matmul_gflops"]["fp32"] > 0 and v["bandwidth_gb_s"] > 0 and v["backbone_img_s_paper_shape"] > 0
    assert md.startswith("# Can this host reproduce the paper's times?")
    prof = v["step_profile"]  # the real step, read off oneDNN's own timings
    assert prof["ms_per_step"]["convolutions"] > 0 and prof["kernels_per_step"]
    assert sum(prof["ms_per_step"].values()) == pytest.approx(prof["step_ms"], rel=0.01) or \
        prof["ms_per_step"][checkhost.OUTSIDE] == 0
    assert "Where a training step's time goes" in md
    # training folds the frozen backbone's batch norms into its convolutions: no batch-norm primitive is left
    assert "batch norm" not in prof["ms_per_step"], prof["ms_per_step"]
    tmul, amx = v["raw"]["tmul"], "amx_tile" in flags
    assert not v["can_reproduce_times"] and any("2 sockets: no" in r for r in v["reasons"])
    if not bf16:
        assert v["matmul_curve"] == [] and v["matmul_gflops"]["bf16"] is None and tmul["skipped"], v
        return
    assert v["matmul_gflops"]["bf16"] > 0
    # the bf16 matmul curve, one core and the socket, each size with what oneDNN ran
    # (oneDNN's own from 256^2, where the operands fit L2; TensorFlow's from 1024^2)
    sizes = [256, 512, 1024, 2048]
    assert [(r["cores"] == 1, r["size"]) for r in v["matmul_curve"]] == [(True, s) for s in sizes] + [
        (v["cores_probed"] == 1, s) for s in sizes]
    through_tf = [r for r in v["matmul_curve"] if r["size"] >= 1024]
    assert all(r["gflops"] > 0 and r["kernels"] and 0 <= r["reorder_share"] <= 1 for r in through_tf)
    # oneDNN's own matmul at every size, weights packed per call and reordered once
    assert all(r["direct_plain_gflops"] > 0 and r["direct_once_gflops"] > 0 for r in v["matmul_curve"]), \
        v["matmul_curve"]
    assert v["amx_limit"]["best_fraction"] > 0 and v["amx_limit"]["why"]
    # the tile unit alone: measured where the CPU has AMX and a C compiler is here, else said why not
    assert tmul["median"] > 0 if amx and shutil.which("cc") else tmul["skipped"], tmul


# Each kind of CPU the bundle met: what check-host says it lacks (transcribed from /proc/cpuinfo flags of each)
LACKS = [
    ("Sapphire Rapids (the paper's)", ["avx512f", "avx512bw", "avx512_bf16", "amx_bf16", "amx_tile"], []),
    ("Zen 4", ["avx512f", "avx512bw", "avx512_bf16"], ["AMX"]),
    ("Ice Lake", ["avx512f", "avx512bw"], ["BF16 arithmetic", "AMX"]),
    ("Zen 1", ["avx2", "fma"], ["AVX-512", "BF16 arithmetic", "AMX"]),
    # AMX is both flags (all), not either (any): its BF16 tiles without the tile state are no AMX
    ("amx_bf16 without amx_tile", ["avx512f", "avx512bw", "avx512_bf16", "amx_bf16"], ["AMX"]),
    ("amx_tile without amx_bf16", ["avx512f", "avx512bw", "avx512_bf16", "amx_tile"], ["AMX"]),
    # BF16 emulated without AVX-512 named: the line names the flags it has, not "AVX-512" it lacks
    ("avx_ne_convert, no AVX-512", ["avx2", "avx_ne_convert"], ["AVX-512", "BF16 arithmetic", "AMX"]),
]


@pytest.mark.parametrize("kind,flags,lacking", LACKS, ids=[k for k, _, _ in LACKS])
def test_what_a_cpu_lacks_is_a_line_each_with_what_follows(kind, flags, lacking):
    v = checkhost.verdict(raw(flags=flags))
    assert [ln.split(" (")[0].removeprefix("lacks ") for ln in v["cpu_lacks"]] == lacking, v["cpu_lacks"]
    md = checkhost.markdown(v)
    assert all(f"- {ln}" in md for ln in v["cpu_lacks"]) and "This CPU has " in md
    emulated = "avx512bw" in flags and "avx512_bf16" not in flags
    bf16_line = [ln for ln in v["cpu_lacks"] if ln.startswith("lacks BF16")]
    assert not bf16_line or ("only emulates" in bf16_line[0]) == (emulated or "avx_ne_convert" in flags)
    if bf16_line and "only emulates" in bf16_line[0]:  # with the flags it has, never "(AVX-512)" where it lacks it
        have = [f for f in runtime.BF16_FLAGS if f in flags]
        assert f"(with {', '.join(have)})" in bf16_line[0] and "(AVX-512)" not in bf16_line[0], bf16_line


def test_flags_that_could_not_be_read_are_unknown_not_lacking():
    v = checkhost.verdict({**raw(flags=[]), "flags_error": "/proc/cpuinfo: Permission denied"})
    assert v["cpu_lacks"] == ["could not read this CPU's flags (/proc/cpuinfo: Permission denied): whether it has "
                              "AVX-512, BF16 arithmetic, AMX is unknown"] and v["cpu_has"] == []
    assert "- could not read this CPU's flags" in checkhost.markdown(v)


def test_a_cpu_without_bf16_kernels_is_measured_in_fp32_and_its_bf16_probes_not_run(tmp_path, monkeypatch, capsys):
    """measure() on a played Zen 1: which probes it starts (recorded, not run), and that none of what it skips is
    a probe error in the verdict."""
    from xeontl.measure import probes

    (tmp_path / "cpuinfo").write_text(ZEN1_CPUINFO)
    monkeypatch.setenv(stacks.CPUINFO_ENV, str(tmp_path / "cpuinfo"))
    started = []

    def probe(worker, env, what, precision, *a, **kw):
        started.append((what, precision))
        return {"median": 1.0}

    monkeypatch.setattr(probes, "_probe", probe)
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    r = checkhost.measure({**checkhost.SIZES})
    out = capsys.readouterr().out
    # the progress lines announce only what runs, and say a CPU is played, naming how and the real one
    real = stacks.cpu_fields("/proc/cpuinfo")["model_name"]
    assert f"XEONTL_TEST_CPUINFO={tmp_path / 'cpuinfo'}" in out and "ONEDNN_MAX_CPU_ISA=AVX2" in out, out
    assert f"on a {real}" in out and "bf16 matmul curve" not in out and "matmul fp32/bf16" not in out, out
    assert "bf16 not run: no BF16 kernels" in out and "oneDNN's bf16 probes: not run" in out, out
    assert sorted(set(started)) == [("backbone", "fp32"), ("bandwidth", "fp32"), ("matmul", "fp32"),
                                    ("step", "fp32")]
    assert r["precision"] == "fp32" and r["cpu"]["model_name"] == "AMD EPYC 7551 32-Core Processor"
    assert r["flags_of_note"]["avx2"] and not r["flags_of_note"]["avx512f"]
    v = checkhost.verdict(r)
    assert v["probe_errors"] == {} and len(v["cpu_lacks"]) == 3
    md = checkhost.markdown(v)
    assert "| AMX dispatched by oneDNN for bf16 matmul | not run (no BF16) |" in md, md
    assert md.splitlines()[2].startswith("**a CPU played for tests (XEONTL_TEST_CPUINFO="), md


def test_a_steps_time_is_split_by_onednn_primitive():
    """From oneDNN's verbose lines of the timed steps only (between the markers), per step."""
    from xeontl.measure.probes import PROFILE_MARKS

    conv = "onednn_verbose,exec,cpu,convolution,brg:avx512_core_amx,forward_inference,src_bf16::blocked:acdb,,,mb32,{}"
    out = "\n".join([conv.format(99.0),  # a warm-up step's line: not counted
                     PROFILE_MARKS[0],
                     *[conv.format(30.0)] * 4, "onednn_verbose,exec,cpu,reorder,jit:uni,undef,src_f32,,,32x3,5.0",
                     "onednn_verbose,exec,cpu,reorder,jit:uni,undef,src_f32,,,32x3,5.0",
                     "some TF log line,with,commas,here,and,more", PROFILE_MARKS[1], '{"median": 1}'])
    prof = checkhost.step_profile(out, steps=2, step_s=0.1)
    assert prof["ms_per_step"]["convolutions"] == pytest.approx(60.0)
    assert prof["ms_per_step"]["reorders (layout, fp32<->bf16)"] == pytest.approx(5.0)
    assert prof["ms_per_step"][checkhost.OUTSIDE] == pytest.approx(35.0)
    assert prof["share"]["convolutions"] == pytest.approx(0.6)
    assert prof["kernels_per_step"] == {"convolution:brg:avx512_core_amx": 2, "reorder:jit:uni": 1}
    assert checkhost.step_profile("no markers", 2, 0.1) == {"error": "no profile markers in the probe's output"}
