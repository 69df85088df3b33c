"""A stack's release tag names that stack's TensorFlow: `--stack paper` runs xeontl:paper as the paper's
intel-tensorflow-avx512 2.10.0, and provenance says so. So no way of making or moving a tag gives one stack's image
another stack's own tag: `image.build` (also reached from the docker engine's preflight with the user's --image),
its re-tag of an existing image (held to its TF label), and `invoke build --from` (an archive holds the default
stack's image alone). Docker is faked: what was asked of it is recorded."""

import pytest

from conftest import tasks_module
from xeontl.common.errors import UserError
from xeontl.supply import archive, dockerapi, stacks
from xeontl.supply import image as imagelib

DEFAULT, PAPER = stacks.STACKS["default"], stacks.STACKS["paper"]
TF = {name: {stacks.TF_LABEL: s.versions["tensorflow"]} for name, s in stacks.STACKS.items()}


@pytest.fixture
def daemon(monkeypatch):
    """A daemon holding IMAGES (ref -> labels; the content tags of either stack as `set` makes them), recording the
    tags moved and the builds; building an app image makes it with the labels BUILT gives (default: the stack's)."""
    got = {"images": {}, "tags": [], "builds": [], "built": None, "asked": 0}

    def inspect(ref):
        got["asked"] += 1
        labels = got["images"].get(ref)
        return None if labels is None else {"Config": {"Labels": labels}, "Size": 1}

    def docker_build(dockerfile, tag, args, context, label, labels=None):
        got["builds"].append(tag)
        got["images"][tag] = got["built"] if got["built"] is not None else TF[label.split("(")[1].split()[0]]

    monkeypatch.setattr(dockerapi, "check_daemon", lambda: got.__setitem__("asked", got["asked"] + 1))
    monkeypatch.setattr(dockerapi, "inspect", inspect)

    def tag(source, ref):
        got["tags"].append((source, ref))
        got["images"][ref] = got["images"][source]

    monkeypatch.setattr(dockerapi, "tag", tag)
    monkeypatch.setattr(imagelib, "build_deps", lambda offline, force, stack: (f"xeontl-deps:{stack.name}", {}))
    monkeypatch.setattr(imagelib, "label_args", lambda inputs, stack=DEFAULT: {})
    monkeypatch.setattr(imagelib, "_docker_build", docker_build)
    return got


def content(name):
    return f"xeontl:inputs-{imagelib.inputs_hash(imagelib.stack_inputs(stacks.STACKS[name]))}"


OTHERS_TAG = r"^{tag} is the {other} stack's own tag \(.*\): the {stack} stack's image \(.*\) is not given it; nothing"
HOLDS = r"^{content} holds io.xeontl.versions.tensorflow={label}, not the {stack} stack's .*: not tagged {tag} \("
BUILDS = [
    # (what, stack, tag, images present {stack whose content tag: labels}, built labels, tags moved | refusal)
    ("the default stack under xeontl:paper (the docker engine's preflight with --image xeontl:paper): its image "
     "found", DEFAULT, "xeontl:paper", {"default": TF["default"]}, None, OTHERS_TAG.format(
         tag="xeontl:paper", other="paper", stack="default")),
    ("the default stack under xeontl:paper: built", DEFAULT, "xeontl:paper", {}, None,
     OTHERS_TAG.format(tag="xeontl:paper", other="paper", stack="default")),
    ("the paper stack under xeontl:latest", PAPER, "xeontl:latest", {"paper": TF["paper"]}, None,
     OTHERS_TAG.format(tag="xeontl:latest", other="default", stack="paper")),
    ("the default stack, its own tag, found", DEFAULT, None, {"default": TF["default"]}, None,
     [("default", "xeontl:latest")]),
    ("the paper stack, its own tag, found", PAPER, "xeontl:paper", {"paper": TF["paper"]}, None,
     [("paper", "xeontl:paper")]),
    ("the default stack under a tag of the user's", DEFAULT, "mine:1", {"default": TF["default"]}, None,
     [("default", "mine:1")]),
    ("the default stack, built", DEFAULT, "xeontl:latest", {}, None, [("default", "xeontl:latest")]),
    # defence in depth: a content tag moved by hand to another stack's image is not passed on under this stack's name
    ("the paper stack's content tag on a default-stack image", PAPER, "xeontl:paper", {"paper": TF["default"]}, None,
     HOLDS.format(content=r"xeontl:inputs-\w+", label="intel-tensorflow 2.14.0", stack="paper", tag="xeontl:paper")),
    ("the default stack's content tag on an image without the label", DEFAULT, "xeontl:latest", {"default": {}}, None,
     HOLDS.format(content=r"xeontl:inputs-\w+", label=r"\(none\)", stack="default", tag="xeontl:latest")),
    ("a build whose image holds another stack's TF", DEFAULT, "xeontl:latest", {}, TF["paper"],
     HOLDS.format(content=r"xeontl:inputs-\w+", label="intel-tensorflow-avx512 2.10.0", stack="default",
                  tag="xeontl:latest")),
]


@pytest.mark.parametrize("what,stack,tag,present,built,want", BUILDS, ids=[c[0] for c in BUILDS])
def test_a_build_never_gives_a_stacks_image_another_stacks_tag(what, stack, tag, present, built, want, daemon):
    daemon["images"] = {content(s): labels for s, labels in present.items()}
    daemon["built"] = built
    if isinstance(want, str):
        with pytest.raises(UserError, match=want) as e:
            imagelib.build(tag=tag, offline=True, stack=stack)
        assert "\n" not in str(e.value) and daemon["tags"] == []
        if "own tag" in want:  # refused before the daemon is asked anything, or anything built
            assert daemon["asked"] == 0 and daemon["builds"] == []
    else:
        imagelib.build(tag=tag, offline=True, stack=stack)
        assert daemon["tags"] == [(content(s), t) for s, t in want]


def test_the_docker_engines_build_of_a_missing_image_keeps_the_stacks_tags(daemon, monkeypatch):
    """`invoke reproduce --image xeontl:paper` under the default stack, the image missing: the preflight's build of
    the default stack is refused, not tagged xeontl:paper (the options' own refusal comes first where it is made)."""
    from xeontl.engines.docker import DockerEngine
    from xeontl.launch import options

    def missing(ref, inputs=None, how=""):
        raise UserError(f"no image {ref}: run {how}")

    monkeypatch.setattr(dockerapi, "require_image", missing)
    daemon["images"] = {content("default"): TF["default"]}
    engine = DockerEngine(options.Options(image="xeontl:paper"))
    with pytest.raises(UserError, match=OTHERS_TAG.format(tag="xeontl:paper", other="paper", stack="default")):
        engine.preflight(None)
    assert daemon["tags"] == []


FROM = [
    # (what, build's keywords, the refusal's words)
    ("--stack paper", {"stack": "paper"}, "an archive holds the default stack's image only (intel-tensorflow "
                                          "2.14.0), never the paper stack's; nothing was loaded"),
    ("--stack paper --tag xeontl:mine", {"stack": "paper", "tag": "xeontl:mine"}, "never the paper stack's"),
    ("--tag xeontl:paper", {"tag": "xeontl:paper"}, "xeontl:paper is the paper stack's own tag "
                                                    "(intel-tensorflow-avx512 2.10.0): the default stack's image "
                                                    "(intel-tensorflow 2.14.0) is not given it; nothing was loaded"),
]


@pytest.mark.parametrize("what,kwargs,words", FROM, ids=[c[0] for c in FROM])
def test_build_from_an_archive_never_tags_it_as_another_stack(what, kwargs, words, tmp_path, monkeypatch):
    """An archive holds the default stack's image (archive.py checks the default stack's inputs hash): `build --from`
    with --stack paper, or with the paper stack's tag, is one line, exit 2, before the archive is read."""
    from invoke import Context, Exit

    tasks = tasks_module()
    read = []
    monkeypatch.setattr(archive, "verify", lambda *a, **kw: read.append(a) or pytest.fail("the archive was read"))
    monkeypatch.setattr(dockerapi, "tag", lambda *a: pytest.fail("a tag moved"))
    monkeypatch.setattr(imagelib, "build", lambda **kw: pytest.fail("a build ran"))
    with pytest.raises(Exit) as e:
        tasks.build(Context(), from_=str(tmp_path / "x.tar"), **kwargs)
    assert e.value.code == 2 and words in e.value.message and "\n" not in e.value.message, e.value.message
    assert e.value.message.startswith("xeontl: error: ") and read == []
