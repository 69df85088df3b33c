"""The paper's own software stack (`invoke build --stack paper`: intel-tensorflow-avx512 2.10.0 on Debian 11's Python
3.9, Horovod compiled against it): a real 2-rank Horovod run on it through the reviewer's command, and what its
records say about the software that ran. `invoke test` builds the image first (conftest's paper_image), where the CPU
runs it: on a CPU without AVX-512 these tests skip, naming it."""

import json

import pytest

from conftest import invoke, load, only_run, run, scaled
from xeontl.supply import stacks

pytestmark = [pytest.mark.docker, pytest.mark.slow,
              pytest.mark.needs_cpu("avx512f", why="intel-tensorflow-avx512 aborts on import without it, and "
                                                   "`invoke build --stack paper` is refused")]
PAPER = stacks.STACKS["paper"]


@pytest.fixture(scope="session")
def paper_stack_run(paper_image, tmp_path_factory):
    """The quick start's command on the paper stack, shortened to 3 epochs: 2 ranks, emulated sockets, the image."""
    results = tmp_path_factory.mktemp("paper-stack")
    r = invoke("reproduce", "--sockets", "2", "--emulate-sockets", "--stack", "paper", "--no-build",
               "--results-dir", str(results), "--set", "epochs=3", timeout=scaled(1800))
    assert r.returncode == 0, (r.stdout + r.stderr)[-3000:]
    return only_run(results, "success")


def test_the_paper_image_is_the_paper_release_with_horovod_built_against_it(paper_image):
    info = json.loads(run(["docker", "image", "inspect", paper_image]).stdout)[0]
    labels = info["Config"]["Labels"]
    from xeontl.supply import image as imagelib

    assert labels["io.xeontl.inputs"] == imagelib.checkout_inputs_hash(PAPER)
    assert labels["io.xeontl.versions.tensorflow"] == "intel-tensorflow-avx512 2.10.0"
    assert "bullseye" in labels["io.xeontl.versions.python"]
    out = run(["docker", "run", "--rm", paper_image, "python", "-c",
               "import sys, tensorflow as tf, horovod.tensorflow as h; "
               "from tensorflow.python.util import _pywrap_util_port as p; "
               "print(sys.version_info[:2], tf.__version__, p.IsMklEnabled(), h.mpi_built(), h.gloo_built())"],
              timeout=scaled(300)).stdout.split("\n")[-2]
    assert out == "(3, 9) 2.10.0 True True True", out


def test_a_run_on_the_paper_stack_records_the_papers_release_and_its_math_path(paper_stack_run):
    prov = load(paper_stack_run, "provenance.json")
    software = prov["software"]
    assert software["tensorflow_distribution"] == {"name": "intel-tensorflow-avx512", "version": "2.10.0"}
    assert software["stack"] == "paper" and software["python"].startswith("3.9.")
    assert software["tensorflow"] == "2.10.0" and software["onednn_enabled"] is True
    assert software["horovod"]["version"] == "0.28.1" and software["horovod"]["mpi_built"] is True
    math = prov["math_path"]
    assert math["isas_dispatched"] and math["onednn_version"].startswith("v2."), math  # TF 2.10 embeds oneDNN 2.x
    metrics = load(paper_stack_run, "metrics.json")
    if metrics["precision"]["precision"] == "bf16":  # auto: bf16 where the CPU has BF16 arithmetic
        assert metrics["precision"]["mechanism"] == "grappler auto_mixed_precision_mkl"  # the kit's name on 2.10
        assert math["bf16_kernels_seen"], math
    assert metrics["status"] == "success" and len(metrics["per_epoch"]) == 3
    assert load(paper_stack_run, "launch.json")["stack"] == "paper"


def test_the_report_says_the_software_is_the_papers_and_the_default_stack_that_it_is_not(paper_stack_run,
                                                                                          docker_runs):
    """The differences list is the setup compared whole: the paper's release is not among a paper-stack run's
    differences (nor in setup.json's unequal dimensions); the default stack's run names it, and how to run it."""
    differ = "- software: "
    text = (paper_stack_run / "report.md").read_text()
    assert "## How this run differs from the paper" in text and differ not in text
    assert "software" not in json.loads((paper_stack_run / "setup.json").read_text())["unequal"]
    other = (docker_runs["cont"] / "report.md").read_text()
    assert (f"{differ}intel-tensorflow 2.14.0 (the paper's: intel-tensorflow-avx512 2.10.0; `--stack paper` runs the "
            f"paper's release)") in other


def test_bench_stacks_runs_both_images_side_by_side_and_says_what_each_ran(paper_image, image, tmp_path):
    """`invoke bench --stacks` at the test size: every variant a real container run of its stack's image."""
    from xeontl.measure import bench_stacks

    out = bench_stacks.run(False, tmp_path, sizes="tiny")
    res = json.loads((out / "stacks.json").read_text())["result"]
    assert res["default"]["fp32"]["software"]["tensorflow"] == {"name": "intel-tensorflow", "version": "2.14.0"}
    assert res["paper"]["fp32"]["software"]["tensorflow"] == {"name": "intel-tensorflow-avx512", "version": "2.10.0"}
    for name in ("default", "paper"):
        assert res[name]["bf16"]["img_s"] > 0 and res[name]["fp32"]["img_s"] > 0
        assert res[name]["bf16_speedup"] == res[name]["bf16"]["img_s"] / res[name]["fp32"]["img_s"]
        assert res[name]["fp32"]["ran"]["precision"] == "fp32" and res[name]["demo"]["epochs"] >= 1
    table = (out / "stacks.md").read_text()
    assert "| bf16 speedup over fp32 |" in table and "2 emulated sockets" in table
