"""oneDNN's own account of what it ran: the lines it prints under ONEDNN_VERBOSE=1 (`onednn_verbose,...`; v2.x's
`dnnl_verbose,...`), tallied as they come (a training rank's whole run is hundreds of thousands of them) or parsed
from a finished process's output. A leaf module: the training rank, the provenance probe and the bench's probes
all read the same lines the same way."""

from __future__ import annotations

import re

PREFIXES = ("onednn_verbose,", "dnnl_verbose,")
ISA_NAMES = re.compile(r"(avx512_core_amx\w*|avx512_core_bf16|avx512_core_vnni|avx512_core|avx2_vnni\w*|avx2|sse41|"
                       r"gemm:jit|ref)")
VERSION = re.compile(r",info,oneDNN (v[\d.]+)")


class Tally:
    """Counts of the kernels oneDNN executed, whether any of them ran on BF16 data, its version and the ISA it
    detected. feed() takes one line at a time; result() is the record (provenance's `math_path`)."""

    def __init__(self):
        self.version: str | None = None
        self.isa_line: str | None = None
        self.implementations: dict[str, int] = {}
        self.bf16 = False
        self.lines = 0

    def feed(self, line: str) -> None:
        if not line.startswith(PREFIXES):
            return
        self.lines += 1
        if ",info," in line:
            if ",info,cpu,isa:" in line and self.isa_line is None:
                self.isa_line = line.split(",", 3)[-1]
            if self.version is None and (m := VERSION.search(line)):
                self.version = m[1]
            return
        parts = line.split(",", 6)
        if len(parts) > 6 and parts[1] == "exec" and parts[2] == "cpu":
            # a primitive names its kernel (brgconv:avx512_core_amx, gemm:jit, ...); TF's plain matmul calls oneDNN's
            # sgemm API, whose lines leave it empty: then the kind (gemm_api) is what ran, at the ISA line's level
            name = parts[4] or parts[3]
            self.implementations[name] = self.implementations.get(name, 0) + 1
            self.bf16 |= "bf16" in line

    def result(self) -> dict:
        isas = sorted({m for impl in self.implementations for m in ISA_NAMES.findall(impl)})
        return {"onednn_version": self.version, "cpu_isa": self.isa_line, "implementations": dict(self.implementations),
                "isas_dispatched": isas, "bf16_kernels_seen": self.bf16, "amx_used": any("amx" in i for i in isas)}


def parse(stdout: str) -> dict:
    """A finished process's output, whole."""
    tally = Tally()
    for line in stdout.splitlines():
        tally.feed(line)
    return tally.result()
