"""Every record read back goes through records.read_record: a regular file, bounded in size and depth, valid by its
schema, or one line naming the file and the field (issue 39: typed records for everything read back). The schemas are
held to their writers; the valid records here are what the code writes (`python -m xeontl config`, Options.record,
Plan.to_dict, rundir.write_metrics, the committed reference runs), never built by hand; the bad ones are those records
damaged. Then every traceback the issue reproduced, through the real entry points (`python -m xeontl`, `invoke`), table
driven: one `xeontl: error:` line, exit 2 (1 for a full disk), nothing written."""

import errno
import gzip
import hashlib
import io
import json
import os
import sys
import tarfile
from pathlib import Path

import pytest

from conftest import ROOT, SPR, invoke, one_line_error, run, scaled
from xeontl.common import records
from xeontl.common.errors import UserError
from xeontl.experiment import config
from xeontl.launch import options, rundir
from xeontl.launch.options import Options
from xeontl.placement import plan as planlib
from xeontl.placement import topology

REFERENCE = ROOT / "results" / "reference" / "20261130-233112-demo-2s-dd8d"  # a run the code wrote, committed
DEEP = "[" * 5000 + "]" * 5000  # deep enough that json.loads alone would raise RecursionError at a low limit


def deep_object(n: int = 3000) -> str:
    return '{"a": ' * n + "1" + "}" * n


def python(*args, timeout=None):
    return run([sys.executable, "-m", "xeontl", *args], timeout=timeout or scaled(120),
               env={"PYTHONPATH": str(ROOT / "src")})


# ------------------------------------------------------------------------------------------------ what the code writes
def written() -> dict[str, bytes]:
    """A record of each kind, as the code writes it."""
    out = {"config": python("config", "--profile", "demo").stdout.encode(),
           "launch": json.dumps(Options(profile="smoke").record(), indent=1).encode(),
           "plan": json.dumps(planlib.make_plan(topology.load_file(SPR), 2).to_dict(), indent=1).encode(),
           "provenance": (REFERENCE / "provenance.json").read_bytes()}
    return out


@pytest.fixture(scope="module")
def samples(tmp_path_factory):
    out = written()
    d = tmp_path_factory.mktemp("metrics")
    rundir.write_metrics(d, rundir.PLACEHOLDER)  # the launcher's record of a staged run
    out["metrics"] = (d / "metrics.json").read_bytes()
    return out


def test_what_the_code_writes_reads_back_whole(samples, tmp_path):
    for kind, body in samples.items():
        f = tmp_path / f"{kind}.json"
        f.write_bytes(body)
        assert records.read_record(f, kind) == json.loads(body), kind
    for name, kind in records.RUN_FILES.items():  # every committed reference run reads back (older versions too)
        for f in (ROOT / "results" / "reference").rglob(name):
            records.read_record(f, kind)
    for f in (ROOT / "results" / "reference").glob("repeats-*/summary.json"):
        records.read_record(f, "repeats-summary")
    from xeontl.launch import repeats

    summary = json.dumps(repeats.summarize([REFERENCE]), default=str)  # as repeats.write writes it
    assert records.parse(summary, "repeats-summary", "summary.json") == json.loads(summary)


@pytest.mark.parametrize("kind", list(records.KINDS))
def test_every_schema_is_valid_against_its_meta_schema_once_and_its_validator_is_made_once(kind):
    """The readers validate through one validator per kind, made once per process (records.validator): jsonschema's
    own validate() re-checked the schema on every record. So the schemas are held to their meta-schema here, and a
    validator made twice (the cost back) fails."""
    import jsonschema

    schema = records.schema(kind)
    jsonschema.validators.validator_for(schema).check_schema(schema)
    assert records.validator(kind) is records.validator(kind)


def test_the_schemas_name_what_their_writers_write():
    """The closed lists of the schemas are the code's own: a field added to a writer fails here until its schema
    says so, and launch.json's environment names are the plan's own."""
    launch = records.schema("launch")
    assert set(launch["properties"]) == {*options.LAUNCH_KEYS, "resume"}
    assert set(launch["properties"]["extra_env"]["propertyNames"]["enum"]) == set(planlib.ENV_NAMES)
    cfg = records.schema("config")
    assert set(cfg["properties"]) == {*config.FIELDS, "profile"}
    kinds = {int: "integer", float: "number", bool: "boolean", str: "string"}
    assert {k: cfg["properties"][k]["type"] for k in config.FIELDS} == {k: kinds[f.type] for k, f in
                                                                        config.FIELDS.items()}
    plan = records.schema("plan")
    d = planlib.make_plan(topology.load_file(SPR), 2, emulate=True, hosts="a:2,b:2").to_dict()
    assert set(plan["required"]) == set(plan["properties"]) == set(d)
    assert set(plan["properties"]["env"]["propertyNames"]["enum"]) <= set(planlib.ENV_NAMES)
    assert set(plan["properties"]["workers"]["items"]["required"]) == set(d["workers"][0])


# ------------------------------------------------------------------------------------------------ the reader's bounds
@pytest.mark.parametrize("make,needle", [
    (lambda p: None, "No such file"),
    (lambda p: os.mkfifo(p), "not a regular file"),  # opened O_NONBLOCK: never waits for a writer
    (lambda p: p.mkdir(), "not a regular file"),
    (lambda p: p.write_text(" " * (records.MAX_BYTES + 1)), "more than"),
    (lambda p: p.write_bytes(b"\xff\xfe{}"), "not UTF-8"),
    (lambda p: p.write_text(DEEP), "nested more than 64 levels"),
    (lambda p: p.write_text(deep_object()), "nested more than 64 levels"),
    (lambda p: p.write_text('["' + "[" * 100 + '"]'), "is not of type 'object'"),  # brackets inside a string: depth 1
    (lambda p: p.write_text("[1, 2]"), "field (the whole record): [1, 2] is not of type 'object'"),
    (lambda p: p.write_text('{"status": "success", "workers": "2"}'), "field workers: '2' is not of type"),
    # issue 39 adversarial review: Python's json reads NaN and Infinity, which are not JSON and never ours
    (lambda p: p.write_text('{"status": "success", "images_per_sec": NaN}'), "NaN is not a JSON number"),
    (lambda p: p.write_text('{"status": "success", "images_per_sec": -Infinity}'), "-Infinity is not a JSON number"),
])
def test_a_bad_record_file_is_one_line(tmp_path, make, needle):
    p = tmp_path / "metrics.json"
    make(p)
    before = sorted(tmp_path.iterdir())
    with pytest.raises(UserError, match=None) as e:
        records.read_record(p, "metrics")
    assert needle in str(e.value) and str(p) in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert sorted(tmp_path.iterdir()) == before


def test_dev_zero_is_refused_at_once():
    for kind in ("config", "launch"):
        with pytest.raises(UserError, match="not a regular file"):
            records.read_record("/dev/zero", kind)
    with pytest.raises(UserError, match="not a regular file"):
        topology.load_file("/dev/zero")


def test_the_depth_scan_counts_nesting_not_brackets_in_strings():
    assert records.depth('{"a": [1, {"b": "[[[[{{{{"}]}') == 3
    assert records.depth('"\\"[[["') == 0
    assert records.depth(DEEP) == records.MAX_DEPTH + 1  # stops counting past the limit


# ----------------------------------------------------------------------------------------------- --resume's environment
@pytest.mark.parametrize("extra_env,needle", [
    ({"LD_PRELOAD": "/tmp/evil.so"}, "not one the plan sets"),
    ({"PATH": "/tmp/evil"}, "not one the plan sets"),
    ({"PYTHONPATH": "/tmp/evil"}, "not one the plan sets"),
    ({"OMPI_MCA_plm_rsh_agent": "/tmp/evil"}, "not one the plan sets"),
    ({"KMP_BLOCKTIME": 1}, "must be text"),
    ({"KMP_BLOCKTIME": ["1"]}, "must be text"),
    ({"KMP_BLOCKTIME": "1\nexport LD_PRELOAD=/tmp/evil.so"}, "must be text without control characters"),
])
def test_extra_env_is_the_plans_own_names_with_text_values(extra_env, needle):
    with pytest.raises(UserError, match=needle):
        options.check(Options(extra_env=extra_env))


def test_the_bench_variants_env_is_the_plans_own():
    options.check(Options(extra_env={"OMPI_MCA_mpi_yield_when_idle": "0"}))  # bench.py's busy-poll variant


# ------------------------------------------------------------------------------------------------ Kubernetes names
# k8s.io/apimachinery pkg/util/validation/validation_test.go, TestIsDNS1123Subdomain: goodValues and badValues as
# upstream lists them (strings.Repeat written out).
DNS1123_GOOD = ["a", "ab", "abc", "a1", "a-1", "a--1--2--b", "0", "01", "012", "1a", "1-a", "1--a--b--2",
                "a.a", "ab.a", "abc.a", "a1.a", "a-1.a", "a--1--2--b.a", "a.1", "ab.1", "abc.1", "a1.1", "a-1.1",
                "a--1--2--b.1", "0.a", "01.a", "012.a", "1a.a", "1-a.a", "1--a--b--2", "0.1", "01.1", "012.1", "1a.1",
                "1-a.1", "1--a--b--2.1", "a.b.c.d.e", "aa.bb.cc.dd.ee", "1.2.3.4.5", "11.22.33.44.55", "a" * 253]
DNS1123_BAD = ["", "A", "ABC", "aBc", "A1", "A-1", "1-A", "-", "a-", "-a", "1-", "-1", "_", "a_", "_a", "a_b", "1_",
               "_1", "1_2", ".", "a.", ".a", "a..b", "1.", ".1", "1..2", " ", "a ", " a", "a b", "1 ", " 1", "1 2",
               "A.a", "aB.a", "ab.A", "A1.a", "a1.A", "A.1", "aB.1", "A1.1", "1A.1", "0.A", "01.A", "012.A", "1A.a",
               "1a.A", "A.B.C.D.E", "AA.BB.CC.DD.EE", "a.B.c.d.e", "aa.bB.cc.dd.ee", "a@b", "a,b", "a_b", "a;b",
               "a:b", "a%b", "a?b", "a$b", "a" * 254,
               "Bad Claim: x", "claim\n"]  # the issue's, and a line break


def test_claim_names_are_kubernetes_names_as_upstream_tests_them():
    assert [v for v in DNS1123_GOOD if _kube_name_ok(v)] == DNS1123_GOOD
    assert [v for v in DNS1123_BAD if _kube_name_ok(v)] == []


def _kube_name_ok(value: str) -> bool:
    try:
        options.kube_name("--results-claim", value)
        return True
    except UserError:
        return False


# ----------------------------------------------------------------------------------------------- the issue's tracebacks
def interrupted(tmp_path: Path, **damage) -> Path:
    """A run dir as an interrupted run leaves it, from the writers (config via `python -m xeontl config`, launch.json
    from Options.record, metrics.json from rundir.write_metrics), then one record replaced by DAMAGE[name]."""
    run_dir = tmp_path / "20261204-000000-smoke-2s-abcd"
    (run_dir / "checkpoints" / "epoch-0001").mkdir(parents=True)
    (run_dir / "config.json").write_text(python("config", "--profile", "smoke").stdout)
    (run_dir / "launch.json").write_text(json.dumps(Options(profile="smoke").record(), indent=1))
    rundir.write_metrics(run_dir, rundir.PLACEHOLDER)
    for name, text in damage.items():
        (run_dir / name).write_text(text)
    return run_dir


def launch_with(**changes) -> str:
    return json.dumps({**Options(profile="smoke").record(), **changes})


def resume(tmp_path, **damage):
    run_dir = interrupted(tmp_path, **damage)
    return invoke("reproduce", "--resume", str(run_dir), "--native", "--results-dir", str(tmp_path / "res"),
                  timeout=scaled(120))


def report_of(tmp_path, metrics: str, how: str = "report"):
    run_dir = interrupted(tmp_path, **{"metrics.json": metrics})
    if how == "report":
        return invoke("report", "--runs", str(run_dir), timeout=scaled(120))
    return invoke("compare", str(run_dir), str(REFERENCE), timeout=scaled(120))


def ranks_changed(**fields) -> str:
    """The committed reference's metrics.json (what the code wrote), its first rank's FIELDS changed: each read by
    the verdict's health check, which took what the schema let through (parse_cpulist of "n/a": a traceback)."""
    metrics = json.loads((REFERENCE / "metrics.json").read_text())
    metrics["ranks"][0].update(fields)
    return json.dumps(metrics)


def fifo(tmp_path) -> str:
    os.mkfifo(tmp_path / "topology.fifo")
    return str(tmp_path / "topology.fifo")


def archive_file(tmp_path, **manifest_changes) -> str:
    """An archive laid out as `invoke archive` lays it out (its manifest's keys as archive.make writes them: without
    Docker no image can be saved here), the manifest then changed."""
    from xeontl.supply import archive
    from xeontl.supply import image as imagelib

    members = {"image.tar.gz": gzip.compress(b"not a docker save"), "source.tar.gz": gzip.compress(b"source")}
    sums = {n: hashlib.sha256(b).hexdigest() for n, b in members.items()}
    manifest = {"xeontl_version": "0", "commit": "c0ffee" * 6 + "beef", "created": "2026-12-06T00:00:00+00:00",
                "image": {"ref": "xeontl:latest", "id": "sha256:" + "1" * 64, "inputs": imagelib.checkout_inputs_hash(),
                          "repo_digests": [], "labels": {}, "bytes": 1},
                "deps_image": None,
                "members": {n: {"bytes": len(b), "sha256": sums[n]} for n, b in members.items()},
                "source_includes": ["src"]}
    for path, value in manifest_changes.items():
        at, *keys = path.split("__")
        if keys:
            manifest[at].pop(keys[0]) if value is None else manifest[at].__setitem__(keys[0], value)
        else:
            manifest[at] = value
    body = json.dumps(manifest, indent=1).encode()
    files = {"manifest.json": body, "SHA256SUMS": ("".join(f"{sums[n]}  {n}\n" for n in members)
                                                   + f"{hashlib.sha256(body).hexdigest()}  manifest.json\n").encode(),
             **members}
    path = tmp_path / "a.tar"
    with tarfile.open(path, "w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"{archive.ROOT}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return str(path)


TOPOLOGY = ("--topology", str(SPR))
# (name, what runs -> the CompletedProcess, what the one line says, what must not exist afterwards)
TRACEBACKS = [
    ("resume: metrics.json not JSON", lambda t: resume(t, **{"metrics.json": "not json"}), "metrics.json: not JSON",
     "res"),
    ("resume: metrics.json [1,2]", lambda t: resume(t, **{"metrics.json": "[1, 2]"}),
     "metrics.json: field (the whole record)", "res"),
    ("resume: metrics.json deep", lambda t: resume(t, **{"metrics.json": DEEP}), "metrics.json: nested", "res"),
    ("resume: launch.json deep", lambda t: resume(t, **{"launch.json": deep_object()}), "launch.json: nested", "res"),
    ("resume: config.json deep", lambda t: resume(t, **{"config.json": DEEP}), "config.json: nested", "res"),
    ("resume: extra_env int", lambda t: resume(t, **{"launch.json": launch_with(extra_env={"KMP_BLOCKTIME": 1})}),
     "field extra_env/KMP_BLOCKTIME: 1 is not of type 'string'", "res"),
    ("resume: extra_env list", lambda t: resume(t, **{"launch.json": launch_with(extra_env={"KMP_BLOCKTIME": [1]})}),
     "field extra_env/KMP_BLOCKTIME: [1] is not of type 'string'", "res"),
    ("resume: extra_env LD_PRELOAD, PATH",
     lambda t: resume(t, **{"launch.json": launch_with(extra_env={"LD_PRELOAD": "/tmp/evil.so", "PATH": "/tmp"})}),
     "launch.json: field extra_env", "res"),
    ("train --config /dev/zero", lambda t: python("train", "--config", "/dev/zero", "--output", str(t / "out")),
     "not a regular file", "out"),
    ("train --config deep", lambda t: (t / "c.json").write_text(DEEP) and python(
        "train", "--config", str(t / "c.json"), "--output", str(t / "out")), "nested more than 64", "out"),
    ("--topology /dev/zero", lambda t: python("reproduce", "--topology", "/dev/zero", "--dry-run",
                                              "--results-dir", str(t / "res")), "not a regular file", "res"),
    ("--topology FIFO", lambda t: python("reproduce", "--topology", fifo(t), "--dry-run",
                                         "--results-dir", str(t / "res")), "not a regular file", "res"),
    ("report: metrics.json damaged", lambda t: report_of(t, "{"), "metrics.json: not JSON", None),
    ("report: metrics.json deep", lambda t: report_of(t, DEEP), "metrics.json: nested", None),
    ("compare: metrics.json damaged", lambda t: report_of(t, "[1, 2]", "compare"), "field (the whole record)", None),
    ("report: a rank's memory nodes not a node list", lambda t: report_of(t, ranks_changed(memory_nodes="n/a")),
     "field ranks/0/memory_nodes", None),
    ("report: a rank's threads not a record", lambda t: report_of(t, ranks_changed(threads=[56])),
     "field ranks/0/threads", None),
    ("build --from: no image.inputs", lambda t: invoke("build", "--from", archive_file(t, image__inputs=None)),
     "field image: 'inputs' is a required property", None),
    ("build --from: deps_image a string", lambda t: invoke("build", "--from", archive_file(t, deps_image="evil:1")),
     "field deps_image", None),
    ("build --from: deps_image not ours", lambda t: invoke("build", "--from", archive_file(
        t, deps_image={"ref": "victim:latest", "id": "sha256:" + "2" * 64})), "field deps_image", None),
    ("render --kube-version x", lambda t: invoke("render", "--kube-version", "x", *TOPOLOGY, "--output",
                                                 str(t / "m.yaml")), "--kube-version 'x'", "m.yaml"),
    ("render --results-claim 'Bad Claim: x'", lambda t: invoke("render", "--results-claim", "Bad Claim: x", *TOPOLOGY,
                                                               "--output", str(t / "m.yaml")),
     "--results-claim 'Bad Claim: x'", "m.yaml"),
    ("compose-env --image with a line break", lambda t: invoke("compose-env", "--image", "x\nXEONTL_HOSTS=evil:1",
                                                               "--output", str(t / "env"), "--results-dir",
                                                               str(t / "res")), "--image", "env"),
    ("compose-env --output /dev/zero", lambda t: invoke("compose-env", "--output", "/dev/zero", "--results-dir",
                                                        str(t / "res")), "not a regular file", None),
]


@pytest.mark.parametrize("name,go,needle,absent", TRACEBACKS, ids=[c[0] for c in TRACEBACKS])
def test_the_issues_tracebacks_are_one_line(tmp_path, name, go, needle, absent):
    r = go(tmp_path)
    one_line_error(r, needle)
    assert r.returncode == 2, (r.returncode, r.stderr)
    if absent:
        assert not (tmp_path / absent).exists(), name


def test_a_docker_save_manifest_that_is_not_one_is_one_line():
    from xeontl.supply import archive

    for body in (b"[1]", b"{}", DEEP.encode(), b"[{\"Config\": 1, \"Layers\": []}]"):
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w") as tar:
            info = tarfile.TarInfo("manifest.json")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
        buf.seek(0)
        with pytest.raises(UserError, match="manifest.json") as e:
            archive._saved_images(buf)
        assert "\n" not in str(e.value)


def test_a_damaged_assets_manifest_is_one_line_and_kept(tmp_path):
    from xeontl.supply import assets

    for text in (DEEP, "[1]", '{"weights": {"path": 1}}', "{"):
        f = tmp_path / "manifest.json"
        f.write_text(text)
        with pytest.raises(UserError, match="manifest.json") as e:
            assets.record({"data": {"path": "/x", "sha256": "0" * 64, "source": "s"}}, f)
        assert "\n" not in str(e.value) and f.read_text() == text  # nothing lost or overwritten


@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EDQUOT])
def test_a_full_disk_under_invoke_is_one_line(err, monkeypatch, tmp_path):
    """tasks.py's guard catches UserError and a disk that fills: OSError(ENOSPC) from any task body is one line,
    exit 1. Shown through the compose-env task, its env file's write failing."""
    import importlib.util

    from invoke import Exit

    from xeontl.engines import compose

    spec = importlib.util.spec_from_file_location("tasks_under_test", ROOT / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)

    def full(out, env):
        raise OSError(err, os.strerror(err), str(out))

    monkeypatch.setattr(compose, "write_env", full)
    with pytest.raises(Exit) as e:
        tasks.compose_env.body(None, results_dir=str(tmp_path / "res"), output=str(tmp_path / "env"))
    assert e.value.code == 1 and "\n" not in e.value.message and os.strerror(err) in e.value.message
    with pytest.raises(OSError):  # any other OSError is a bug, and says so with its traceback
        tasks._guard(lambda: (_ for _ in ()).throw(OSError(errno.EBADF, "bad")))


def test_an_env_file_value_with_a_line_break_is_refused_before_writing(tmp_path):
    from xeontl.engines import compose

    for value in ("x\nXEONTL_HOSTS=evil:1", "x\r", "x\x1b[2J"):
        with pytest.raises(UserError, match="control character"):
            compose.write_env(tmp_path / "env", {"XEONTL_IMAGE": value})
        assert list(tmp_path.iterdir()) == []


def test_a_run_whose_metrics_json_is_damaged_still_concludes_failed(tmp_path):
    """The launcher's settle reads the trainer's metrics.json through the same reader: a damaged one fails the run
    (said so in its record), it does not stop the launcher before the run dir is concluded."""
    from xeontl.launch import outcome

    rundir.write_metrics(tmp_path, rundir.PLACEHOLDER)
    (tmp_path / "metrics.json").write_text((tmp_path / "metrics.json").read_text()[:10])  # cut short
    status, failure, metrics = outcome.settle(tmp_path, outcome.Ended(0))
    assert status == "failed" and "metrics.json" in metrics["error"]
    assert rundir.read_metrics(tmp_path)["status"] == "failed"


def test_the_depth_scan_is_linear_on_escaped_quotes():
    """A string pattern that can fail retries from every escaped quote: '"' + '\\\\"' * 20000 took 18 s with one, and
    a 16 MiB record would take days. Now each quote's match succeeds (to the end if unterminated)."""
    import time

    t0 = time.monotonic()
    assert records.depth('"' + '\\"' * 20_000) == 0 and records.depth('["' + '\\"' * 20_000 + '"]') == 1
    assert time.monotonic() - t0 < 5, "quadratic"  # a generous ceiling: linear is milliseconds


@pytest.mark.slow
def test_every_record_of_a_real_run_reads_back(native_run):
    """A 2-rank Horovod run's records, as the trainer, the launcher and the report wrote them, each valid by the
    schema its reader holds it to (a writer that departs from its schema fails here, not in a user's --resume)."""
    got = {name: records.read_record(native_run / name, kind) for name, kind in records.RUN_FILES.items()}
    assert got["metrics.json"]["status"] == "success" and got["plan.json"]["sockets"] == 2
    states = sorted(native_run.glob("checkpoints/epoch-*/state.json"))
    assert states and all(records.read_record(s, "checkpoint-state")["workers"] == 2 for s in states)


def test_a_file_swapped_for_a_device_after_its_check_is_refused_on_its_descriptor(monkeypatch, tmp_path):
    """The path is checked before it is opened (a device is never opened), and what was opened is checked again on
    its descriptor: a regular file swapped for /dev/zero between the two is refused, not read to the limit."""
    (tmp_path / "f").write_text("{}")
    regular, real_stat = os.stat(tmp_path / "f"), os.stat  # the regular file the path named at the check
    monkeypatch.setattr(records.os, "stat", lambda p, *a, **k: regular if str(p) == "/dev/zero" else real_stat(p))
    with pytest.raises(UserError, match="not a regular file"):
        records.read_bytes("/dev/zero")


def test_a_device_is_never_opened(monkeypatch, tmp_path):
    opened, real_open = [], os.open
    monkeypatch.setattr(records.os, "open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k))
    os.mkfifo(tmp_path / "fifo")
    for path in ("/dev/zero", tmp_path / "fifo", tmp_path):
        with pytest.raises(UserError, match="not a regular file"):
            records.read_bytes(path)
    assert opened == []


@pytest.mark.parametrize("text,kind,error,needle", [
    ("{}", "metric", ValueError, "no record kind 'metric'"),
    ("{}", "metrics.schema.json", ValueError, "no record kind"),
    ("{}", "../pyproject.toml", ValueError, "no record kind"),
    ("\ud800" + "[" * 100, "metrics", UserError, "nested more than 64"),
    ("\ud800", "metrics", UserError, "not JSON"),
], ids=["a kind misspelt", "a schema's file name is not a kind", "a path is not a kind",
        "deep text with a lone surrogate", "a lone surrogate"])
def test_a_kind_or_text_the_reader_cannot_take_is_refused_as_before_the_validators_were_cached(text, kind, error,
                                                                                              needle):
    """The cached validators (records.validator) are made for the record kinds only, and the text's digest (taken
    before the depth scan, to skip it for a text seen valid) takes any str: the refusals of the reader before them."""
    for _ in range(2):  # and the same again, warm
        with pytest.raises(error, match=needle):
            records.parse(text, kind, "r.json")


def test_a_large_bad_record_is_refused_at_its_first_error():
    """A 4 MiB record with an error in every element took 52 s to refuse (best_match ranks every error): the first
    one is enough."""
    import time

    doc = json.dumps({"status": "success", "notices": [1] * 1_500_000})
    assert len(doc) > 3 << 20
    t0 = time.monotonic()
    with pytest.raises(UserError, match="field notices/0"):
        records.parse(doc, "metrics", "big")
    assert time.monotonic() - t0 < 5


# issue 39 adversarial review: --resume took hosts and engine from launch.json (a resumed run joined the hosts the file
# named, network on). What decides where a continuation runs must be what the command line gives. (launch.json's
# fields changed, the command line's options, refused: the needle or None)
RESUME_REACH = [
    ("the recorded local run", {}, {}, None),
    ("hosts from the file", {"hosts": "evil:2"}, {}, "--hosts 'evil:2'"),
    ("hosts given as recorded", {"hosts": "n1:2,n2:2"}, {"hosts": "n1:2,n2:2"}, "no-refusal"),
    ("another host on the command line", {}, {"hosts": "n1:2"}, "--hosts ''"),
    ("the engine from the file", {"engine": "slurm", "container": "none"}, {}, "--engine 'slurm'"),
    ("nodes from the file", {"nodes": 4}, {}, "--nodes 4"),
    ("the partition from the file", {"partition": "gpu"}, {}, "--partition 'gpu'"),
]


@pytest.mark.parametrize("case,recorded,given,needle", RESUME_REACH, ids=[c[0] for c in RESUME_REACH])
def test_resume_runs_only_where_the_command_line_says(tmp_path, case, recorded, given, needle):
    from xeontl.launch import launch

    run_dir = tmp_path / "old"
    (run_dir / "checkpoints" / "epoch-0002").mkdir(parents=True)
    config.save(config.resolve("smoke"), run_dir / "config.json")
    rec = Options(profile="smoke", native=True, emulate_sockets=True).record()
    (run_dir / "launch.json").write_text(json.dumps({**rec, **recorded}))
    opts = Options(resume=run_dir, native=True, results_dir=tmp_path / "r", **given)
    if needle in (None, "no-refusal"):
        try:
            resumed, _ = launch.resume_options(opts)
        except UserError as e:  # a later check of the launch itself (hosts unreachable...) is not this refusal
            assert "runs only where the command line says" not in str(e), (case, str(e))
        else:
            assert all(getattr(resumed, k) == getattr(opts, k) for k in launch.RESUME_GIVEN), case
        return
    with pytest.raises(UserError, match="runs only where the command line says") as e:
        launch.resume_options(opts)
    assert needle in str(e.value) and "\n" not in str(e.value), (case, str(e.value))
