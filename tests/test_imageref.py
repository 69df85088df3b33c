"""Image references as Docker reads them (xeontl.supply.imageref), held to distribution/reference's own test tables
(tests/fixtures/docker/reference-normalize.json names the file and commit), then the checks that compare references:
one image under any of its spellings is one image to each of them."""

import json

import pytest

from conftest import ROOT
from xeontl.common.errors import UserError
from xeontl.supply import imageref, stacks

UPSTREAM = json.loads((ROOT / "tests" / "fixtures" / "docker" / "reference-normalize.json").read_text())


@pytest.mark.parametrize("ref", UPSTREAM["valid"])
def test_what_docker_accepts_is_accepted(ref):
    imageref.parse(ref)


@pytest.mark.parametrize("ref", UPSTREAM["invalid"])
def test_what_docker_refuses_is_refused_in_one_line(ref):
    with pytest.raises(ValueError):
        imageref.parse(ref)
    with pytest.raises(UserError) as e:
        imageref.require(ref)
    assert "\n" not in str(e.value)


@pytest.mark.parametrize("spellings,full", UPSTREAM["full_names"], ids=[c[1] for c in UPSTREAM["full_names"]])
def test_every_spelling_normalizes_to_dockers_full_name(spellings, full):
    assert {str(imageref.parse(s)) for s in spellings} == {full}


# Ours: a stack's own tag under each spelling Docker gives it, and what is not it
STACK_TAGS = [
    ("xeontl:paper", "paper"), ("docker.io/library/xeontl:paper", "paper"), ("docker.io/xeontl:paper", "paper"),
    ("index.docker.io/library/xeontl:paper", "paper"),
    ("xeontl", "default"), ("xeontl:latest", "default"), ("docker.io/library/xeontl", "default"),
    ("xeontl@sha256:" + "a" * 64, None),  # a digest alone names no tag: the image's own label decides
    ("example.com/xeontl:paper", None), ("library/xeontl:paperx", None), ("xeontl:inputs-69b67bed4cbc", None),
    ("XEONTL:PAPER", None), ("xeontl:paper ", None), ("/srv/images/xeontl-paper", None),
]


@pytest.mark.parametrize("ref,stack", STACK_TAGS, ids=[c[0] for c in STACK_TAGS])
def test_a_stacks_own_tag_is_known_under_every_spelling(ref, stack):
    owner = stacks.tag_stack(ref)
    assert (owner.name if owner else None) == stack


SPELLED_PAPER = ["docker.io/library/xeontl:paper", "docker.io/xeontl:paper", "index.docker.io/library/xeontl:paper"]


@pytest.mark.parametrize("ref", SPELLED_PAPER)
def test_the_paper_stacks_tag_in_any_spelling_is_refused_under_the_default_stack(ref):
    """The adversary's reproducer: `--image docker.io/library/xeontl:paper` under the default stack was built as the
    default stack and tagged xeontl:paper; `build --tag` and an archive's `--tag` the same."""
    from xeontl.launch import options
    from xeontl.supply import image

    with pytest.raises(UserError, match="paper stack's image"):
        options.check(options.Options(sockets=2, emulate_sockets=True, profile="smoke", image=ref, dry_run=True))
    with pytest.raises(UserError, match="paper stack's own tag|a digest names"):
        image.check_tag(ref, stacks.DEFAULT)


# the adversary's too: digests digest.Parse refuses (opencontainers/go-digest: a registered algorithm, its length,
# lower case), a tag Go's ASCII-only \w refuses
BAD_REFS = ["XEONTL:PAPER", "xeontl:paper ", " xeontl:paper", "xeontl:paper\t", "-xeontl",
            "xeontl:paper@sha256:" + "a" * 32, "xeontl:paper@sha256:" + "A" * 64, "xeontl:paper@md5:" + "a" * 32,
            "xeontl:paper@sha256:" + "a" * 65, "xeontl:l\u00e2test"]


@pytest.mark.parametrize("ref", BAD_REFS)
def test_an_image_reference_docker_refuses_is_one_line_before_anything(ref):
    from xeontl.launch import options
    from xeontl.supply import image

    with pytest.raises(UserError) as e:
        options.check(options.Options(sockets=2, emulate_sockets=True, profile="smoke", image=ref, dry_run=True))
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="--tag .*nothing was built"):
        image.check_tag(ref, stacks.DEFAULT)


def test_slurms_image_directory_is_a_path_not_a_reference(tmp_path):
    """The adversary's third round: `--engine slurm --image /abs/dir` (an unpacked image, as docs/engines.md says to
    give it) was refused by the reference pattern, whose first character must be a letter or digit."""
    from xeontl.launch import options

    unpacked = tmp_path / "Image Dir"  # a path's spelling, not a reference's: upper case, a space
    unpacked.mkdir()

    def check(image, engine="slurm"):
        return options.check(options.Options(engine=engine, image=image, dry_run=True, sockets=2))

    assert check(str(unpacked)).image == str(unpacked)
    with pytest.raises(UserError, match="an image reference"):  # not a directory: it is held to the grammar
        check(str(tmp_path / "missing"))
    with pytest.raises(UserError, match="an image reference"):  # a directory is Slurm's alone
        check(str(unpacked), engine="local")


@pytest.mark.parametrize("native,container,engine", [(True, "charliecloud", "local"), (False, "none", "slurm")])
def test_a_stack_runs_in_its_image_never_on_a_hosts_own_python(native, container, engine):
    """The adversary's second round: `--native --stack paper` ran the venv's intel-tensorflow 2.14 and recorded the
    paper stack (so would Slurm's `--container none`, the nodes' own Python)."""
    from xeontl.launch import options

    with pytest.raises(UserError, match="--stack paper runs in its image"):
        options.check(options.Options(stack="paper", native=native, container=container, engine=engine,
                                      dry_run=True, sockets=2))
