"""The TensorFlow process settings every xeontl process shares (a training rank, the provenance probe's math sample,
the bench's compute probes): its thread pools and its BF16 switch. One place, so all of them measure the same thing.
Both must be set before TensorFlow runs its first op."""

from __future__ import annotations


def configure_threads(intra: int, inter: int) -> dict:
    """The plan's intra-/inter-op thread counts (0: TensorFlow's default, for runs outside a plan)."""
    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(intra)
    tf.config.threading.set_inter_op_parallelism_threads(inter)
    return {"intra_op": intra or "tf-default", "inter_op": inter or "tf-default"}


# CPU flags with which oneDNN (TF 2.14's v3.x) has BF16 kernels: AMX and AVX512-BF16 natively, any AVX-512 core
# (avx512bw) by emulation, AVX-NE-CONVERT hosts by conversion. Without them TF's BF16 rewrite still happens and the
# first BF16 convolution fails ("Value for attr 'T' of bfloat16 is not in the list of allowed values", seen on an
# AVX2-only AMD EPYC): so a BF16 run is refused there before it starts, and "auto" picks fp32.
BF16_FLAGS = ("amx_bf16", "avx512_bf16", "avx512bw", "avx_ne_convert")
# ... and with which it has BF16 arithmetic. Elsewhere (an AVX-512 core without avx512_bf16: Skylake, Cascade Lake,
# Ice Lake) oneDNN emulates BF16 and pays for it: on an Ice Lake Xeon (family 6 model 106, 2 cores) a bf16 matmul ran
# at 56 GFLOP/s against fp32's 224 (check-host), and the quick start's 2-worker epoch took 48 s in emulated BF16.
# So auto picks fp32 there; bf16 asked for by name (the paper profile) still runs, and says it is emulated.
BF16_NATIVE = ("amx_bf16", "avx512_bf16")


def bf16_kernels(flags) -> bool:
    return any(f in flags for f in BF16_FLAGS)


def bf16_native(flags) -> bool:
    return any(f in flags for f in BF16_NATIVE)


# How the command a user gave names the precision: invoke's `--set precision=X`, unless the process is `python -m
# xeontl` (cli.main sets "--precision {}"), whose reproduce and train take --precision X.
PRECISION_FLAG = "--set precision={}"


def instead() -> str:
    """What a bf16 refusal advises in the words of the command given (PRECISION_FLAG)."""
    fp32, auto = PRECISION_FLAG.format("fp32"), PRECISION_FLAG.format("auto")
    return f"{fp32} (not the paper's precision) or {auto}"


def choose_precision(precision: str, cpu: dict, advice: str | None = None) -> tuple[str, str | None]:
    """The precision a process runs at on this CPU, and a note when it is not what was asked for or not the CPU's own
    arithmetic: bf16 | fp32 as asked (bf16 on a CPU without BF16 kernels: one line, before anything runs, whose
    last words are ADVICE, default instead(); on one that only emulates it: run, and noted), auto = bf16 where the
    CPU has BF16 arithmetic, else fp32."""
    from xeontl.common.errors import UserError

    flags = cpu.get("flags") or ()
    have = bf16_kernels(flags)
    if precision == "bf16" and not have:
        raise UserError(f"precision bf16: this CPU ({cpu.get('model_name')}) has no oneDNN BF16 kernels (none of "
                        f"{', '.join(BF16_FLAGS)}): run on an AVX-512 or AMX host, or {advice or instead()}")
    if precision == "auto":
        if bf16_native(flags):
            return "bf16", None
        return "fp32", (f"auto: fp32, this CPU ({cpu.get('model_name')}) has no oneDNN BF16 kernels" if not have else
                        f"auto: fp32, this CPU ({cpu.get('model_name')}) has no BF16 arithmetic (no "
                        f"{' or '.join(BF16_NATIVE)}): oneDNN would only emulate BF16, slower than fp32")
    if precision == "bf16" and not bf16_native(flags):
        return "bf16", (f"bf16 emulated: this CPU ({cpu.get('model_name')}) has no BF16 arithmetic (no "
                        f"{' or '.join(BF16_NATIVE)}); oneDNN emulates it, slower than fp32")
    return precision, None


def configure_precision(precision: str, amp: str) -> dict:
    """BF16: TF's oneDNN auto mixed precision (a graph rewrite, the paper's AMP) or the Keras mixed_bfloat16 policy.
    `auto` (the offline profiles) resolves here, where the process runs, and says so."""
    import tensorflow as tf

    from xeontl.records.provenance import cpuinfo
    from xeontl.supply.stacks import amp_option

    precision, why = choose_precision(precision, cpuinfo())
    note = {"chosen": why} if why else {}
    if precision == "fp32":
        return {"precision": "fp32", "mechanism": None, **note}
    if amp == "onednn":
        option = amp_option(tf.__version__)  # its name differs between TF releases (xeontl.supply.stacks)
        tf.config.optimizer.set_experimental_options({option: True})
        return {"precision": "bf16", "mechanism": f"grappler {option}", **note}
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    return {"precision": "bf16", "mechanism": "keras mixed_bfloat16 policy", **note}


def isa_sample(precision: str, amp: str) -> None:
    """A short sample of the training math (conv + matmul under the run's precision). Run with ONEDNN_VERBOSE=1 it
    shows which ISA kernels oneDNN really dispatches: avx512_core_amx vs avx512_core_bf16 vs ..."""
    import tensorflow as tf

    configure_precision(precision, amp)
    x = tf.random.uniform((8, 56, 56, 64))
    conv = tf.keras.layers.Conv2D(64, 3, padding="same")
    dense = tf.keras.layers.Dense(256)

    @tf.function
    def f(x):
        return tf.reduce_sum(dense(tf.reshape(conv(x), (8, -1))[:, :512]))

    for _ in range(3):
        f(x).numpy()
