"""AVX2-only hosts are first class: what a CPU cannot run is refused in one line before anything is fetched, built or
started, by the launcher (not the ranks): BF16 without BF16 kernels, another stack's image, the image on this host
under --hosts; a played CPU only takes features away; a missing image names its stack's build; the bench does not
start bf16 probes the CPU cannot run, and says why in its words (docs/image.md, "CPUs without AVX-512")."""

from __future__ import annotations

import pytest
from test_stacks import PAPER_LABEL, SPR, ZEN1, _image, invoke, played

from xeontl.common.errors import UserError
from xeontl.launch import launch, options
from xeontl.launch import paper as paperlib
from xeontl.supply import stacks

NO_BF16 = r"^precision bf16: this CPU \(AMD EPYC 7551 32-Core Processor\) has no oneDNN BF16 kernels .*; nothing was " \
          r"fetched, built or run$"
EMU = {"emulate_sockets": True, "sockets": 2}
# (what, played CPU, the real CPU (None: the played one), options, refused: a pattern or None)
PRECISION = [
    ("the paper profile (bf16)", ZEN1, None, options.Options(profile="paper", **EMU), NO_BF16),
    ("--set precision=bf16", ZEN1, None, options.Options(overrides={"precision": "bf16"}, **EMU), NO_BF16),
    ("natively", ZEN1, None, options.Options(overrides={"precision": "bf16"}, native=True, **EMU), NO_BF16),
    ("auto picks fp32", ZEN1, None, options.Options(overrides={"precision": "auto"}, **EMU), None),
    ("fp32", ZEN1, None, options.Options(profile="paper", overrides={"precision": "fp32"}, **EMU), None),
    ("a dry run runs nothing", ZEN1, None, options.Options(profile="paper", dry_run=True, **EMU), None),
    ("a CPU with BF16", SPR, None, options.Options(profile="paper", **EMU), None),
    ("an SPR played on a Zen 1 is not one", SPR, ZEN1, options.Options(profile="paper", **EMU),
     r"^precision bf16: this CPU \(Intel Xeon 8480\+, played on AMD EPYC 7551 32-Core Processor, which lacks some of "
     r"its flags\) has no oneDNN BF16 kernels"),
]


@pytest.mark.parametrize("what,cpu,real,opts,refused", PRECISION, ids=[c[0] for c in PRECISION])
def test_a_precision_this_cpu_cannot_run_is_refused_by_the_launcher_before_anything(what, cpu, real, opts, refused,
                                                                                    tmp_path, monkeypatch):
    """launch.prepare decides it (before execute fetches assets, builds the image or starts a container), and so
    does `invoke paper` before its first run."""
    from xeontl.engines import docker, native

    played(tmp_path, monkeypatch, cpu)
    if real:
        (tmp_path / "real").write_text(real)
        monkeypatch.setattr(stacks, "REAL_CPUINFO", str(tmp_path / "real"))
    _image(monkeypatch, None)  # no image here: the run would name it
    for engine in (docker.DockerEngine, native.NativeEngine):
        monkeypatch.setattr(engine, "preflight", lambda self, job: pytest.fail("got as far as preflight"))
    monkeypatch.setattr(launch, "execute", lambda job: (_ for _ in ()).throw(RuntimeError("ran")))
    opts = options.Options(**{**vars(opts), "results_dir": tmp_path / "results"})
    for go in (lambda: launch.prepare(opts), lambda: paperlib.run(opts)):
        if refused:
            with pytest.raises(UserError, match=refused):
                go()
            continue
        try:
            go()
        except RuntimeError as e:  # paper.run got as far as its first run
            assert str(e) == "ran"
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize("args", [["reproduce", "--sockets", "2", "--emulate-sockets", "--profile", "paper"],
                                  ["reproduce", "--sockets", "2", "--emulate-sockets", "--set", "precision=bf16"],
                                  ["paper", "--profile", "demo", "--emulate-sockets", "--set", "precision=bf16"]],
                         ids=["reproduce --profile paper", "reproduce --set precision=bf16", "paper"])
def test_bf16_on_a_cpu_without_bf16_kernels_is_one_line_from_the_tasks(args, tmp_path, monkeypatch):
    env = {**played(tmp_path, monkeypatch, ZEN1), "DOCKER_HOST": f"unix://{tmp_path}/no-daemon.sock",
           "XEONTL_CACHE_DIR": str(tmp_path / "cache")}
    results = tmp_path / "results"
    r = invoke(*args, "--results-dir", str(results), env=env)
    assert r.returncode == 2 and "Traceback" not in r.stderr, r.stdout + r.stderr
    line, = [ln for ln in r.stderr.splitlines() if ln.startswith("xeontl: error:")]
    assert line.startswith("xeontl: error: precision bf16: this CPU (AMD EPYC 7551 32-Core Processor) has no oneDNN "
                           "BF16 kernels (none of amx_bf16, avx512_bf16, avx512bw, avx_ne_convert)"), line
    assert not results.exists() and "making" not in r.stdout, r.stdout


# (what, options, refused: the other stack named, or None)
OWN_IMAGES = [
    ("the paper stack's tag under the default stack", options.Options(image="xeontl:paper"), "paper"),
    ("... in a dry run too", options.Options(image="xeontl:paper", dry_run=True), "paper"),
    ("... on Slurm too", options.Options(image="xeontl:paper", engine="slurm"), "paper"),
    ("the default stack's tag under --stack paper", options.Options(image="xeontl:latest", stack="paper"), None),
    ("the default stack's tag, default stack", options.Options(image="xeontl:latest"), None),
    ("another tag: held to its label, not its name", options.Options(image="mine:1"), None),
]


@pytest.mark.parametrize("what,opts,refused", OWN_IMAGES, ids=[c[0] for c in OWN_IMAGES])
def test_another_stacks_own_image_is_refused_in_one_line_naming_both(what, opts, refused, tmp_path, monkeypatch):
    """Run on the chosen stack, another stack's image would be held to this stack's sources and rebuilt from them
    under its tag (DockerEngine.preflight): refused instead, before the CPU is asked about it."""
    played(tmp_path, monkeypatch, SPR)
    _image(monkeypatch, None)
    if refused:
        with pytest.raises(UserError, match=rf"^--image xeontl:{refused} is the {refused} stack's image \(`invoke "
                                            rf"build --offline --stack {refused}` builds it\), and this run is on the "
                                            rf"default stack \(its image: xeontl:latest\): give --stack {refused}"):
            options.check(opts)
    else:
        options.check(opts)


def test_bench_refuses_another_stacks_image_before_it_starts(tmp_path, monkeypatch):
    from invoke import Context, Exit

    import tasks as tasklib
    from xeontl.measure import bench as benchlib

    played(tmp_path, monkeypatch, SPR)
    _image(monkeypatch, PAPER_LABEL)
    monkeypatch.setattr(benchlib, "run", lambda *a, **kw: pytest.fail("the bench started"))
    with pytest.raises(Exit) as got:
        tasklib.bench(Context(), image="xeontl:paper")
    assert got.value.code == 2 and "`invoke bench` measures the default stack" in got.value.message, got.value.message


def test_smoke_runs_a_stacks_own_image_on_that_stack(monkeypatch, tmp_path):
    from xeontl.measure import smoke

    seen = []
    played(tmp_path, monkeypatch, SPR)  # a CPU that runs both stacks: smoke checks its options before it starts
    _image(monkeypatch, None)
    monkeypatch.setattr(launch, "reproduce", lambda opts: seen.append((opts.image, opts.stack)) or 1)
    for image in ("xeontl:paper", "xeontl:latest", "mine:1"):
        with pytest.raises(UserError):
            smoke.run(image, tmp_path)
    assert seen == [("xeontl:paper", "paper"), ("xeontl:latest", "default"), ("mine:1", "default")]


# (what, played CPU, the real CPU, refused)
PLAYED = [
    ("an SPR played on a Zen 1 cannot lift the refusal", SPR, ZEN1, True),
    ("a Zen 1 played on an SPR takes AVX-512 away", ZEN1, SPR, True),
    ("an SPR played on an SPR", SPR, SPR, False),
]


@pytest.mark.parametrize("what,cpu,real,refused", PLAYED, ids=[c[0] for c in PLAYED])
def test_a_played_cpu_only_takes_features_away_where_something_is_built_or_run(what, cpu, real, refused, tmp_path,
                                                                              monkeypatch):
    played(tmp_path, monkeypatch, cpu, real=False)
    (tmp_path / "real").write_text(real)
    monkeypatch.setattr(stacks, "REAL_CPUINFO", str(tmp_path / "real"))
    _image(monkeypatch, PAPER_LABEL)
    for check in (lambda: stacks.require_cpu(stacks.STACKS["paper"]), lambda: stacks.require_image_cpu("mine:1"),
                  lambda: options.check(options.Options(stack="paper"))):
        if refused:
            with pytest.raises(stacks.CpuLacks, match="lacks AVX-512 \\(avx512f\\)"):
                check()
        else:
            check()
    # the rule itself still reads the played CPU (the suite's needs_cpu marks, check-host's report)
    assert bool(stacks.cpu_lacks(stacks.STACKS["paper"])) == (cpu == ZEN1)


@pytest.mark.parametrize("stack,build", [("default", "invoke build --offline"),
                                         ("paper", "invoke build --offline --stack paper")])
def test_a_missing_image_names_its_stacks_build_for_every_engine(stack, build, monkeypatch):
    from xeontl.engines import docker, slurm
    from xeontl.supply import dockerapi
    from xeontl.supply import image as imagelib

    monkeypatch.setattr(dockerapi, "inspect", lambda ref: None)
    monkeypatch.setattr(dockerapi, "check_daemon", lambda: None)
    monkeypatch.setattr(imagelib, "checkout_inputs_hash", lambda s=None: "inputs")
    monkeypatch.setattr(slurm, "require", lambda: None)
    tag = stacks.STACKS[stack].tag
    engines = [docker.DockerEngine(options.Options(stack=stack, image=tag, build=False)),
               slurm.SlurmEngine(options.Options(stack=stack, image=tag, engine="slurm"))]
    for engine in engines:
        with pytest.raises(UserError) as got:
            engine.preflight(None)
        assert str(got.value) == (f"image {tag} is not built: run `{build}` (or `{build.replace(' --offline', '')}`) "
                                  f"first"), (type(engine).__name__, got.value)


def test_the_bench_does_not_start_bf16_probes_a_cpu_without_bf16_kernels_cannot_run(monkeypatch):
    from xeontl.measure import bench, checkhost
    from xeontl.placement import plan as planlib
    from xeontl.placement import topology

    ran = []
    monkeypatch.setattr(bench, "_probe", lambda w, env, what, p, *a, **kw: ran.append((what, p)) or {"median": 1.0})
    w = planlib.make_plan(topology.live(), 1).workers[0]
    sz = {"matmul": 64, "image": 32, "batch": 2, "repeats": 1}
    for flags, bf16 in ((["avx2", "fma"], False), (["avx512f", "avx512bw", "amx_bf16"], True)):
        ran.clear()
        got = {what: bench.measure_probes(what, w, {}, sz, {"flags": flags}) for what in ("matmul", "backbone")}
        assert [p for _, p in ran] == (["fp32", "bf16"] * 2 if bf16 else ["fp32"] * 2), ran
        if not bf16:
            assert got["matmul"]["bf16"] == checkhost.bf16_not_run(flags)
            assert got["backbone"]["bf16"]["reason"] == ("not run (no BF16 on this CPU: lacks amx_bf16/avx512_bf16/"
                                                         "avx512bw/avx_ne_convert)")
