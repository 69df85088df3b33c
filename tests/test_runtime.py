"""The precision a process runs at, by what its CPU has: bf16 refused where oneDNN has no BF16 kernels, auto = the
best the CPU can do. Pure decisions, then the rank's behaviour on a CPU without them (faked flags)."""

import pytest

from conftest import scaled
from xeontl.common.errors import UserError
from xeontl.experiment import config, runtime
from xeontl.records import onednn, provenance

SPR = {"model_name": "Intel(R) Xeon(R) Platinum 8480+", "flags": ["avx2", "fma", "avx512f", "avx512bw", "amx_bf16"]}
ZEN4 = {"model_name": "AMD EPYC 9R14", "flags": ["avx2", "fma", "avx512f", "avx512bw", "avx512_bf16"]}
ZEN3 = {"model_name": "AMD EPYC", "flags": ["avx", "avx2", "fma"]}


@pytest.mark.parametrize("cpu", [SPR, ZEN4])
def test_bf16_and_auto_run_bf16_where_onednn_has_kernels(cpu):
    assert runtime.choose_precision("bf16", cpu) == ("bf16", None)
    assert runtime.choose_precision("auto", cpu) == ("bf16", None)
    assert runtime.choose_precision("fp32", cpu) == ("fp32", None)


def test_an_avx2_only_cpu_refuses_bf16_in_one_line_and_auto_says_why_it_ran_fp32():
    with pytest.raises(UserError) as e:
        runtime.choose_precision("bf16", ZEN3)
    msg = str(e.value)
    assert "\n" not in msg and "AMD EPYC" in msg and "precision=fp32" in msg and "no oneDNN BF16 kernels" in msg
    precision, why = runtime.choose_precision("auto", ZEN3)
    assert precision == "fp32" and "no oneDNN BF16 kernels" in why


ICELAKE = {"model_name": "Intel(R) Xeon(R) Processor @ 2.80GHz", "flags": ["avx2", "fma", "avx512f", "avx512bw"]}


def test_a_cpu_that_only_emulates_bf16_runs_auto_in_fp32_and_bf16_by_name_with_a_note():
    """AVX-512 without avx512_bf16 (Ice Lake): oneDNN has BF16 kernels by emulation, slower than fp32."""
    precision, why = runtime.choose_precision("auto", ICELAKE)
    assert precision == "fp32" and "no BF16 arithmetic" in why and "amx_bf16 or avx512_bf16" in why
    precision, why = runtime.choose_precision("bf16", ICELAKE)
    assert precision == "bf16" and why.startswith("bf16 emulated")


def test_the_paper_profile_is_bf16_and_the_offline_ones_auto():
    assert config.resolve("paper")["precision"] == "bf16"
    assert config.resolve("demo")["precision"] == config.resolve("smoke")["precision"] == "auto"


def test_a_bf16_rank_on_a_cpu_without_bf16_kernels_stops_before_writing_anything(tmp_path, monkeypatch):
    from xeontl.experiment import train

    monkeypatch.setattr(provenance, "cpuinfo", lambda: ZEN3)
    cfg = config.resolve("smoke", {"precision": "bf16"})
    with pytest.raises(UserError, match="precision bf16: this CPU"):
        train.train(cfg, tmp_path / "run", use_horovod=False)
    assert not (tmp_path / "run").exists()


def test_onednn_verbose_lines_name_the_kernels_and_the_isa():
    """oneDNN v3.2's own lines (seen in the image): a primitive names its kernel; TF's plain matmul goes through the
    sgemm API, whose kernel field is empty, so the kind stands in for it."""
    out = "\n".join([
        "onednn_verbose,info,oneDNN v3.2.1 (commit 04b180b9a58a78cf1a1cd2329671a5060c2be8de)",
        "onednn_verbose,info,cpu,isa:Intel AVX2",
        "onednn_verbose,exec,cpu,convolution,jit:avx2,forward_training,src_f32::blocked:acdb::f0,,alg:convolution_direct"
        ",mb8_ic64oc64_ih56oh56kh3sh1dh0ph1_iw56ow56kw3sw1dw0pw1,1.2",
        "onednn_verbose,exec,cpu,gemm_api,,undef,src_f32::blocked:ab::f0,,,m128n128k128,0.5",
        "some other line",
    ])
    got = onednn.parse(out)
    assert got["onednn_version"] == "v3.2.1" and got["cpu_isa"] == "isa:Intel AVX2"
    assert got["implementations"] == {"jit:avx2": 1, "gemm_api": 1} and got["isas_dispatched"] == ["avx2"]
    assert not got["bf16_kernels_seen"] and not got["amx_used"]


CAPTURE = r"""
import ctypes, json, os, sys
from xeontl.experiment import dispatch
libc = ctypes.CDLL(None)
cap = dispatch.Capture().start()
print("before", flush=True)
sys.stdout.write("\r 1/3 [==>"); sys.stdout.flush()                      # a progress bar: no newline yet
libc.printf(b"onednn_verbose,info,oneDNN v3.2.1 (commit x)\n")          # oneDNN prints with C's stdio
libc.printf(b"onednn_verbose,exec,cpu,convolution,brgconv:avx512_core_amx,forward_inference,src_bf16::blocked,,,"
            b"mb8,0.5\n")
sys.stdout.write("\r 3/3 [====]\n"); sys.stdout.flush()
libc.printf(b"dnnl_verbose,exec,cpu,inner_product,gemm:jit,forward_training,src_f32::blocked,,,mb8,0.1\n")
libc.printf(b"onednn_verb")                                              # a marker's start at a chunk's end
libc.fflush(None)
libc.printf(b"ose,exec,cpu,matmul,brg:avx512_core_bf16,undef,src_bf16,,,2x2,0.1\ntail without newline")
cap.stop()
print("after", flush=True)
sys.stderr.write(json.dumps({**cap.result(), "env": os.environ.get("ONEDNN_VERBOSE")}))
"""


def test_the_capture_tallies_onednns_lines_off_stdout_and_passes_every_other_byte_on():
    """A rank's own oneDNN lines (C's printf on fd 1, beside Python's output and a progress bar's carriage returns)
    are counted, never shown; everything else reaches stdout unchanged and in order; the environment is put back."""
    import json
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-c", CAPTURE], capture_output=True, timeout=scaled(60))
    assert out.returncode == 0, out.stderr
    assert out.stdout == b"before\n\r 1/3 [==>\r 3/3 [====]\ntail without newlineafter\n", out.stdout
    got = json.loads(out.stderr)
    assert got["implementations"] == {"brgconv:avx512_core_amx": 1, "gemm:jit": 1, "brg:avx512_core_bf16": 1}
    assert got["isas_dispatched"] == ["avx512_core_amx", "avx512_core_bf16", "gemm:jit"]
    assert got["bf16_kernels_seen"] and got["amx_used"] and got["onednn_version"] == "v3.2.1"
    assert got["verbose_lines"] == 4 and got["unparsed_lines"] == 0 and got["source"] == "training"
    assert got["env"] is None


# oneDNN's execution lines -> (kind, kernel, on BF16 operands) or None (not read as an execution). Real lines, printed
# on this bundle's Zen 4 (family 25 model 17, AVX512-BF16) by the default stack's oneDNN v3.2.1 and the paper stack's
# (TF 2.10: `::f0` written `:f0`) for a 1x1 convolution, a dense layer and a softmax, FP32 and under BF16 AMP; the AMX
# and `dnnl_` lines are those formats with AMX's kernel name and v2.x's older prefix (no AMX on that machine).
EXEC_LINES = {
    "an FP32 convolution on AVX-512": (
        "onednn_verbose,exec,cpu,convolution,brgconv_1x1:avx512_core,forward_training,src_f32::blocked:acdb::f0 "
        "wei_f32:a:blocked:Acdb64a::f0 bia_f32:a:blocked:a::f0 dst_f32::blocked:acdb::f0,attr-scratchpad:user "
        "attr-post-ops:eltwise_relu ,alg:convolution_direct,mb32_ic64oc64_ih24oh24kh1sh1dh0ph0_iw24ow24kw1sw1dw0pw0,"
        "2.63892", ("convolution", "brgconv_1x1:avx512_core", False)),
    # a kernel is named for the ISA it was built for, not its data (the adversary's case 1)
    "an FP32 softmax named for the CPU's BF16 ISA": (
        "onednn_verbose,exec,cpu,softmax,jit:avx512_core_bf16,forward_inference,src_f32::blocked:ab::f0 "
        "dst_f32::blocked:ab::f0 diff_dst_undef::undef:::,,alg:softmax_accurate axis:1,32x8,0.0178223",
        ("softmax", "jit:avx512_core_bf16", False)),
    "an FP32 dense layer": (
        "onednn_verbose,exec,cpu,inner_product,x64:gemm:jit,forward_training,src_f32::blocked:ab::f0 "
        "wei_f32::blocked:ba::f0 bia_f32:a:blocked:a::f0 dst_f32::blocked:ab::f0,attr-scratchpad:user ,,mb32ic64oc8,"
        "34.4141", ("inner_product", "x64:gemm:jit", False)),
    "a BF16 convolution on AVX512-BF16": (
        "onednn_verbose,exec,cpu,convolution,brgconv_1x1:avx512_core_bf16,forward_training,src_bf16::blocked:acdb::f0 "
        "wei_bf16:a:blocked:AcdB64a2b::f0 bia_bf16:a:blocked:a::f0 dst_bf16::blocked:acdb::f0,attr-scratchpad:user "
        "attr-post-ops:eltwise_relu ,alg:convolution_direct,mb32_ic64oc64_ih24oh24kh1sh1dh0ph0_iw24ow24kw1sw1dw0pw0,"
        "0.461182", ("convolution", "brgconv_1x1:avx512_core_bf16", True)),
    "a BF16 reorder": (
        "onednn_verbose,exec,cpu,reorder,jit:uni,undef,src_bf16::blocked:cdba::f0 dst_bf16::blocked:AcdB64a2b::f0,,,"
        "64x64x1x1,0.150146", ("reorder", "jit:uni", True)),
    "the paper stack's oneDNN, a BF16 convolution": (
        "onednn_verbose,exec,cpu,convolution,brgconv_1x1:avx512_core_bf16,forward_training,src_bf16::blocked:acdb:f0 "
        "wei_bf16::blocked:AcdB64a2b:f0 bia_bf16::blocked:a:f0 dst_bf16::blocked:acdb:f0,attr-scratchpad:user "
        "attr-post-ops:eltwise_relu ,alg:convolution_direct,mb32_ic64oc64_ih24oh24kh1sh1dh0ph0_iw24ow24kw1sw1dw0pw0,"
        "0.831055", ("convolution", "brgconv_1x1:avx512_core_bf16", True)),
    # the adversary's case 3: ONEDNN_VERBOSE_TIMESTAMP=1 puts a field before `exec` (v3.2.1, on that Zen 4)
    "a line with oneDNN's timestamp first": (
        "onednn_verbose,1796603667882.108887,exec,cpu,reorder,jit:uni,undef,src_bf16::blocked:cdba::f0 "
        "dst_bf16::blocked:AcdB64a2b::f0,,,64x64x1x1,0.138184", ("reorder", "jit:uni", True)),
    "a BF16 convolution on AMX": (
        "onednn_verbose,exec,cpu,convolution,brgconv_1x1:avx512_core_amx,forward_training,src_bf16::blocked:acdb::f0 "
        "wei_bf16:a:blocked:AcdB64a2b::f0 bia_bf16:a:blocked:a::f0 dst_bf16::blocked:acdb::f0,attr-scratchpad:user "
        "attr-post-ops:eltwise_relu ,alg:convolution_direct,mb32_ic64oc64_ih24oh24kh1sh1dh0ph0_iw24ow24kw1sw1dw0pw0,"
        "0.2", ("convolution", "brgconv_1x1:avx512_core_amx", True)),
    "oneDNN v2's dnnl_ prefix": (
        "dnnl_verbose,exec,cpu,convolution,brgconv_1x1:avx512_core_amx,forward_training,src_bf16::blocked:acdb:f0 "
        "wei_bf16::blocked:AcdB64a2b:f0 bia_bf16::blocked:a:f0 dst_bf16::blocked:acdb:f0,,alg:convolution_direct,"
        "mb32_ic64oc64_ih24oh24kh1sh1dh0ph0_iw24ow24kw1sw1dw0pw0,0.3",
        ("convolution", "brgconv_1x1:avx512_core_amx", True)),
    # BF16 weights alone make a BF16 primitive (the v3.2.1 format, operand types changed)
    "FP32 source, BF16 weights": (
        "onednn_verbose,exec,cpu,convolution,brgconv_1x1:avx512_core_bf16,forward_training,src_f32::blocked:acdb::f0 "
        "wei_bf16:a:blocked:AcdB64a2b::f0 bia_f32:a:blocked:a::f0 dst_f32::blocked:acdb::f0,,alg:convolution_direct,"
        "mb32,0.4", ("convolution", "brgconv_1x1:avx512_core_bf16", True)),
    "the header line that names the fields is no execution": (
        "onednn_verbose,info,prim_template:operation,engine,primitive,implementation,prop_kind,memory_descriptors,"
        "attributes,auxiliary,problem_desc,exec_time", None),
}


@pytest.mark.parametrize("case", list(EXEC_LINES))
def test_an_execution_line_is_read_by_its_operands_types_not_its_kernels_name(case):
    from xeontl.records import onednn

    line, want = EXEC_LINES[case]
    tally = onednn.Tally()
    tally.feed(line)
    got = tally.result()["kinds"]
    if want is None:
        assert got == {}
        return
    kind, kernel, bf16 = want
    assert got == {kind: {"executions": 1, "bf16": int(bf16), "kernels": {kernel: 1}}}


# A kernel's name -> the ISA it reads as: the whole token oneDNN printed, ranked and classed by oneDNN's own list
# (records/onednn.ISAS, from oneDNN's doc/performance_considerations/dispatcher_control.md and v2.6's
# cpu_isa_traits.hpp): (name, isa, a BF16 unit, AMX)
KERNEL_NAMES = [
    ("brgconv:avx512_core_amx", "avx512_core_amx", True, True),
    # oneDNN 2.6 (TF 2.10) prints its enum avx512_core_bf16_amx_bf16 so (cpu_isa_traits.hpp, JIT_IMPL_NAME_HELPER)
    ("brgconv:avx512_core_amx_bf16", "avx512_core_amx_bf16", True, True),
    ("brgconv:avx512_core_amx_int8", "avx512_core_amx_int8", False, True),
    ("brgconv:avx10_1_512_amx_fp16", "avx10_1_512_amx_fp16", True, True),
    ("jit:avx512_core_fp16", "avx512_core_fp16", True, False),  # not avx512_core: the old prefix match's error
    ("jit:avx512_core_bf16_ymm", "avx512_core_bf16_ymm", True, False),
    ("brgconv:avx512_core", "avx512_core", False, False),
    ("jit_1x1:avx2_vnni_2", "avx2_vnni_2", False, False),  # BF16 conversions, no BF16 dot products
    ("jit_1x1:avx2", "avx2", False, False),
    ("gemm:jit", "gemm:jit", False, False),
    ("brg:avx10_2_512", "avx10_2_512", False, False),  # not in the list: read as printed, no known unit
    ("jit:uni", None, False, False),
]


@pytest.mark.parametrize("name,isa,bf16,amx", KERNEL_NAMES)
def test_a_kernels_isa_is_its_whole_name_classed_by_onednns_list(name, isa, bf16, amx):
    from xeontl.records import onednn

    assert onednn.kernel_isa({name: 1}) == isa
    assert (isa in onednn.BF16_UNIT, isa in onednn.AMX) == (bf16, amx)
    assert [i for i, _, _ in onednn.ISAS] == sorted(onednn.ISA_RANK, key=onednn.isa_rank)
    # a name not in the list ranks below every vector ISA in it and above the generic kernels
    assert onednn.isa_rank("sse41") < onednn.isa_rank("avx10_9_512") < onednn.isa_rank("gemm:jit")


def test_the_math_path_is_the_convolutions_and_their_operands_decide_bf16():
    """The adversary's case 2: 10,000 FP32 convolutions and one BF16 matmul on AMX are an FP32 backbone on AVX-512,
    not "BF16 on AMX"; an execution line in a format it cannot read is counted as such."""
    from xeontl.records import onednn

    tally = onednn.Tally()
    for _ in range(10000):
        tally.feed(EXEC_LINES["an FP32 convolution on AVX-512"][0])
    tally.feed(EXEC_LINES["a BF16 convolution on AMX"][0].replace("convolution,", "matmul,", 1))
    tally.feed("onednn_verbose,some,new,format,exec,cpu,convolution")
    got = tally.result()
    assert got["convolutions"] == 10000 and got["convolutions_bf16_share"] == 0.0 and got["amx_used"]
    assert got["convolution_isa"] == "avx512_core" and got["unread_lines"] == 1
    assert got["bf16_kernels_seen"]  # the matmul's, which is not what decides


def test_a_rank_killed_at_once_keeps_what_python_printed():
    """The adversary's case 4: Python's own output bypasses the capture's pipe, so a rank killed at once (SIGKILL,
    the OOM killer) has not lost its last epoch's line."""
    import subprocess
    import sys

    code = ("import os, signal; from xeontl.experiment import dispatch; dispatch.Capture().start(); "
            "print('epoch 7/43', flush=True); os.kill(os.getpid(), signal.SIGKILL)")
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=scaled(60))
        assert out.stdout == "epoch 7/43\n", (out.stdout, out.stderr)


def test_a_training_process_records_the_kernels_its_own_ops_ran():
    """Real TensorFlow: the ops this process runs after start() are tallied (oneDNN reads the switch at its first
    primitive), at the precision they ran."""
    import json
    import subprocess
    import sys

    code = ("import json, sys; from xeontl.experiment import dispatch; cap = dispatch.Capture().start(); "
            "import tensorflow as tf; x = tf.random.uniform((4, 16, 16, 8)); "
            "tf.keras.layers.Conv2D(8, 3)(x).numpy(); cap.stop(); sys.stderr.write('\\n' + json.dumps(cap.result()))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=scaled(300),
                         env={**__import__("os").environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
    assert out.returncode == 0, out.stderr[-2000:]
    got = json.loads(out.stderr.strip().splitlines()[-1])
    assert got["isas_dispatched"] and got["verbose_lines"] > 0 and not got["bf16_kernels_seen"], got
    assert "onednn_verbose" not in out.stdout


def test_the_calibration_is_the_median_of_its_timed_blocks(monkeypatch):
    """One disturbed block (a hiccup of the VM, a neighbour passing by) does not move the calibration: it is the
    median of its blocks, each recorded; a step that stays slow is slow in every block."""
    import types

    import tensorflow as tf

    from xeontl.experiment import train

    clock = iter([0.0, 0.3, 10.0, 10.9, 20.0, 20.31])  # three blocks of 3 steps: 0.1, 0.3 (a hiccup), 0.103 s a step
    monkeypatch.setattr(train, "time", types.SimpleNamespace(perf_counter=lambda: next(clock)))
    net = tf.keras.Sequential([tf.keras.Input((4,)), tf.keras.layers.Dense(2)])
    cal = train.calibration(net, {"batch_size": 2}, steps=7)
    assert cal["block_seconds_per_step"] == [0.1, 0.3, 0.103333] and cal["blocks"] == 3 and cal["steps"] == 3
    assert cal["seconds_per_step"] == pytest.approx(0.103333, abs=1e-6) and cal["steps_per_epoch"] == 7
