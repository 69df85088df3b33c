"""The precision a process runs at, by what its CPU has: bf16 refused where oneDNN has no BF16 kernels, auto = the
best the CPU can do. Pure decisions, then the rank's behaviour on a CPU without them (faked flags)."""

import pytest

from conftest import scaled
from xeontl.common.errors import UserError
from xeontl.experiment import config, runtime
from xeontl.records import provenance

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
    got = provenance.parse_onednn_verbose(out)
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
