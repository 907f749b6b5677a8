"""The command line: ``ssdq COMMAND ...``, each command's flags in ``cli/commands`` and what it
does in ``cli/actions``.

``main()`` builds the parser from the command table, parses, pins threads where the command runs
a network, and only then imports the command's implementation (``action_of``) and calls its
``run``. The library imports mxnet at its top, so the rule "threads are pinned before MXNet
loads" is kept here, where the process starts: nothing the parser imports loads it. A
``SsdqError`` becomes one line on stderr and exit status 2; Ctrl-C exits 130.
"""
import argparse
import importlib
import os
import sys
import warnings
from dataclasses import dataclass

from ssdq import __version__
from ssdq.cli import flags
from ssdq.cli.commands import COMMANDS
from ssdq.errors import SsdqError, SsdqNote, SsdqWarning
from ssdq.host import cpus, environment
from ssdq.options import at_least

ACTIONS = "ssdq.cli.actions"


@dataclass
class Context:
    """What ``main`` gives a command besides its arguments."""
    threads: dict  # the pinning result (None for commands that pin nothing)
    progress: bool  # whether to draw progress bars


def build_parser():
    parser = argparse.ArgumentParser(
        prog="ssdq", description="Reproduce Intel's int8 results for GluonCV SSD-VGG16 on Xeon "
        "CPUs, and compress and deploy the detector.", formatter_class=flags.HELP_FORMAT)
    parser.add_argument("--version", action="version", version="ssdq %s" % __version__)
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        p = sub.add_parser(command.NAME, help=command.HELP, description=command.__doc__,
                           formatter_class=flags.HELP_FORMAT)
        command.add_arguments(p)
        p.set_defaults(command_module=command)
    return parser


def main(argv=None):
    args = build_parser().parse_args(argv)
    warnings.showwarning = _show_warning
    # gluoncv registers an initializer per anchor constant under a name built from the block's
    # name; the second SSD built in one process (pruning, studies) re-registers it, harmlessly
    warnings.filterwarnings("ignore", message=".*New initializer .* registered",
                            category=UserWarning)
    try:
        return _run(args) or 0
    except SsdqError as exc:
        print("ssdq: error: %s" % exc, file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("ssdq: interrupted", file=sys.stderr)
        return 130


def _run(args):
    environment.check_numpy()
    command = args.command_module
    threads = None
    if command.PINS:
        if args.gpus:
            raise SsdqError("GPU context requested (--gpus %s), but ssdq runs on CPU only: its "
                            "MXNet build has no CUDA; drop --gpus" % args.gpus)
        at_least(args, "batch_size", "num_workers", "num_calib_batches")
        os.environ.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
        threads = cpus.pin_threads(args.cores, args.threads, args.numa_node, args.membind,
                                   args.strict)
    return action_of(command).run(args, Context(threads, flags.show_progress(args)))


def action_of(command):
    """The module that runs ``command``: ``cli/actions/`` holds it under the name of its
    ``cli/commands/`` module. Importing it loads the library (mxnet included), so ``_run`` calls
    this only after pinning."""
    return importlib.import_module("%s.%s" % (ACTIONS, command.__name__.rpartition(".")[2]))


def _show_warning(message, category, filename, lineno, file=None, line=None):
    if issubclass(category, SsdqWarning):
        kind = "note" if issubclass(category, SsdqNote) else "warning"
        print("ssdq: %s: %s" % (kind, message), file=sys.stderr)
    else:
        _python_show_warning(message, category, filename, lineno, file, line)


_python_show_warning = warnings.showwarning
