"""Importing optional runtimes: a missing one is a one-line error naming the extra to install."""
import importlib

from ssdq.errors import SsdqError

EXTRA = "runtimes"


class MissingRuntimeError(SsdqError):
    """An optional package is not installed: the user's to fix, never a benchmark result."""


def require(module, what=None):
    """``importlib.import_module(module)``, or SsdqError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingRuntimeError("%s needs the Python package %r, which is not installed (%s): "
                        "pip install -c constraints.txt -e '.[%s]'" % (
                            what or module, module.split(".")[0], exc, EXTRA)) from None
