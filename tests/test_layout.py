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


# The folders (and the modules at the top of the package) as layers, the lowest first: a unit
# imports only units of the layers below its own. Read from the import graph.
LAYERS = (
    ("ssdq",),  # the version
    ("ssdq.errors",),
    ("ssdq.options", "ssdq.optional", "ssdq.fileio", "ssdq.timing"),
    ("ssdq.host",),  # pinning: runs before MXNet loads
    ("ssdq.data", "ssdq.scaleout"),
    ("ssdq.model",),
    ("ssdq.backends",),
    ("ssdq.eval",),
    ("ssdq.train",),
    ("ssdq.quant",),
    ("ssdq.bench",),
    ("ssdq.compress", "ssdq.report"),
    ("ssdq.reproduce",),
    ("ssdq.cli",),
    ("ssdq.__main__",),
)


def _unit(module):
    """The folder (or top-level module) a module belongs to: ``ssdq.quant.tune`` -> ``ssdq.quant``."""
    return ".".join(module.split(".")[:2])


def test_the_folders_are_layers():
    rank = {unit: i for i, layer in enumerate(LAYERS) for unit in layer}
    graph = import_graph()
    assert not {_unit(m) for m in graph} - set(rank), "a folder in no layer"
    upward = sorted("%s imports %s" % (module, dep) for module, deps in graph.items()
                    for dep in deps if _unit(dep) != _unit(module)
                    and rank[_unit(dep)] >= rank[_unit(module)])
    assert not upward, upward


def test_the_parser_side_never_imports_an_implementation():
    """cli/commands (the parser) may not import cli/actions (what loads the library)."""
    graph = import_graph()
    found = sorted("%s -> %s" % (m, d) for m, deps in graph.items()
                   if m.startswith(("ssdq.cli.commands", "ssdq.cli.flags", "ssdq.cli.main"))
                   for d in deps if d.startswith("ssdq.cli.actions"))
    assert not found, found


def test_the_cycle_finder_finds_cycles():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


# imports inside functions: the optional runtimes, and nothing else but these calls of
# importlib.import_module: (module, function) -> why
OPTIONAL_RUNTIMES = ("onnx", "onnxruntime", "openvino", "ray", "matplotlib")
DEFERRED_IMPORTS = {
    ("ssdq.cli.main", "action_of"): "the command's implementation, after pinning",
    ("ssdq.bench.instance", "main"): "a multi-instance process's timing, after pinning",
    ("ssdq.backends", "backend_module"): "a runtime's module, by name from a table",
    ("ssdq.optional", "require"): "an optional runtime, by name",
}


def _inside_functions(node, function=None):
    """(function, node) for every node under ``node`` that sits inside a function, named by
    the innermost function around it."""
    for child in ast.iter_child_nodes(node):
        if function is not None:
            yield function, child
        inner = child.name if isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef)) \
            else function
        yield from _inside_functions(child, inner)


def test_imports_sit_at_the_top_of_each_module():
    """Every module imports its dependencies at its top; inside a function only an optional
    runtime, and the few deferred imports ``DEFERRED_IMPORTS`` names (the command line's, after
    pinning, and two lookups by name)."""
    inside, deferred = [], set()
    for module, path in _modules().items():
        for function, node in _inside_functions(ast.parse(open(path).read())):
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                names = [node.module or ""] if isinstance(node, ast.ImportFrom) else \
                    [a.name for a in node.names]
                if not all(n.split(".")[0] in OPTIONAL_RUNTIMES for n in names):
                    inside.append("%s:%d %s" % (module, node.lineno, ", ".join(names)))
            elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                    and node.func.attr == "import_module":
                deferred.add((module, function))
    assert not inside, inside
    assert deferred == set(DEFERRED_IMPORTS)


def test_no_class_is_defined_inside_a_function():
    """Classes are module-level (no factory building one on first use)."""
    found = ["%s: %s in %s" % (module, node.name, function)
             for module, path in _modules().items()
             for function, node in _inside_functions(ast.parse(open(path).read()))
             if isinstance(node, ast.ClassDef)]
    assert not found, found


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


def test_no_test_skips_itself_when_a_runtime_is_missing():
    """The test extra installs every optional runtime: a test that skipped when one failed to
    install would keep CI green with its suite unrun, so a missing runtime is an import error."""
    found = []
    for base, _, files in os.walk(os.path.join(REPO, "tests")):
        for name in files:
            if name.endswith(".py"):
                text = open(os.path.join(base, name)).read()
                if "importorskip" in text and name != "test_layout.py":
                    found.append(name)
    assert not found, found
