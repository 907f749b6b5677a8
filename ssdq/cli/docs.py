"""docs/commands.md, rendered from the parser: every command's and sub-command's ``--help``.

    python -m ssdq.cli.docs                    # rewrite docs/commands.md
    python -m ssdq.cli.docs --check            # exit 1 if docs/commands.md is stale

The text is the parser's own, at a fixed width, with the shipped weights' install path written
as their place in the package, so the page is the same on every machine.
"""
import argparse
import contextlib
import os
import sys

from ssdq.cli.main import build_parser
from ssdq.fileio import write_text
from ssdq.model.weights import WEIGHTS_DIR

WIDTH = 100
PAGE = os.path.join("docs", "commands.md")
HEADER = """# Commands

Every `ssdq` command and sub-command with its flags and defaults, as `ssdq COMMAND --help`
prints them. Generated from the parser by `python -m ssdq.cli.docs` (a test fails when this page
is stale); what the commands are for: the [README](../README.md) and the topic pages beside this
one.
"""


def commands(parser, path=("ssdq",)):
    """(command words, parser) for ``parser`` and, depth first in table order, its sub-commands."""
    yield path, parser
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                yield from commands(sub, path + (name,))


def _package_relative(parser):
    """Defaults inside the installed package read as ``ssdq/model/weights/...``."""
    for action in parser._actions:
        if isinstance(action.default, str) and action.default.startswith(WEIGHTS_DIR + os.sep):
            action.default = "ssdq/model/weights/" + action.default[len(WEIGHTS_DIR) + 1:]


@contextlib.contextmanager
def _columns(width):
    """argparse wraps at the terminal's width ($COLUMNS, else the terminal): fix it."""
    before = os.environ.get("COLUMNS")
    os.environ["COLUMNS"] = str(width)
    try:
        yield
    finally:
        if before is None:
            del os.environ["COLUMNS"]
        else:
            os.environ["COLUMNS"] = before


def render():
    """The page, as Markdown."""
    parts = [HEADER]
    found = list(commands(build_parser()))
    parts.append("\n".join("- [`%s`](#%s)" % (" ".join(words), "-".join(words))
                           for words, _ in found[1:]) + "\n")
    with _columns(WIDTH):
        for words, parser in found:
            _package_relative(parser)
            parts.append("## %s\n\n```text\n%s```\n" % (" ".join(words), parser.format_help()))
    return "\n".join(parts)


def main(argv=None):
    parser = argparse.ArgumentParser(prog="python -m ssdq.cli.docs", description=__doc__)
    parser.add_argument("--out", default=PAGE, help="the page to write or check")
    parser.add_argument("--check", action="store_true", help="only check that it is current")
    args = parser.parse_args(argv)
    text = render()
    if args.check:
        current = open(args.out).read() if os.path.exists(args.out) else None
        if current != text:
            print("%s is stale: run python -m ssdq.cli.docs" % args.out, file=sys.stderr)
            return 1
        return 0
    write_text(args.out, text)
    print("wrote %s" % args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
