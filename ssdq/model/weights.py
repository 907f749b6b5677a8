"""The weights ssdq ships: the trained reference model and its sparse-trained twin (for pruning).

Each ``.params`` file has a card beside it (the same name, ``.json``): architecture, classes,
training stages and their measured results. They are read from here and nowhere else.
"""
import os

from ssdq.errors import SsdqError
from ssdq.fileio import read_json

MODEL_DIR = os.path.join(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(
    __file__)))), "model")
REFERENCE_WEIGHTS = os.path.join(MODEL_DIR, "reference-ssd300-vgg16-atrous.params")
# network slimming's sparsity-trained weights of the reference model (``ssdq prune``'s input)
SPARSE_WEIGHTS = os.path.join(MODEL_DIR, "sparse-ssd300-vgg16-atrous.params")


def card(weights=REFERENCE_WEIGHTS):
    """The card committed beside ``weights`` (its description)."""
    path = os.path.splitext(weights)[0] + ".json"
    if not os.path.isfile(path):
        raise SsdqError("reference model card not found: %s" % path)
    return read_json(path, "model card")
