"""Where the bf16 matmul stops on this host, below TensorFlow: oneDNN's matmul called directly, and the tile unit
alone.

TensorFlow's MatMul hands oneDNN plain row-major weights on every call, so oneDNN's AMX kernel packs them into its
tile layout inside each call; oneDNN's own API lets a caller reorder weights once into the layout the kernel asks
for (what inference engines do with frozen weights). Intel-TF 2.14 keeps its oneDNN (v3.2.1) private, so this calls
the same release line's C API (v3.2.0, the onednn-cpu-gomp wheel's libdnnl) through ctypes, in a process without
TensorFlow. `tmul` measures the tile unit itself: TDPBF16PS on tiles held in registers, no memory traffic, the
ceiling any kernel on this core can reach (a 60-line C file compiled here; no compiler, no figure, and it says so).
"""

from __future__ import annotations

import ctypes as C
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# enum values of oneDNN v3.2's dnnl_types.h / dnnl_common_types.h (read off its headers with a C compiler)
_ANY, _AB, _BF16, _F32 = 1, 3, 2, 3  # dnnl_format_tag_any, dnnl_ab; dnnl_bf16, dnnl_f32
_Q_IMPL, _Q_WEIGHTS_MD, _CPU_ENGINE, _STREAM_DEFAULT = 8, 131, 1, 1  # dnnl_query_impl_info_str, _weights_md
_ARG_SRC, _ARG_DST, _ARG_WEIGHTS = 1, 17, 33  # DNNL_ARG_SRC (= _FROM), DNNL_ARG_DST (= _TO), DNNL_ARG_WEIGHTS
_ALLOCATE = C.c_void_p(-1)  # DNNL_MEMORY_ALLOCATE
CALL_BUDGET_S = 4.0  # a size whose call would take longer (at the last size's rate) is left out and named
MIN_TIMED_S = 0.05  # each repeat times at least this long (many calls of a small matmul)
# The curve starts where the operands fit a core's L2 (256^2: 384 KiB with the fp32 result), the kernel's own
# ceiling, and doubles to the caller's largest (the 1024-8192 as through TensorFlow)
SMALLEST = 256


_UNIMPLEMENTED = 3  # dnnl_unimplemented


class UnimplementedError(RuntimeError):
    pass


class _Arg(C.Structure):
    _fields_ = [("arg", C.c_int), ("memory", C.c_void_p)]


def library() -> Path:
    """libdnnl of the onednn-cpu-gomp wheel: pip puts its data files under the environment's prefix."""
    return Path(sys.prefix) / "lib" / "libdnnl.so.3"


class OneDNN:
    """The few C calls a matmul needs: an engine and a stream, memory, the matmul and reorder primitives."""

    def __init__(self, path: Path | None = None):
        path = path or library()
        try:
            self.lib = C.CDLL(str(path))
        except OSError as e:
            raise RuntimeError(f"{path}: {e}: `invoke setup --native` installs the lock's onednn-cpu-gomp") from e
        self.lib.dnnl_primitive_desc_query_md.restype = C.c_void_p
        self.lib.dnnl_memory_desc_get_size.restype = C.c_size_t
        self.engine, self.stream = C.c_void_p(), C.c_void_p()
        self._ok(self.lib.dnnl_engine_create(C.byref(self.engine), _CPU_ENGINE, 0), "engine")
        self._ok(self.lib.dnnl_stream_create(C.byref(self.stream), self.engine, _STREAM_DEFAULT), "stream")

    @staticmethod
    def _ok(status: int, what: str) -> None:
        if status == _UNIMPLEMENTED:
            raise UnimplementedError(f"oneDNN v3.2 has no {what} for this CPU (dnnl_unimplemented)")
        if status != 0:
            raise RuntimeError(f"oneDNN {what}: status {status}")

    def desc(self, dims: tuple[int, ...], dtype: int, tag: int) -> C.c_void_p:
        d = C.c_void_p()
        self._ok(self.lib.dnnl_memory_desc_create_with_tag(C.byref(d), len(dims), (C.c_int64 * 12)(*dims), dtype,
                                                           tag), "memory desc")
        return d

    def memory(self, desc: C.c_void_p, fill_bf16: bool = False) -> C.c_void_p:
        m = C.c_void_p()
        self._ok(self.lib.dnnl_memory_create(C.byref(m), desc, self.engine, _ALLOCATE), "memory")
        if fill_bf16:  # uniform [0, 1) as bf16 bit patterns (the top half of fp32's)
            import numpy as np

            h = C.c_void_p()
            self._ok(self.lib.dnnl_memory_get_data_handle(m, C.byref(h)), "data handle")
            n = self.lib.dnnl_memory_desc_get_size(desc) // 2
            bits = np.random.default_rng(0).random(n, dtype=np.float32).view(np.uint32) >> 16
            np.ctypeslib.as_array(C.cast(h, C.POINTER(C.c_uint16)), (n,))[:] = bits.astype(np.uint16)
        return m

    def primitive(self, pd: C.c_void_p) -> C.c_void_p:
        p = C.c_void_p()
        self._ok(self.lib.dnnl_primitive_create(C.byref(p), pd), "primitive")
        return p

    def run(self, prim: C.c_void_p, args: list[tuple[int, C.c_void_p]]) -> float:
        """Execute and wait; seconds."""
        arr = (_Arg * len(args))(*[_Arg(a, m) for a, m in args])
        t0 = time.perf_counter()
        self._ok(self.lib.dnnl_primitive_execute(prim, self.stream, len(args), arr), "execute")
        self._ok(self.lib.dnnl_stream_wait(self.stream), "stream wait")
        return time.perf_counter() - t0

    def matmul(self, n: int, weights: str, repeats: int) -> dict:
        """An n x n x n bf16 matmul (fp32 out). weights="plain": row-major, packed by the kernel inside each call
        (TensorFlow's case); "once": reordered once, before timing, into the layout the primitive asks for."""
        src_md, dst_md = self.desc((n, n), _BF16, _AB), self.desc((n, n), _F32, _AB)
        user_md = self.desc((n, n), _BF16, _AB)
        pd = C.c_void_p()
        self._ok(self.lib.dnnl_matmul_primitive_desc_create(
            C.byref(pd), self.engine, src_md, user_md if weights == "plain" else self.desc((n, n), _BF16, _ANY),
            None, dst_md, None), "bf16 matmul")
        impl = C.c_char_p()
        self._ok(self.lib.dnnl_primitive_desc_query(pd, _Q_IMPL, 0, C.byref(impl)), "implementation")
        src, dst, user = self.memory(src_md, True), self.memory(dst_md), self.memory(user_md, True)
        wei, reorder_s = user, None
        if weights == "once":
            want = C.c_void_p(self.lib.dnnl_primitive_desc_query_md(pd, _Q_WEIGHTS_MD, 0))
            wei, rpd = self.memory(want), C.c_void_p()
            self._ok(self.lib.dnnl_reorder_primitive_desc_create(C.byref(rpd), user_md, self.engine, want,
                                                                 self.engine, None), "reorder")
            reorder_s = self.run(self.primitive(rpd), [(_ARG_SRC, user), (_ARG_DST, wei)])
        prim = self.primitive(pd)
        args = [(_ARG_SRC, src), (_ARG_WEIGHTS, wei), (_ARG_DST, dst)]
        for _ in range(2):  # warm-up: first touch of dst, the kernel's scratchpad
            first = self.run(prim, args)
        calls = max(1, round(MIN_TIMED_S / first))  # a 256^2 call takes ~20 us: time enough calls to see it
        call_s = statistics.median(sum(self.run(prim, args) for _ in range(calls)) / calls for _ in range(repeats))
        return {"gflops": 2 * n ** 3 / 1e9 / call_s, "call_s": call_s, "calls_per_repeat": calls,
                "implementation": impl.value.decode(), "reorder_once_s": reorder_s}


def curve(largest: int, repeats: int, smallest: int = SMALLEST) -> dict:
    """Square bf16 matmuls from SMALLEST up to LARGEST, doubling, weights plain (packed per call) and reordered
    once, interleaved per size; a size whose call would take over CALL_BUDGET_S is left out and named."""
    dnnl = OneDNN()
    points, skipped, n = [], [], smallest
    while n <= largest:
        if points and 2 * n ** 3 / 1e9 / points[-1]["plain"]["gflops"] > CALL_BUDGET_S:
            skipped.append(n)
        else:
            try:
                points.append({"size": n, **{w: dnnl.matmul(n, w, repeats) for w in ("plain", "once")}})
            except UnimplementedError as e:  # a CPU without any bf16 matmul in this oneDNN: said, not failed
                return {"median": None, "skipped": str(e), "library": str(library())}
        n *= 2
    return {"median": max(max(p["plain"]["gflops"], p["once"]["gflops"]) for p in points), "unit": "gflop/s",
            "points": points, "library": str(library()),
            "left_out": {"sizes": skipped, "why": f"a call would take over {CALL_BUDGET_S:g} s"} if skipped else None}


TMUL_SOURCE = Path(__file__).with_name("tmul.c")
TMUL_FLOP_PER_ITERATION = 4 * 16 * 16 * 32 * 2  # four TDPBF16PS of 16x16 outputs over 32 bf16 pairs


def tmul(repeats: int, iterations: int = 20_000_000) -> dict:
    """The tile unit's own bf16 rate on this core (GFLOP/s, median of REPEATS runs of ITERATIONS x 4 TDPBF16PS):
    what AMX delivers with no memory traffic at all."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if not cc:
        return {"median": None, "skipped": "no C compiler (cc) on this host to build the AMX probe"}
    with tempfile.TemporaryDirectory() as tmp:
        exe = Path(tmp) / "tmul"
        built = subprocess.run([cc, "-O2", "-mamx-tile", "-mamx-bf16", "-o", str(exe), str(TMUL_SOURCE)],
                               capture_output=True, text=True)
        if built.returncode != 0:
            return {"median": None, "skipped": f"{cc} could not build the AMX probe: {built.stderr.strip()[-200:]}"}
        runs = []
        for _ in range(repeats):
            out = subprocess.run([str(exe), str(iterations)], capture_output=True, text=True)
            if out.returncode != 0:
                return {"median": None, "reason": (out.stderr or out.stdout).strip()[-200:] or "the AMX probe failed"}
            runs.append(json.loads(out.stdout)["seconds"])
    s = statistics.median(runs)
    return {"median": iterations * TMUL_FLOP_PER_ITERATION / s / 1e9, "unit": "gflop/s", "seconds": runs,
            "basis": f"{iterations} x 4 TDPBF16PS (16x16 fp32 += 16x32 . 32x16 bf16) on tiles in registers, "
                     f"4 independent accumulators; {cc}"}
