"""What oneDNN dispatched for this rank's own math, not a sample's: the training process runs with ONEDNN_VERBOSE=1,
and a thread takes oneDNN's lines off the process's standard output (fd 1, where oneDNN prints them) as they come,
tallies them (records.onednn.Tally) and passes every other byte on unchanged. Every primitive the rank executes is
counted, from its set-up (the standardizer's sample, the calibration) through training to the final evaluation: the
precision the run trained at is the one its kernels ran, BF16 or not, on the ISA they name.

oneDNN reads ONEDNN_VERBOSE once, at its first primitive: start() sets it before this process runs any op (a
process that ran one earlier records no lines, and a BF16 run with no kernel recorded is unhealthy, never assumed
native). oneDNN offers no switch to turn it off again from Python (TensorFlow does not export dnnl_set_verbose): a
process that calls train() in-process and runs ops after it prints oneDNN's lines on its stdout. Cost: a line per
primitive executed (the quick start's rank 0: 54,767), ~2 us each to split and tally here (docs/paper-runs.md)."""

from __future__ import annotations

import ctypes
import os
import threading

from xeontl.records import onednn

MARKERS = tuple(p.encode() for p in onednn.PREFIXES)
VAR = "ONEDNN_VERBOSE"
JOIN_SECONDS = 30
# what each rank records of its own tally at the end of its training (metrics.json ranks[].math_path); rank 0's
# whole tally is its probe's math_path
RANK_MATH = ("isas_dispatched", "bf16_kernels_seen", "amx_used", "verbose_lines", "unread_lines", "convolutions",
             "convolutions_bf16_share", "convolution_isa")
WHAT = ("this rank's training process (ONEDNN_VERBOSE=1): every oneDNN primitive it executed, set-up, calibration, "
        "training and final evaluation")


def summary_of(tally: dict) -> dict:
    """What a rank records of its whole tally (metrics.json ranks[].math_path): RANK_MATH, and every convolution kernel
    by name (records.ranks.health checks each one's ISA on every rank: the ISA most ran on alone hid 45 % of a rank's
    convolutions on another)."""
    return {**{k: tally[k] for k in RANK_MATH}, "convolution_kernels": onednn.convolution_kernels(tally)}


def _write_all(fd: int, data: bytes) -> None:
    while data:
        data = data[os.write(fd, data):]


def _flush_c_stdout() -> None:
    """oneDNN prints with C's stdio: what sits in its buffer is written before fd 1 changes."""
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):
        pass


class Capture:
    """start() ... result(): the tally of this process's oneDNN lines so far; stop() puts fd 1 back."""

    def __init__(self):
        self.tally = onednn.Tally()
        self.errors = 0
        self._lock = threading.Lock()
        self._saved: int | None = None
        self._before: str | None = None
        self._thread: threading.Thread | None = None
        self._stdout = None  # Python's own sys.stdout while fd 1 is the pipe

    def start(self) -> Capture:
        """oneDNN's switch on, fd 1 a pipe to the tallying thread. Python's own output (print, Keras' progress) keeps
        writing where fd 1 went before, not through the pipe: a rank killed at once (SIGKILL, the OOM killer) loses
        none of it, only oneDNN's lines still in the pipe."""
        import sys

        self._before = os.environ.get(VAR)
        os.environ[VAR] = "1"
        sys.stdout.flush()
        _flush_c_stdout()
        self._saved = os.dup(1)
        if _on_fd1(sys.stdout):
            self._stdout = sys.stdout
            sys.stdout = open(os.dup(self._saved), "w", buffering=1, encoding=sys.stdout.encoding,
                              errors=sys.stdout.errors)
        read, write = os.pipe()
        os.dup2(write, 1)
        os.close(write)
        self._thread = threading.Thread(target=self._drain, args=(read,), name="onednn-verbose", daemon=True)
        self._thread.start()
        return self

    def environ(self) -> dict[str, str]:
        """The process's environment as it was given: without the switch start() set."""
        env = {k: v for k, v in os.environ.items() if k != VAR}
        return env if self._before is None else {**env, VAR: self._before}

    def stop(self) -> None:
        if self._saved is None:
            return
        import sys

        sys.stdout.flush()
        _flush_c_stdout()
        if self._stdout is not None:
            sys.stdout.close()
            sys.stdout, self._stdout = self._stdout, None
        if self._before is None:  # oneDNN has read it: the caller's environment is put back for its next child
            os.environ.pop(VAR, None)
        else:
            os.environ[VAR] = self._before
        os.dup2(self._saved, 1)  # the pipe's last writer is gone: the thread reads to its end and stops
        self._thread.join(JOIN_SECONDS)  # a child that inherited fd 1 keeps the pipe open: never wait for it
        if not self._thread.is_alive():
            os.close(self._saved)
            self._saved = None

    def result(self) -> dict:
        with self._lock:
            got = self.tally.result()
            lines = self.tally.lines
        return {**got, "verbose_lines": lines, "unparsed_lines": self.errors, "source": "training",
                "what": WHAT}

    def summary(self) -> dict:
        return summary_of(self.result())

    def _drain(self, read: int) -> None:
        pending = b""
        try:
            while chunk := os.read(read, 1 << 16):
                pending = self._take(pending + chunk)
            self._take(pending, final=True)
        finally:
            os.close(read)

    def _take(self, data: bytes, final: bool = False) -> bytes:
        """Tally DATA's complete oneDNN lines, pass the rest on; return what must wait for more bytes (the start of a
        line that may still become a oneDNN line). A oneDNN line may follow other output on the same line (a
        progress bar's carriage return): what precedes its marker passes on."""
        out, lines = bytearray(), []
        *complete, tail = data.split(b"\n")
        for line in complete:
            at = _marker_at(line)
            if at < 0:
                out += line + b"\n"
            else:
                out += line[:at]
                lines.append(line[at:])
        at = _marker_at(tail)
        if final:
            out += tail[:at] if at >= 0 else tail
            lines += [tail[at:]] if at >= 0 else []
            tail = b""
        elif at >= 0:  # a oneDNN line not yet ended
            out += tail[:at]
            tail = tail[at:]
        else:
            keep = _marker_prefix(tail)
            out += tail[:len(tail) - keep]
            tail = tail[len(tail) - keep:]
        with self._lock:
            for line in lines:
                try:
                    self.tally.feed(line.decode("utf-8", "replace"))
                except Exception:  # a line it cannot read is counted, never a stalled pipe
                    self.errors += 1
        if out and self._saved is not None:
            try:
                _write_all(self._saved, bytes(out))
            except OSError:
                pass
        return tail


def _on_fd1(stream) -> bool:
    try:
        return stream.fileno() == 1
    except (AttributeError, OSError, ValueError):  # pytest's capture, a StringIO: not fd 1's writer
        return False


def _marker_at(line: bytes) -> int:
    return next((i for i in (line.find(m) for m in MARKERS) if i >= 0), -1)


def _marker_prefix(data: bytes) -> int:
    """How many bytes at DATA's end could begin a marker (kept until the next chunk says)."""
    for n in range(min(len(data), max(map(len, MARKERS)) - 1), 0, -1):  # the longest first
        if any(m.startswith(data[-n:]) for m in MARKERS):
            return n
    return 0
