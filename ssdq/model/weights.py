"""The weights ssdq ships: the trained reference model and its sparse-trained twin (for pruning).

They are package data (``ssdq/model/weights/``, installed with the wheel), found through
``importlib.resources`` and named nowhere else. Each ``.params`` file has a card beside it (the
same name, ``.json``: architecture, classes, training stages and their measured results) and a
training log (``*-train-log.jsonl``). What a run writes goes to the working directory instead
(``model/``, ``reports/``, ``data/``), never here.
"""
import importlib.resources
import os

from ssdq.errors import SsdqError
from ssdq.fileio import read_json

# a real folder: pip installs a wheel unpacked, and MXNet loads files
WEIGHTS_DIR = os.fspath(importlib.resources.files(__package__).joinpath("weights"))
REFERENCE_WEIGHTS = os.path.join(WEIGHTS_DIR, "reference-ssd300-vgg16-atrous.params")
REFERENCE_TRAIN_LOG = os.path.join(WEIGHTS_DIR, "reference-train-log.jsonl")
# network slimming's sparsity-trained weights of the reference model (``ssdq prune``'s input)
SPARSE_WEIGHTS = os.path.join(WEIGHTS_DIR, "sparse-ssd300-vgg16-atrous.params")
SPARSE_TRAIN_LOG = os.path.join(WEIGHTS_DIR, "sparse-train-log.jsonl")


def card(weights=REFERENCE_WEIGHTS):
    """The card shipped beside ``weights`` (its description)."""
    path = os.path.splitext(weights)[0] + ".json"
    if not os.path.isfile(path):
        raise SsdqError("reference model card not found: %s" % path)
    return read_json(path, "model card")


def describe(path):
    """``path`` as a record names it: a shipped file by its place in the package
    (``ssdq/model/weights/NAME``, the same on every install), any other relative to the working
    directory."""
    if os.path.dirname(os.path.abspath(path)) == os.path.abspath(WEIGHTS_DIR):
        return "ssdq/model/weights/%s" % os.path.basename(path)
    return os.path.relpath(path)
