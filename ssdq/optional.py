"""Importing optional runtimes: a missing one is a one-line error naming the extra to install."""
import importlib

from .errors import SsdqError

EXTRA = "runtimes"


def require(module, what=None):
    """``importlib.import_module(module)``, or SsdqError saying how to install it."""
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise SsdqError("%s needs the Python package %r, which is not installed (%s): "
                        "pip install -c constraints.txt -e '.[%s]'" % (
                            what or module, module.split(".")[0], exc, EXTRA)) from None
