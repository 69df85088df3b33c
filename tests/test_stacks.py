"""The two software stacks: what differs between them is chosen in xeontl.supply.stacks, the options pick the
stack's own image, the paper stack's wheelhouse is fetched for its Python, and the report says whose software ran."""

import subprocess

import pytest

from conftest import invoke, one_line_error
from xeontl.common.errors import UserError
from xeontl.launch import options
from xeontl.records import report
from xeontl.supply import image, stacks


def test_the_amp_option_is_named_as_each_release_takes_it():
    # Intel's kit, written for TF 2.10, sets auto_mixed_precision_mkl; TF 2.14 names the same pass anew
    assert stacks.amp_option("2.10.0") == "auto_mixed_precision_mkl"
    assert stacks.amp_option("2.14.0") == "auto_mixed_precision_onednn_bfloat16"
    assert stacks.amp_option("2.14.0-rc1") == "auto_mixed_precision_onednn_bfloat16"


def test_a_stack_picks_its_own_image_unless_another_is_named():
    assert options.check(options.Options()).image == "xeontl:latest"
    assert options.check(options.Options(stack="paper")).image == "xeontl:paper"
    assert options.check(options.Options(stack="paper", image="mine:1")).image == "mine:1"
    with pytest.raises(UserError, match=r"--stack 'tf3': must be one of default, paper"):
        options.check(options.Options(stack="tf3"))
    assert "stack" in options.RESUME_KEYS  # a continuation runs on the software the run started on


def test_an_unknown_stack_is_one_line_from_both_tasks():
    one_line_error(invoke("reproduce", "--stack", "tf3", "--dry-run"), "--stack 'tf3'", "default, paper")
    r = invoke("build", "--stack", "tf3")
    assert r.returncode == 2 and "--stack 'tf3': must be one of default, paper" in r.stderr + r.stdout
    assert "Traceback" not in r.stderr


def test_each_stack_builds_from_its_own_lock_and_nothing_of_the_other():
    paper = stacks.STACKS["paper"]
    assert "requirements/paper-lock.txt" in image.deps_inputs(paper)
    assert "requirements/lock.txt" not in image.deps_inputs(paper)
    assert "requirements/paper-lock.txt" not in image.deps_inputs()
    assert image.deps_tag(paper) != image.deps_tag()
    assert image.checkout_inputs_hash(paper) != image.checkout_inputs_hash()
    lock = paper.lock_path.read_text()
    assert "intel-tensorflow-avx512==2.10.0" in lock and "--hash=sha256:" in lock
    assert "\nintel-tensorflow==" not in lock and "\nkeras==2.10.0" in lock  # TF 2.10's own Keras 2


def test_the_paper_wheelhouse_is_fetched_for_debian_11s_python(monkeypatch, tmp_path):
    """pip runs on the host's 3.11, the wheels are for the image's 3.9: what the code asks pip for, captured."""
    import dataclasses

    calls = []

    def fake_run(cmd, **kw):
        calls.append(cmd)
        return subprocess.CompletedProcess(cmd, 0, "", "")

    monkeypatch.setattr(image.subprocess, "run", fake_run)
    image.wheelhouse(dataclasses.replace(stacks.STACKS["paper"], wheels=str(tmp_path / "w")))
    locked = next(c for c in calls if c[c.index("-r") + 1].endswith("paper-lock.txt"))
    assert locked[locked.index("--python-version") + 1] == "3.9.2" and "cp39" in locked
    assert "manylinux_2_31_x86_64" in locked  # bullseye's glibc
    horovod = next(c for c in calls if c[c.index("-r") + 1].endswith("horovod.txt"))
    assert "--python-version" not in horovod and ":all:" in horovod  # the sdist, compiled in the image
    calls.clear()
    image.wheelhouse(dataclasses.replace(stacks.DEFAULT, wheels=str(tmp_path / "d")))
    assert not any("--python-version" in c for c in calls)  # the host's own Python: pip picks as it always did


def test_the_report_says_whose_software_ran():
    default = {"python": "3.11.2", "tensorflow": "2.14.0",
               "tensorflow_distribution": {"name": "intel-tensorflow", "version": "2.14.0"}}
    paper = {"python": "3.9.2", "tensorflow": "2.10.0",
             "tensorflow_distribution": {"name": "intel-tensorflow-avx512", "version": "2.10.0"}}
    def lines(software):
        run = {"dir": "-", "metrics": {}, "plan": {}, "config": {}, "provenance": {"software": software}}
        return report.differences(run)["lines"]

    assert "software: intel-tensorflow 2.14.0 (the paper's: intel-tensorflow-avx512 2.10.0; `--stack paper` runs the " \
           "paper's release)" in lines(default)
    assert not any(ln.startswith("software") for ln in lines(paper))
    assert stacks.stack_of(paper["tensorflow_distribution"]) == "paper"
    assert stacks.stack_of(default["tensorflow_distribution"]) == "default"
    assert stacks.stack_of({"name": "tensorflow", "version": "2.16.1"}) is None
