"""Generated bad input at the bundle's entry points (Hypothesis): launch options, config overrides, topology files,
hosts lists, a run's launch.json, archive manifests. Each answer is a result or exactly one `xeontl: error:` line
(exit 0 or 2), never a traceback, and nothing is written outside the run's own dir. In-process, so it fits the fast
tier: the entry points the CLIs call (`python -m xeontl reproduce --dry-run`'s main, config.resolve,
topology.load_file, launch.resume_options, archive.verify), with the exceptions they let through."""

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import SPR
from xeontl import cli
from xeontl.common.errors import UserError
from xeontl.experiment import config
from xeontl.launch import launch
from xeontl.launch.options import Options
from xeontl.placement import topology
from xeontl.supply import archive

EXAMPLES = int(os.environ.get("XEONTL_HYPOTHESIS_EXAMPLES", "150"))
SETTINGS = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])

# text with what breaks shells, scripts and parsers: newlines, quotes, $(...), ;, NUL-free unicode, long runs
nasty = st.one_of(st.text(max_size=40), st.sampled_from(
    ["two", "-1", "0", "1e9", "inf", "nan", "", " ", "p\ntouch /tmp/pwn", "$(id)", "`id`", "a;b", "'", '"', "%j",
     "../../etc", "/", "9" * 30, "x:y:z", "node1:1,node2:x", "UNLIMITED", "1-00:00:00", "auto", "yes"]))


def snapshot(root: Path) -> set:
    return {str(p.relative_to(root)) for p in root.rglob("*")}


def one_line(err: str) -> None:
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("xeontl: error: "), err
    assert "Traceback" not in err


FLAGS = ["--sockets", "--nodes", "--cores-per-socket", "--emulate-sockets", "--controller", "--hosts",
         "--results-dir", "--topology", "--profile", "--seed", "--learning-rate", "--train-split", "--weights",
         "--epochs", "--image-size", "--batch-size", "--dataset", "--precision"]


@SETTINGS
@given(flags=st.lists(st.tuples(st.sampled_from(FLAGS), nasty), max_size=4))
def test_generated_launch_options_give_a_plan_or_one_line(flags, tmp_path_factory, capsys):
    """`python -m xeontl reproduce --dry-run` (the launcher inside a container) with generated flag values."""
    work = tmp_path_factory.mktemp("opts")
    argv = ["reproduce", "--dry-run", "--topology", str(SPR), "--results-dir", str(work / "results")]
    for flag, value in flags:
        if flag == "--results-dir":
            value = str(work / value.replace("\x00", ""))
        argv += [flag, value]
    before = snapshot(work)
    try:
        rc = cli.main(argv)
    except SystemExit as e:  # argparse's own usage errors (a flag without its value): its line, exit 2
        rc = e.code
    out, err = capsys.readouterr()
    assert rc in (0, 2), (argv, rc, err)
    if rc == 2 and "usage:" not in err:
        one_line(err)
    assert snapshot(work) - before <= {"results"}, argv  # a dry run writes nothing (the results dir at most)


@SETTINGS
@given(overrides=st.dictionaries(st.sampled_from(sorted(config.FIELDS)), nasty, max_size=4),
       profile=st.sampled_from(config.profile_names()))
def test_generated_config_overrides_resolve_or_are_refused_in_one_line(overrides, profile):
    try:
        cfg = config.resolve(profile, overrides)
    except UserError as e:
        assert "\n" not in str(e), str(e)
        return
    for key, value in cfg.items():  # what resolves is typed and in range: it is what every rank reads
        if isinstance(value, float):
            assert value == value and value not in (float("inf"), float("-inf")), key
    assert 0 <= cfg["seed"] <= config.SEED_MAX


lscpu_line = st.lists(st.one_of(st.integers(-3, 300).map(str), st.just(""), nasty), min_size=1, max_size=5).map(
    ",".join)


@SETTINGS
@given(lines=st.lists(lscpu_line, max_size=12))
def test_generated_topology_files_load_or_are_refused_in_one_line(lines, tmp_path_factory):
    path = tmp_path_factory.mktemp("topo") / "node.lscpu"
    path.write_text("# CPU,Core,Socket,Node\n" + "\n".join(lines) + "\n")
    try:
        topo = topology.load_file(str(path))
    except UserError as e:
        assert "\n" not in str(e)
        return
    assert topo.sockets()


json_value = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), nasty),
                          lambda inner: st.lists(inner, max_size=3) | st.dictionaries(nasty, inner, max_size=3),
                          max_leaves=8)


@pytest.fixture(scope="module")
def interrupted(tmp_path_factory):
    """A run dir as an interrupted run leaves it: its config and an epoch's checkpoint (launch.json generated)."""
    run = tmp_path_factory.mktemp("interrupted") / "20261204-000000-smoke-2s-abcd"
    (run / "checkpoints" / "epoch-0001").mkdir(parents=True)
    config.save(config.resolve("smoke"), run / "config.json")
    (run / "metrics.json").write_text(json.dumps({"status": "failed"}))
    return run


@SETTINGS
@given(doc=st.one_of(json_value, st.dictionaries(st.sampled_from(["sockets", "emulate_sockets", "controller", "hosts",
                                                                "engine", "nodes", "partition", "container",
                                                                "time_limit", "cores_per_socket", "extra_env"]),
                                             json_value, max_size=5)), truncated=st.booleans())
def test_a_generated_launch_json_resumes_or_is_refused_in_one_line(doc, truncated, interrupted):
    text = json.dumps(doc)
    (interrupted / "launch.json").write_text(text[: len(text) // 2] if truncated else text)
    try:
        opts, _ = launch.resume_options(Options(resume=interrupted, profile="smoke"))
    except UserError as e:
        assert "\n" not in str(e), str(e)
        return
    assert isinstance(opts.sockets, int) and opts.controller in ("mpi", "gloo")


def archive_with(members: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, body in members.items():
            info = tarfile.TarInfo(f"{archive.ROOT}/{name}")
            info.size = len(body)
            tar.addfile(info, io.BytesIO(body))
    return buf.getvalue()


sums_line = st.builds(lambda h, n: f"{h}  {n}", st.text("0123456789abcdef", min_size=64, max_size=64),
                      st.sampled_from(["image.tar.gz", "manifest.json", "source.tar.gz", "x"]))


@SETTINGS
@given(manifest=json_value, sums=st.lists(st.one_of(nasty, sums_line), max_size=4),
       present=st.sets(st.sampled_from(["image.tar.gz", "source.tar.gz", "assets.tar"])))
def test_a_generated_archive_is_refused_in_one_line_before_anything_loads(manifest, sums, present, tmp_path_factory):
    path = tmp_path_factory.mktemp("archive") / "a.tar"
    members = {"manifest.json": json.dumps(manifest).encode(), "SHA256SUMS": "\n".join(sums).encode(),
               **{name: b"x" for name in present}}
    path.write_bytes(archive_with(members))
    with pytest.raises(UserError) as e:
        archive.verify(path)
    assert "\n" not in str(e.value)


# (issue 39 audit) The `docker save` inside a verified archive, generated: the config member manifest.json names
# (`<id>.json`, or a docker 25 blob) holding any JSON value, deep nesting, random bytes or a real config, beside other
# blobs (layers, or anything). `build --from` loads the image whose config is one, or is one line naming the member,
# with nothing loaded and no tag moved; never a TypeError or RecursionError.
REAL_CONFIG = b'{"rootfs": {"type": "layers", "diff_ids": []}, "architecture": "amd64"}'
deep_json = st.builds(lambda n, o, inner: (o[0] * n + inner + o[1] * n).encode(), st.integers(65, 100_000),
                      st.sampled_from([("[", "]"), ('{"a":', "}")]), st.sampled_from(["1", "", "[]"]))
config_body = st.one_of(json_value.map(lambda v: json.dumps(v).encode()), deep_json, st.binary(max_size=64),
                        st.just(REAL_CONFIG), st.just(b"5"), st.just(b"null"), st.just(b'["rootfs"]'))


def docker_save(members: list[tuple[str, bytes]], config: str) -> bytes:
    out = io.BytesIO()
    with tarfile.open(fileobj=out, mode="w") as t:
        body = json.dumps([{"Config": config, "RepoTags": ["victim:latest"], "Layers": []}]).encode()
        for name, data in [*members, ("manifest.json", body)]:
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    return __import__("gzip").compress(out.getvalue())


INPUTS = __import__("xeontl.supply.image", fromlist=["x"]).checkout_inputs_hash() or "0123456789ab"


@SETTINGS
@given(config=config_body, blob=st.booleans(), others=st.lists(config_body, max_size=2))
def test_a_generated_docker_save_loads_its_config_or_is_one_line(config, blob, others, tmp_path_factory):
    from unittest import mock

    from xeontl.supply import dockerapi

    digest = hashlib.sha256(config).hexdigest()
    name = f"blobs/sha256/{digest}" if blob else f"{digest}.json"
    members = {f"blobs/sha256/{hashlib.sha256(b).hexdigest()}": b for b in others if b != config}
    members[name] = config
    image = docker_save(list(members.items()), name)
    payload = {"image.tar.gz": image, "source.tar.gz": b"s"}
    sums = {n: hashlib.sha256(b).hexdigest() for n, b in payload.items()}
    manifest = json.dumps({"commit": "c0ffee" * 6 + "beef", "image": {"id": f"sha256:{digest}", "inputs": INPUTS},
                           "members": {n: {"bytes": len(b), "sha256": sums[n]} for n, b in payload.items()}}).encode()
    sums["manifest.json"] = hashlib.sha256(manifest).hexdigest()
    sums_text = "".join(f"{d}  {n}\n" for n, d in sums.items())
    work = tmp_path_factory.mktemp("save")
    path = work / "a.tar"
    path.write_bytes(archive_with({"manifest.json": manifest, "SHA256SUMS": sums_text.encode(), **payload}))
    got = {"loaded": [], "tags": []}
    present = set()
    with mock.patch.object(dockerapi, "check_daemon", lambda: None), \
            mock.patch.object(dockerapi, "load", lambda chunks: got["loaded"].append(b"".join(chunks))
                              or present.add(f"sha256:{digest}")), \
            mock.patch.object(dockerapi, "inspect", lambda ref: {"Id": ref} if ref in present else None), \
            mock.patch.object(dockerapi, "tag", lambda source, ref: got["tags"].append((source, ref))), \
            mock.patch.object(archive.imagelib, "checkout_inputs_hash", lambda *a: INPUTS), \
            mock.patch.dict(os.environ, {"XEONTL_CACHE_DIR": str(work / "cache")}):
        try:
            archive.load(path)
        except UserError as e:
            assert "\n" not in str(e) and name in str(e) and "nothing was loaded" in str(e), str(e)
            assert got == {"loaded": [], "tags": []}
            return
    valid = isinstance(doc := __import__("xeontl.common.records", fromlist=["x"]).loads(config), dict) and \
        isinstance(doc.get("rootfs"), dict)
    assert valid and got["tags"] == [(f"sha256:{digest}", "xeontl:latest")], config[:80]


# ------------------------------------------------------------------------------------------------ every record reader
# (issue 39) Each kind records.read_record reads, generated bad: random bytes, a record the code wrote cut short, deep
# nesting, and one of its fields given another value (which may be valid: then the record reads back as its schema
# allows). Always a record or one UserError line naming the file, and nothing written beside it.
def _written_records() -> dict[str, bytes]:
    from xeontl.common import records
    from xeontl.launch import rundir
    from xeontl.placement import plan as planlib

    with __import__("tempfile").TemporaryDirectory(prefix="xeontl-written-") as d:
        work = Path(d)
        config.save(config.resolve("demo"), work / "config.json")
        rundir.write_metrics(work, rundir.PLACEHOLDER)
        out = {"config": (work / "config.json").read_bytes(), "metrics": (work / "metrics.json").read_bytes()}
    out |= {"launch": json.dumps(Options(profile="smoke").record(), indent=1).encode(),
            "plan": json.dumps(planlib.make_plan(topology.load_file(SPR), 2).to_dict(), indent=1).encode()}
    reference = next((Path(__file__).parents[1] / "results" / "reference").glob("*/provenance.json"), None)
    if reference is not None:
        out["provenance"] = reference.read_bytes()
    assert set(out) <= set(records.KINDS)
    return out


WRITTEN = _written_records()
RECORD_KINDS = sorted(__import__("xeontl.common.records", fromlist=["KINDS"]).KINDS)


@st.composite
def damaged_record(draw, kinds=tuple(RECORD_KINDS), hows=("random", "deep", "field", "truncated")):
    kind = draw(st.sampled_from(kinds))
    good = WRITTEN.get(kind)
    how = draw(st.sampled_from([h for h in hows if good or h != "truncated"]))
    if how == "random":
        return kind, draw(st.binary(max_size=200))
    if how == "deep":
        n = draw(st.integers(65, 3000))
        opener, closer = draw(st.sampled_from([("[", "]"), ('{"a":', "}")]))
        inner = draw(st.sampled_from(["1", "", "[]"]))
        return kind, (opener * n + inner + closer * draw(st.integers(0, n))).encode()
    if how == "truncated":
        return kind, good[: draw(st.integers(0, len(good.rstrip()) - 1))]  # never whole
    doc = json.loads(good) if good else {}
    key = draw(st.sampled_from(sorted(doc)) if doc else nasty)
    doc = {**doc, key: draw(json_value)} if isinstance(doc, dict) else draw(json_value)
    return kind, json.dumps(doc).encode()


@SETTINGS
@given(case=damaged_record())
def test_every_record_reader_gives_a_record_or_one_line(case, tmp_path_factory):
    from xeontl.common import records

    kind, body = case
    work = tmp_path_factory.mktemp("record")
    f = work / "record.json"
    f.write_bytes(body)
    try:
        doc = records.read_record(f, kind)
    except UserError as e:
        assert "\n" not in str(e) and str(f) in str(e), str(e)
    else:  # read back: then its schema allows it, whole
        import jsonschema

        jsonschema.Draft202012Validator(records.schema(kind)).validate(doc)  # a validator of its own (not the reader's)
    assert snapshot(work) == {"record.json"} and f.read_bytes() == body


@SETTINGS
@given(case=damaged_record(kinds=("config",), hows=("random", "deep", "truncated")))
def test_train_with_a_damaged_config_is_one_line_and_writes_nothing(case, tmp_path_factory, capsys):
    """`python -m xeontl train --config FILE` (what every rank runs) with a config.json that is not one."""
    work = tmp_path_factory.mktemp("train")
    (work / "config.json").write_bytes(case[1])
    code = cli.main(["train", "--config", str(work / "config.json"), "--output", str(work / "out")])
    assert code == 2
    one_line(capsys.readouterr().err)
    assert snapshot(work) == {"config.json"}


@SETTINGS
@given(name=st.sampled_from(["metrics.json", "config.json", "launch.json"]), case=damaged_record(),
       deep=st.booleans())
def test_resume_with_a_damaged_record_resumes_or_is_one_line(name, case, deep, interrupted):
    """`--resume RUN` whose metrics.json, config.json or launch.json is damaged (any kind's damage)."""
    from xeontl.common import records

    saved = (interrupted / name).read_bytes()
    body = ("[" * 200 + "]" * 200).encode() if deep else case[1]
    (interrupted / name).write_bytes(body)
    try:
        opts, _ = launch.resume_options(Options(resume=interrupted, profile="smoke"))
    except UserError as e:
        assert "\n" not in str(e), str(e)
    else:
        assert set(opts.extra_env) <= set(__import__("xeontl.placement.plan", fromlist=["x"]).ENV_NAMES)
        records.read_record(interrupted / name, records.RUN_FILES[name])
    finally:
        (interrupted / name).write_bytes(saved)


# (issue 39) Every value `invoke compose-env` writes into the env file docker compose reads: generated image, profile
# and key dir. The file is written with exactly its variables, one line each, or the task is one line, exit 2, and no
# file is written.
def _tasks_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("tasks_for_hypothesis", Path(__file__).parents[1] / "tasks.py")
    tasks = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tasks)
    return tasks


TASKS = _tasks_module()
SAFE_IMAGE = __import__("xeontl.launch.options", fromlist=["SAFE"]).SAFE["image"][0]


@SETTINGS
@given(image=st.one_of(nasty, st.just("xeontl:latest")), profile=st.one_of(nasty, st.just("demo")),
       keys=st.one_of(nasty.filter(lambda k: "\x00" not in k), st.just("keys")))
def test_compose_env_writes_its_variables_or_one_line(image, profile, keys, tmp_path_factory):
    from invoke import Exit

    from xeontl.engines import compose

    work = tmp_path_factory.mktemp("compose")
    out = work / "env"
    try:
        TASKS.compose_env.body(None, results_dir=str(work / "res"), profile=profile, image=image,
                               keys=str(work / keys), output=str(out))
    except Exit as e:
        assert e.code == 2 and "\n" not in e.message and e.message.startswith("xeontl: error: "), e.message
        assert not out.exists()
        return
    lines = out.read_text().splitlines()
    assert lines[0] + "\n" == compose.COMPOSE_ENV_HEADER
    names = [ln.partition("=")[0] for ln in lines[1:]]
    assert names == list(compose.env(work / "res", image, profile, work / keys)), lines
    written = dict(ln.partition("=")[::2] for ln in lines[1:])
    assert written["XEONTL_IMAGE"] == image and written["XEONTL_PROFILE"] == profile
    import re

    assert re.fullmatch(SAFE_IMAGE, image) and re.fullmatch(r"[A-Za-z0-9_.-]+", profile)  # checked values only
