"""oneDNN's own account of what it ran: the lines it prints under ONEDNN_VERBOSE=1 (`onednn_verbose,...`; v2.x's
`dnnl_verbose,...`), tallied as they come (a training rank's whole run is hundreds of thousands of them) or parsed
from a finished process's output. A leaf module: the training rank, the provenance probe and the bench's probes
all read the same lines the same way.

An execution line names the primitive's kind, its kernel and the data types of its operands: `exec,cpu,convolution,
brgconv:avx512_core_amx,forward_inference,src_bf16::blocked:acdb::f0 wei_bf16:... dst_bf16:...,...`. A kernel's name
is the ISA it was built for, not the data it ran on (oneDNN names an FP32 softmax on an AVX512-BF16 CPU
`jit:avx512_core_bf16`): what ran on BF16 is read from the operands' types, and the run's math path from its
convolutions (the frozen backbone: almost all of the work, and the ops BF16 AMP rewrites)."""

from __future__ import annotations

import re

PREFIXES = ("onednn_verbose,", "dnnl_verbose,")
# oneDNN's CPU ISAs as its kernels name them, most capable first: (name, BF16 dot products in hardware, AMX).
# Transcribed from oneDNN's own list (doc/performance_considerations/dispatcher_control.md at oneapi-src/oneDNN
# 0301384: "SSE41 < AVX < AVX2 < AVX2_VNNI < AVX2_VNNI_2, AVX2 < AVX512_CORE < AVX512_CORE_VNNI < AVX512_CORE_BF16 <
# AVX10_1_512 < AVX10_1_512_AMX < AVX10_1_512_AMX_FP16", with the aliases AVX512_CORE_FP16 = AVX10_1_512,
# AVX512_CORE_AMX = AVX10_1_512_AMX, AVX512_CORE_AMX_FP16 = AVX10_1_512_AMX_FP16) and the v2.x names the paper's
# TF 2.10 carries as its kernels print them (src/cpu/x64/cpu_isa_traits.hpp at v2.6, JIT_IMPL_NAME_HELPER: the enum
# avx512_core_bf16_amx_bf16 prints as "avx512_core_amx_bf16", avx512_core_bf16_amx_int8 as "avx512_core_amx_int8";
# avx512_common, avx512_mic, avx512_mic_4ops). AVX2_VNNI_2's BF16 is conversions, not dot products; AMX-INT8 has no
# BF16. A name not here is read as printed, ranks below every vector ISA here (above gemm:jit and ref), and is never
# a BF16 unit: unknown is never equal.
ISAS = (
    ("avx10_1_512_amx_fp16", True, True), ("avx512_core_amx_fp16", True, True),
    ("avx10_1_512_amx", True, True), ("avx512_core_amx", True, True),
    ("avx512_core_amx_bf16", True, True), ("avx512_core_amx_int8", False, True),
    ("avx10_1_512", True, False), ("avx512_core_fp16", True, False),
    ("avx512_core_bf16", True, False), ("avx512_core_bf16_ymm", True, False),
    ("avx512_core_vnni", False, False), ("avx512_core", False, False),
    ("avx512_common", False, False), ("avx512_mic_4ops", False, False), ("avx512_mic", False, False),
    ("avx2_vnni_2", False, False), ("avx2_vnni", False, False), ("avx2", False, False), ("avx", False, False),
    ("sse41", False, False), ("gemm:jit", False, False), ("ref", False, False))
ISA_RANK = {name: i for i, (name, _, _) in enumerate(ISAS)}
BF16_UNIT = {name for name, bf16, _ in ISAS if bf16}
AMX = {name for name, _, amx in ISAS if amx}
AMX_BF16 = AMX & BF16_UNIT  # AMX's BF16 kernels: AMX-INT8 has no BF16
# a kernel's ISA is the whole token after its family (brgconv:avx512_core_amx, jit_1x1:avx2): read whole, never a
# known prefix of it (avx512_core_fp16 is not avx512_core)
ISA_NAMES = re.compile(r"(?<![0-9a-z_])((?:avx|sse|amx)[0-9a-z_]*|gemm:jit|ref)(?![0-9a-z_])")
VERSION = re.compile(r",info,oneDNN (v[\d.]+)")
OPERANDS = ("src", "wei")  # a primitive runs on BF16 when its source or weights are BF16
MAIN = "convolution"  # the kind whose kernels are the run's math path


class Tally:
    """Counts of the kernels oneDNN executed, by kind and kernel, how many of each kind ran on BF16 operands, its
    version and the ISA it detected. feed() takes one line at a time; result() is the record (`math_path`)."""

    def __init__(self):
        self.version: str | None = None
        self.isa_line: str | None = None
        self.implementations: dict[str, int] = {}
        self.kinds: dict[str, dict] = {}
        self.lines = 0
        self.unread = 0  # execution lines it could not read (another format)

    def feed(self, line: str) -> None:
        if not line.startswith(PREFIXES):
            return
        self.lines += 1
        if ",info," in line:
            if ",info,cpu,isa:" in line and self.isa_line is None:
                self.isa_line = line.split(",info,", 1)[1].split(",", 1)[1]
            if self.version is None and (m := VERSION.search(line)):
                self.version = m[1]
            return
        parts = line.split(",", 9)
        # `exec` is the second field, or later where oneDNN adds fields first (a timestamp, a "primitive" tag)
        at = next((i for i in (1, 2, 3) if len(parts) > i and parts[i] == "exec"), None)
        if at is None:
            self.unread += ",exec," in line
            return
        fields = parts[at + 1:at + 6]
        if len(fields) < 5 or fields[0] != "cpu":
            self.unread += 1
            return
        kind, impl, data = fields[1], fields[2], fields[4]
        # a primitive names its kernel (brgconv:avx512_core_amx, gemm:jit, ...); TF's plain matmul calls oneDNN's
        # sgemm API, whose lines leave it empty: then the kind (gemm_api) is what ran, at the ISA line's level
        name = impl or kind
        self.implementations[name] = self.implementations.get(name, 0) + 1
        k = self.kinds.setdefault(kind, {"executions": 0, "bf16": 0, "kernels": {}})
        k["executions"] += 1
        k["bf16"] += any(t.split(":", 1)[0] in (f"{o}_bf16" for o in OPERANDS) for t in data.split())
        k["kernels"][name] = k["kernels"].get(name, 0) + 1

    def result(self) -> dict:
        isas = sorted({m for impl in self.implementations for m in ISA_NAMES.findall(impl)})
        main = self.kinds.get(MAIN) or {"executions": 0, "bf16": 0, "kernels": {}}
        return {"onednn_version": self.version, "cpu_isa": self.isa_line, "implementations": dict(self.implementations),
                "kinds": {k: {**v, "kernels": dict(v["kernels"])} for k, v in self.kinds.items()},
                "isas_dispatched": isas, "bf16_kernels_seen": any(v["bf16"] for v in self.kinds.values()),
                "amx_used": any(i in AMX for i in isas), "unread_lines": self.unread,
                "convolutions": main["executions"],
                "convolutions_bf16_share": round(main["bf16"] / main["executions"], 4) if main["executions"] else None,
                "convolution_isa": kernel_isa(main["kernels"])}


def isa_rank(name: str) -> float:
    """Where NAME stands among oneDNN's ISAs (0: most capable); an unknown one below every vector ISA, above the
    generic gemm:jit and ref (a newer oneDNN's ISA is a vector ISA still)."""
    return ISA_RANK.get(name, ISA_RANK["gemm:jit"] - 0.5)


def isa_of(kernel: str) -> str | None:
    """The ISA a kernel's name gives (brgconv:avx512_core_amx: avx512_core_amx), None where it gives none (jit:uni)."""
    found = ISA_NAMES.findall(kernel)
    return found[0] if found else None


def convolution_kernels(tally: dict | None) -> dict | None:
    """A tally's convolution kernels by name: a whole tally's (its kinds: rank 0's in provenance.json, and what each
    rank's summary is made from), a rank's summary's (metrics.json, since 2026-12-07); None where it kept none (a
    rank's summary before)."""
    tally = tally or {}
    if "kinds" in tally:
        return dict(((tally["kinds"] or {}).get(MAIN) or {}).get("kernels") or {})
    return tally.get("convolution_kernels")


def kernel_isa(kernels: dict[str, int]) -> str | None:
    """The ISA most of KERNELS' executions ran on (None: none names one)."""
    by_isa: dict[str, int] = {}
    for name, count in kernels.items():
        if (isa := isa_of(name)) is not None:
            by_isa[isa] = by_isa.get(isa, 0) + count
    return max(by_isa, key=lambda i: (by_isa[i], i)) if by_isa else None


def parse(stdout: str) -> dict:
    """A finished process's output, whole."""
    tally = Tally()
    for line in stdout.splitlines():
        tally.feed(line)
    return tally.result()
