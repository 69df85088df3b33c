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


def configure_precision(precision: str, amp: str) -> dict:
    """BF16: TF's oneDNN auto mixed precision (a graph rewrite, the paper's AMP) or the Keras mixed_bfloat16 policy."""
    import tensorflow as tf

    if precision == "fp32":
        return {"precision": "fp32", "mechanism": None}
    if amp == "onednn":
        tf.config.optimizer.set_experimental_options({"auto_mixed_precision_onednn_bfloat16": True})
        return {"precision": "bf16", "mechanism": "grappler auto_mixed_precision_onednn_bfloat16"}
    tf.keras.mixed_precision.set_global_policy("mixed_bfloat16")
    return {"precision": "bf16", "mechanism": "keras mixed_bfloat16 policy"}


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
