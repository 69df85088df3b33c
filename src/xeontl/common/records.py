"""Every JSON record the program reads back, through one door: launch.json, config.json, metrics.json, plan.json,
provenance.json, the archive's and the assets' manifests, TFDS's xeontl-origin.json, and the text inputs a plan is made
from (a recorded `lscpu` file). A record is valid only when its schema (src/xeontl/schemas/KIND.schema.json) says so.

Before anything is parsed: a regular file only (opened O_NONBLOCK: a FIFO or /dev/zero is refused, never waited on or
read forever), at most MAX_BYTES, nesting at most MAX_DEPTH deep (counted by a scan, before json.loads could recurse).
Every failure is one UserError naming the file and the field (jsonschema's path to it)."""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
import stat
from importlib import resources
from pathlib import Path

from xeontl.common.errors import UserError, one_line

MAX_BYTES = 16 << 20  # far above any record the code writes (a provenance.json is ~30 KiB)
MAX_DEPTH = 64  # the deepest record the code writes nests 6 levels

# kind -> its schema file; the writer of each is ours unless said so (docker-save-manifest: `docker save`'s)
KINDS = {
    "launch": "launch.schema.json",  # launch.options.Options.record
    "config": "config.schema.json",  # experiment.config.save
    "metrics": "metrics.schema.json",  # launch.rundir.write_metrics (the trainer, the launcher, the report)
    "plan": "plan.schema.json",  # placement.plan.Plan.to_dict
    "provenance": "provenance.schema.json",  # records.provenance.write
    "archive-manifest": "archive-manifest.schema.json",  # supply.archive.make: xeontl-archive/manifest.json
    "archive-record": "archive-record.schema.json",  # supply.archive.load: ~/.cache/xeontl/archives/ID.json
    "docker-save-manifest": "docker-save-manifest.schema.json",  # `docker save`'s manifest.json (not ours)
    "oci-index": "oci-index.schema.json",  # `docker save`'s index.json, docker 25+ (not ours)
    "docker-image-config": "docker-image-config.schema.json",  # `docker save`'s <id>.json or config blob (not ours)
    "assets-manifest": "assets-manifest.schema.json",  # supply.assets.record: assets/manifest.json
    "assets-bundle": "assets-bundle.schema.json",  # supply.assets.export: xeontl-assets.json in a bundle
    "tfds-origin": "tfds-origin.schema.json",  # experiment.data.prepare_tfds: xeontl-origin.json
    "probe": "probe.schema.json",  # records.provenance.probe (rank 0's probe.json)
    "checkpoint-state": "checkpoint-state.schema.json",  # experiment.checkpoint.write: epoch-NNNN/state.json
    "repeats-summary": "repeats-summary.schema.json",  # launch.repeats.write: repeats-*/summary.json
    "mpijob": "mpijob-v2beta1.schema.json",  # engines.kubernetes.check: kubeflow/mpi-operator's v2beta1 CRD, vendored
}


# A run dir's records by file name: what a report, a comparison or a resumed run reads back.
RUN_FILES = {"metrics.json": "metrics", "plan.json": "plan", "provenance.json": "provenance", "config.json": "config",
             "launch.json": "launch", "probe.json": "probe"}


@functools.lru_cache(maxsize=None)
def schema(kind: str) -> dict:
    if kind not in KINDS:
        raise ValueError(f"no record kind {kind!r} (known: {', '.join(KINDS)})")
    return json.loads(resources.files("xeontl.schemas").joinpath(KINDS[kind]).read_text())


@functools.lru_cache(maxsize=None)
def validator(kind: str):
    """KIND's schema as one jsonschema validator, made once per process: jsonschema.validate() checks the schema
    against its meta-schema on every call, 90 % of a record's check (the schemas themselves are held to their
    meta-schema once, in tests/test_records.py)."""
    import jsonschema

    return jsonschema.validators.validator_for(schema(kind))(schema(kind), format_checker=_formats())


# The kernel's list syntax ('0-3,8-9': cpuset, Cpus_allowed_list, numactl): ranges low to high, numbers below the
# kernel's largest NR_CPUS (8192) with room, so a list read back parses, and parses small (a schema's pattern cannot
# say "low to high": "223-0" and "0-4294967295" passed it)
CPULIST_MAX = 1 << 16


def is_cpulist(text) -> bool:
    if not isinstance(text, str):
        return True  # the type is the schema's "type" to check
    if not re.fullmatch(r"[0-9]{1,6}(-[0-9]{1,6})?(,[0-9]{1,6}(-[0-9]{1,6})?)*", text):  # no 4300-digit int()
        return False
    total = 0  # and few enough in all: 600 ranges of 65536 were 40 million numbers to parse (the fifteenth round)
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        if int(hi or lo) < int(lo) or int(hi or lo) >= CPULIST_MAX:
            return False
        total += int(hi or lo) - int(lo) + 1
    return total <= CPULIST_MAX


@functools.lru_cache(maxsize=None)
def _formats():
    """The formats the schemas name that are checked: ours only ("cpulist"); none of jsonschema's optional ones."""
    import jsonschema

    checker = jsonschema.FormatChecker(formats=())
    checker.checks("cpulist")(is_cpulist)
    return checker


def validate(doc, kind: str) -> None:
    """DOC as a KIND record, or jsonschema's ValidationError: the error
    jsonschema.validate() would raise (its best_match: the most relevant one, naming the field)."""
    import jsonschema

    error = jsonschema.exceptions.best_match(validator(kind).iter_errors(doc))
    if error is not None:
        raise error


def read_bytes(path: Path | str, what: str = "file", limit: int = MAX_BYTES, follow: bool = True) -> bytes:
    """PATH's bytes: a regular file of at most LIMIT bytes, or one line. Opened without blocking (a FIFO planted in
    its place is refused, not waited on) and read through the descriptor that was checked. follow=False: a symlink is
    refused too (what a run's container wrote, read back by the launcher)."""
    path = Path(path)
    not_regular = f"cannot read {what} {path}: not a regular file (a device, FIFO, directory{', link' * (not follow)})"
    nofollow = 0 if follow else os.O_NOFOLLOW
    try:  # a device is never even opened (opening some acts); what is opened is checked again on its descriptor
        if not stat.S_ISREG((os.stat if follow else os.lstat)(path).st_mode):
            raise UserError(not_regular)
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | nofollow | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise UserError(f"cannot read {what} {path} ({e.strerror})") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise UserError(not_regular)
        if st.st_size > limit:
            raise UserError(f"cannot read {what} {path}: {st.st_size} bytes, more than the {limit >> 10} KiB "
                            f"such a file can be")
        chunks, got = [], 0
        while got <= limit:  # a file growing under us is cut at the limit, not read on
            chunk = os.read(fd, min(1 << 20, limit + 1 - got))
            if not chunk:
                break
            chunks.append(chunk)
            got += len(chunk)
        if got > limit:
            raise UserError(f"cannot read {what} {path}: more than the {limit >> 10} KiB such a file can be")
        return b"".join(chunks)
    except OSError as e:
        raise UserError(f"cannot read {what} {path} ({e.strerror})") from None
    finally:
        os.close(fd)


def read_text(path: Path | str, what: str = "file", limit: int = MAX_BYTES, follow: bool = True) -> str:
    """PATH as UTF-8 text (read_bytes' bounds), or one line."""
    data = read_bytes(path, what, limit, follow)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise UserError(f"cannot read {what} {path}: not UTF-8 text (byte {e.start})") from None


# A JSON string, or an unterminated one to the end of the text: every match attempt from a quote succeeds, so the scan
# is linear whatever the text (a pattern that could fail there would retry from every escaped quote: quadratic).
_STRING = re.compile(r'"(?:[^"\\]|\\.)*(?:"|\\?\Z)', re.S)


def depth(text: str, stop: int = MAX_DEPTH) -> int:
    """How deep TEXT's JSON arrays and objects nest (strings skipped), counted up to STOP + 1 at most: cheap, and
    before json.loads, whose recursion a deep document would exhaust."""
    deepest = level = 0
    for c in re.sub(r"[^\[\]{}]", "", _STRING.sub("", text)):
        level += 1 if c in "[{" else -1
        if level > deepest:
            deepest = level
            if deepest > stop:
                break
    return deepest


def _field(path) -> str:
    return "/".join(map(str, path)) or "(the whole record)"


def parse(data: bytes | str, kind: str, where: str, refused: str | None = None):
    """DATA as a record of KIND (bytes already read: a tar member, a ConfigMap's file), validated. A failure is one
    line: WHERE (what names the record), what is wrong (the field, by its path), and REFUSED (what that means for the
    caller; default: not a KIND record this version writes)."""
    refused = refused or f"not a {kind} record this version writes"
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as e:
        raise UserError(f"{where}: not UTF-8 text (byte {e.start}): {refused}") from None
    if len(text) > MAX_BYTES:
        raise UserError(f"{where}: more than the {MAX_BYTES >> 10} KiB a record can be: {refused}")
    # a text this process already found valid as KIND is valid again: a verdict reads every committed run twice, and
    # the depth scan and the schema check were most of its time (the key is the text's digest: a changed file is
    # checked anew, whole)
    key = (kind, hashlib.sha256(text.encode("utf-8", "surrogatepass")).digest())  # a str may hold a lone surrogate
    if key not in _VALID and depth(text) > MAX_DEPTH:
        raise UserError(f"{where}: nested more than {MAX_DEPTH} levels deep: {refused}")
    try:
        doc = json.loads(text, parse_constant=_no_constant)  # NaN, Infinity: not JSON (RFC 8259), never ours
    except (ValueError, RecursionError) as e:
        raise UserError(f"{where}: not JSON ({one_line(str(e))[:100]}): {refused}") from None
    if key in _VALID:
        return doc
    error = next(validator(kind).iter_errors(doc), None)  # the first: a huge bad record is refused at once, not ranked
    if error is not None:
        message = one_line(error.message)  # jsonschema quotes the value with repr: control characters escaped
        message = message if len(message) <= 160 else message[:157] + "..."
        raise UserError(f"{where}: field {_field(error.absolute_path)}: {message}: {refused}")
    if len(_VALID) >= 4096:
        _VALID.clear()
    _VALID.add(key)
    return doc


_VALID: set[tuple[str, bytes]] = set()


def loads(text: str | bytes):
    """JSON as RFC 8259 has it: NaN and Infinity refused (ValueError), as every reader here refuses them."""
    return json.loads(text, parse_constant=_no_constant)


def _no_constant(name: str):
    raise ValueError(f"{name} is not a JSON number")


REQUIRED = object()  # read_record's default: a missing file is one line too


def read_record(path: Path | str, kind: str, missing=REQUIRED):
    """PATH's record of KIND, validated against its schema; MISSING if there is no such file (unless left REQUIRED:
    then a missing file is one line too). Every failure: a UserError naming the file and the field."""
    path = Path(path)
    if missing is not REQUIRED and not os.path.lexists(path):
        return missing
    return parse(read_bytes(path), kind, str(path))
