"""The package's shape: no import circle (every import counted, those inside functions too: a lazy import is still a
dependency), so each module can be read, tested and changed from the bottom up."""

import ast
from pathlib import Path

from conftest import ROOT, scaled

PACKAGE = ROOT / "src" / "xeontl"


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def imports_of(path: Path, name: str) -> set[str]:
    """The xeontl modules PATH imports, anywhere in it."""
    out = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names if a.name.startswith("xeontl")}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[: len(package.split(".")) - node.level + 1] + ([base] if base
                                                                                                    else []))
            if base.startswith("xeontl"):
                out.add(base)
                out |= {f"{base}.{a.name}" for a in node.names}  # `from xeontl.records import claims`: a module
    return out


def graph() -> dict[str, set[str]]:
    modules = {module_name(p): p for p in PACKAGE.rglob("*.py")}
    return {name: {m for m in imports_of(path, name) if m in modules and m != name} for name, path in modules.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's strongly connected components of more than one module."""
    index, low, stack, on, out, counter = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = counter[0]
        counter[0] += 1
        stack.append(v)
        on.add(v)
        for w in g[v]:
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def test_the_package_import_graph_has_no_circle():
    g = graph()
    assert len(g) > 30 and "xeontl.records.claims" in g["xeontl.records.report"]  # the graph is read, not empty
    assert cycles(g) == []


def test_the_circle_finder_finds_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_no_module_is_over_500_lines():
    """A module a reader can hold: the bench split by what it measures (probes), assembles (bench) and writes
    (bench_report); the claims by the paper's claims (claims) and the bundle's own reference runs (reference)."""
    sizes = {p.relative_to(PACKAGE).as_posix(): len(p.read_text().splitlines()) for p in PACKAGE.rglob("*.py")}
    assert {k: v for k, v in sizes.items() if v > 500} == {}


RUNNERS = {"run", "Popen", "check_output", "check_call", "call"}


def docker_subprocesses(source: str) -> list[int]:
    """Lines of SOURCE that start the docker CLI (or docker-compose) as a subprocess: a call of subprocess.run/Popen/...
    (or of a helper given the argv) whose first argument is a list literal starting with "docker"."""
    out = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.List) and node.args[0].elts:
            first = node.args[0].elts[0]
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if (isinstance(first, ast.Constant) and str(first.value).startswith("docker")
                    and (name in RUNNERS or name.startswith("_"))):
                out.append(node.lineno)
    return out


def test_no_module_runs_the_docker_cli():
    """Everything asked of the daemon goes through the Docker SDK (xeontl.supply.dockerapi); the `docker run` line the
    launch record shows is rendered (dockerapi.Container.cli), never run."""
    found = {p.relative_to(PACKAGE).as_posix(): lines for p in PACKAGE.rglob("*.py")
             if (lines := docker_subprocesses(p.read_text()))}
    assert found == {}


def test_the_docker_cli_finder_finds_one():
    assert docker_subprocesses('import subprocess\nsubprocess.run(["docker", "kill", c])\n_run(["docker", "tag"])\n'
                               'x = ["docker", "run"]\n') == [2, 3]


def test_the_folders_name_the_parts():
    """A folder per concern (Horovod's runner/ layout): nothing but the entry points at the top, each folder says what
    it holds, and docs/layout.md's map names every folder."""
    data = {"configs", "schemas"}  # packages of data files only (importlib.resources reads them)
    folders = {p.parent.relative_to(PACKAGE).as_posix() for p in PACKAGE.rglob("*.py")} - data
    assert folders == {".", "common", "launch", "placement", "engines", "experiment", "records", "supply", "measure"}
    assert all({p.name for p in (PACKAGE / d).glob("*.py")} <= {"__init__.py"} for d in data)
    assert {p.name for p in PACKAGE.glob("*.py")} == {"__init__.py", "__main__.py", "cli.py"}
    layout = (ROOT / "docs" / "layout.md").read_text()
    for folder in folders - {"."}:
        assert ast.get_docstring(ast.parse((PACKAGE / folder / "__init__.py").read_text())), folder
        assert f"| `{folder}/` |" in layout, folder


def test_the_launchers_cli_starts_without_numpy_or_tensorflow():
    """Every `invoke` command is a process that imports tasks.py and the launcher; numpy was a third of its start
    (checkpoint.py's top-level import, for two functions the launcher never calls): the suite starts ~80 of them."""
    import subprocess
    import sys

    code = ("import importlib.util, sys\n"
            "spec = importlib.util.spec_from_file_location('tasks', 'tasks.py')\n"
            "spec.loader.exec_module(importlib.util.module_from_spec(spec))\n"
            "import xeontl.launch.launch, xeontl.engines.kubernetes, xeontl.records.report\n"
            "print(sorted(m for m in ('numpy', 'tensorflow') if m in sys.modules))")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, timeout=scaled(30))
    assert r.returncode == 0 and r.stdout.strip() == "[]", r.stdout + r.stderr
