"""The package's shape: one folder a concern, no import circle, nothing heavy before pinning."""
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


# run before threads are pinned, or in processes where MXNet must never load: the package, its
# base modules, host/ (pinning), the runtime-worker side of backends/, scaleout.engine (a Ray
# worker imports it to pin, before the trial's module loads mxnet) and bench.instance (a
# multi-instance process pins there, then imports its timing)
NEVER_MXNET = ("ssdq", "ssdq.errors", "ssdq.options", "ssdq.optional", "ssdq.timing",
               "ssdq.fileio", "ssdq.backends", "ssdq.backends.worker", "ssdq.backends.onnx_runner",
               "ssdq.backends.onnxruntime_backend", "ssdq.backends.openvino_backend",
               "ssdq.backends.tail", "ssdq.scaleout.engine", "ssdq.bench.instance")
# what building the parser may not load: threads are pinned after it
NOT_IN_THE_PARSER = ("mxnet", "gluoncv", "numpy", "cv2", "tqdm", "matplotlib", "onnx",
                     "onnxruntime", "openvino", "ray")


def _loaded_after(imports, code=""):
    """The third-party modules loaded by importing ``imports`` (and running ``code``) in a
    fresh interpreter."""
    script = ("import importlib, sys\n"
              "for name in %r: importlib.import_module(name)\n%s\n"
              "print(sorted({m.split('.')[0] for m in sys.modules}))\n" % (list(imports), code))
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 0, proc.stderr
    return set(ast.literal_eval(proc.stdout.strip().splitlines()[-1]))


def test_what_runs_before_pinning_never_loads_mxnet():
    modules = NEVER_MXNET + tuple(m for m in _modules() if m.startswith("ssdq.host"))
    assert not {"mxnet", "gluoncv", "cv2"} & _loaded_after(modules)


def test_building_the_parser_loads_nothing_heavy():
    """The parser side (cli.main, cli.flags, cli.commands, the folders' options modules, and
    the docs page rendered from it) imports no heavy dependency: the CLI pins threads after
    parsing, and only then imports the command's implementation (cli.actions)."""
    parser_side = [m for m in _modules() if m.startswith("ssdq.cli.commands")
                   or m.endswith(".options")] + ["ssdq.cli.main", "ssdq.cli.docs"]
    loaded = _loaded_after(parser_side, "from ssdq.cli.docs import render\nrender()")
    assert not set(NOT_IN_THE_PARSER) & loaded, sorted(set(NOT_IN_THE_PARSER) & loaded)


def test_style_checks_pass():
    """ruff: imports sorted and used, no undefined names (ruff.toml)."""
    ruff = os.path.join(os.path.dirname(sys.executable), "ruff")
    if not os.path.exists(ruff):
        import pytest

        pytest.skip("ruff is not installed (it is in the test extra)")
    proc = subprocess.run([ruff, "check", "ssdq", "scripts", "tests"], cwd=REPO,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
