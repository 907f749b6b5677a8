"""Every flag a command offers reaches the code that uses it, and every option a flag sets is
read by the library: the static half of "no flag accepted and silently ignored" (the behaviour
tests of the flags that once were: tests/quant/test_tune.py, tests/cli/test_main.py)."""
import argparse
import ast
import dataclasses
import importlib
import inspect
import os

import pytest

from ssdq.cli import flags, main
from ssdq.cli.commands import COMMANDS
from ssdq.options import Options

# read by cli/main.py for every command that pins threads, or by argparse itself
MAIN_CONSUMES = {"cores", "threads", "numa_node", "membind", "strict", "gpus", "quiet",
                 "command_module", "help", "version"}


def _dests(parser):
    """{dest} of every flag of ``parser`` and its sub-parsers (the dispatch keys excepted)."""
    found = set()
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found |= _dests(sub)
        elif not isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            found.add(action.dest)
    return found


def _command_parsers():
    parser = main.build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices


def _consumed(module, seen=None):
    """Names the command's module (its parser side or its action) reads off ``args``:
    ``args.X``, ``getattr(args, "X")``, the fields of ``Options`` classes it builds with
    ``X.from_args(args)``, and the same in the command modules it borrows helpers from."""
    seen = seen if seen is not None else set()
    if module.__name__ in seen:
        return set()
    seen.add(module.__name__)
    tree = ast.parse(inspect.getsource(module))
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                and node.value.id == "args":
            names.add(node.attr)
        elif isinstance(node, ast.Call):
            func = node.func
            if isinstance(func, ast.Name) and func.id in ("getattr", "at_least") and \
                    node.args and isinstance(node.args[0], ast.Name) and node.args[0].id == "args":
                names |= {a.value for a in node.args[1:2] if isinstance(a, ast.Constant)}
            if isinstance(func, ast.Attribute) and func.attr == "from_args":
                cls = _resolve(module, func.value)  # None: through a table (_resolve_dynamic)
                names |= {f.name for f in dataclasses.fields(cls)} if cls else set()
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith(
                ("ssdq.cli.commands.", "ssdq.cli.actions.")):
            names |= _consumed(importlib.import_module(node.module), seen)
    return names


def _resolve(module, node):
    """The object an expression (``Name`` or ``a.b.Name``) in ``module`` refers to, or None."""
    parts = []
    while isinstance(node, ast.Attribute):
        parts.append(node.attr)
        node = node.value
    if not isinstance(node, ast.Name) or not hasattr(module, node.id):
        return None
    obj = getattr(module, node.id)
    for part in reversed(parts):
        obj = getattr(obj, part)
    return obj


def _resolve_dynamic(module):
    """Options classes a command reaches through a table (``study``'s KINDS)."""
    found = set()
    for value in vars(module).values():
        if isinstance(value, (tuple, list)):
            for item in value:
                for cell in item if isinstance(item, (tuple, list)) else (item,):
                    if inspect.isclass(cell) and issubclass(cell, Options):
                        found |= {f.name for f in dataclasses.fields(cell)}
    return found


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: c.NAME)
def test_every_flag_of_a_command_is_read_by_it(command):
    offered = _dests(_command_parsers()[command.NAME])
    consumed = _consumed(command) | _consumed(main.action_of(command)) | \
        _resolve_dynamic(command) | MAIN_CONSUMES
    ignored = sorted(offered - consumed)
    assert not ignored, "ssdq %s offers flags it never reads: %s" % (command.NAME, ignored)


def _options_classes():
    import pkgutil

    import ssdq

    found = {}
    for info in pkgutil.walk_packages(ssdq.__path__, "ssdq."):
        if info.name.startswith(("ssdq.cli", "ssdq.__main__")):
            continue
        module = importlib.import_module(info.name)
        for value in vars(module).values():
            if inspect.isclass(value) and issubclass(value, Options) and value is not Options \
                    and value.__module__ == info.name:
                found[value.__name__] = value
    return found


def _attributes_read_in_library():
    import ssdq

    root = os.path.dirname(ssdq.__file__)
    names = set()
    for base, _, files in os.walk(root):
        if os.path.basename(base) == "cli" or "/cli/" in base + "/":
            continue
        for name in files:
            if name.endswith(".py"):
                tree = ast.parse(open(os.path.join(base, name)).read())
                names |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                          and isinstance(n.ctx, ast.Load)}
    return names


def test_every_option_field_is_read_by_the_library():
    """A field the library never reads would be a flag that changes nothing."""
    read = _attributes_read_in_library()
    unread = sorted("%s.%s" % (cls.__name__, f.name) for cls in _options_classes().values()
                    for f in dataclasses.fields(cls) if f.name not in read)
    assert not unread, unread


def test_the_flag_test_catches_an_ignored_flag():
    """The test above is not vacuous: a command that offers a flag and never reads it fails."""
    class Sloppy:
        NAME = "sloppy"

    parser = argparse.ArgumentParser()
    flags.add_options(parser, flags.CalibOptions, "quantization")
    parser.add_argument("--unused")
    consumed = {"calib_mode"}  # a handler reading only args.calib_mode
    assert {"percentile", "unused"} <= _dests(parser) - consumed - MAIN_CONSUMES


def test_each_default_is_the_options_default():
    """The parser reads its defaults from the options dataclasses: none is written twice."""
    commands = _command_parsers()
    cases = [(["quantize"], flags.CalibOptions), (["reproduce"], flags.DataOptions),
             (["study", "prune"], importlib.import_module(
                 "ssdq.compress.pruning.study").PruneStudyOptions)]
    for argv, cls in cases:
        args = main.build_parser().parse_args(argv)
        for field in dataclasses.fields(cls):
            default = field.default if field.default is not dataclasses.MISSING \
                else field.default_factory()
            value = getattr(args, field.name)
            assert (list(value) if isinstance(value, (tuple, list)) else value) == \
                (list(default) if isinstance(default, (tuple, list)) else default), field.name
    assert commands  # the table built
