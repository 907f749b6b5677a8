"""The package's shape: one folder a concern, no import circle, nothing heavy at import time."""
import ast
import os
import subprocess
import sys

from helpers import REPO

PACKAGE = os.path.join(REPO, "ssdq")


def _modules():
    found = {}
    for base, _, files in os.walk(PACKAGE):
        for name in files:
            if name.endswith(".py"):
                rel = os.path.relpath(os.path.join(base, name), REPO)[:-3].replace(os.sep, ".")
                found[rel[:-len(".__init__")] if rel.endswith(".__init__") else rel] = \
                    os.path.join(base, name)
    return found


def import_graph():
    """{module: {ssdq modules it imports}}, read from the source (every import, wherever it
    sits: one inside a function still makes a circle)."""
    modules = _modules()
    graph = {}
    for module, path in modules.items():
        deps = set()
        for node in ast.walk(ast.parse(open(path).read())):
            if isinstance(node, ast.ImportFrom) and node.level:
                deps.add("relative import")
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ssdq"):
                for alias in node.names:
                    sub = "%s.%s" % (node.module, alias.name)
                    deps.add(sub if sub in modules else node.module)
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name.startswith("ssdq")}
        graph[module] = {d for d in deps if d != module}
    return graph


def _cycle(graph):
    """A cycle of ``graph`` as a list of nodes, or None."""
    state = {}

    def visit(node, path):
        state[node] = "open"
        for dep in sorted(graph.get(node, ())):
            if state.get(dep) == "open":
                return path[path.index(dep):] + [dep] if dep in path else [node, dep]
            if dep not in state:
                found = visit(dep, path + [dep])
                if found:
                    return found
        state[node] = "done"
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node, [node])
            if found:
                return found
    return None


def test_no_import_circle_between_modules():
    graph = import_graph()
    assert not any("relative import" in deps for deps in graph.values())
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_no_import_circle_between_packages():
    """The folders are layers: host and data below model, model below eval and quant, ..."""
    packages = {}
    for module, deps in import_graph().items():
        top = ".".join(module.split(".")[:2])
        packages.setdefault(top, set()).update(".".join(d.split(".")[:2]) for d in deps)
    packages = {p: deps - {p} for p, deps in packages.items()}
    assert _cycle(packages) is None, " -> ".join(_cycle(packages))


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_ssdq_imports_are_at_the_top_of_each_file():
    """ssdq's own modules are imported at the top; only heavy third-party ones load lazily."""
    inside = []
    for module, path in _modules().items():
        tree = ast.parse(open(path).read())
        top = {id(node) for node in tree.body}
        for node in ast.walk(tree):
            if isinstance(node, (ast.Import, ast.ImportFrom)) and id(node) not in top:
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                    [a.name for a in node.names]
                if any(n.startswith("ssdq") for n in names):
                    inside.append("%s:%d" % (module, node.lineno))
    assert not inside, inside


def test_few_modules_at_the_top_of_the_package():
    top = sorted(n for n in os.listdir(PACKAGE) if n.endswith(".py"))
    assert len(top) <= 8, top
    assert {"model", "quant", "eval", "data", "train", "host", "bench", "compress", "backends",
            "scaleout", "report", "cli"} <= set(os.listdir(PACKAGE))


def test_nothing_imports_mxnet_at_import_time():
    """Threads must be pinned before mxnet loads: importing any ssdq module (the parser
    included) must not load it."""
    code = ("import importlib, pkgutil, sys, ssdq\n"
            "for m in pkgutil.walk_packages(ssdq.__path__, 'ssdq.'):\n"
            "    if m.name != 'ssdq.__main__': importlib.import_module(m.name)\n"
            "from ssdq.cli.main import build_parser\nbuild_parser()\n"
            "heavy = [m for m in ('mxnet', 'gluoncv', 'onnx', 'onnxruntime', 'openvino', 'ray',"
            " 'matplotlib') if m in sys.modules]\nprint(heavy)\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


def test_style_checks_pass():
    """ruff: imports sorted and used, no undefined names (ruff.toml)."""
    ruff = os.path.join(os.path.dirname(sys.executable), "ruff")
    if not os.path.exists(ruff):
        import pytest

        pytest.skip("ruff is not installed (it is in the test extra)")
    proc = subprocess.run([ruff, "check", "ssdq", "scripts", "tests"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
