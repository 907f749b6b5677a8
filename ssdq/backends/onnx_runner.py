"""What the ONNX runtimes share: an ``ssdq export onnx`` model file, its metadata (anchors, tail
settings) and the numpy decode + NMS tail.

This side of the ONNX path never imports MXNet (nor anything that does): the runtimes run in a
worker process of their own (``backends.worker``), which must not load MXNet's OpenMP runtime
beside theirs. Exporting a checkpoint is the other side (``backends.onnx_export``).
"""
import base64
import json
import os

import numpy as np

from ssdq.backends.tail import DetectionTail
from ssdq.errors import SsdqError
from ssdq.optional import require

METADATA_KEY = "ssdq"
FORMAT_VERSION = 2  # 2: MXNet's 127.5/255.5 ranges; a cached model of another version is re-made


def read_metadata(model):
    """The ``ssdq`` entry of a loaded ONNX model: tail settings, anchors (numpy), classes, ..."""
    for prop in model.metadata_props:
        if prop.key == METADATA_KEY:
            meta = json.loads(prop.value)
            anchors = meta["anchors"]
            meta["anchors"] = np.frombuffer(base64.b64decode(anchors["float32_base64"]),
                                            np.float32).reshape(anchors["shape"])
            return meta
    raise SsdqError("this ONNX model was not written by `ssdq export onnx` (no %r metadata: "
                    "its anchors and NMS settings are unknown)" % METADATA_KEY)


def pinned_threads():
    """The thread count ssdq pinned to (OMP_NUM_THREADS, else the affinity), so every runtime
    gets as many threads as MXNet's OpenMP."""
    value = os.environ.get("OMP_NUM_THREADS")
    if value and value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0))


class OnnxRunner:
    """An ONNX model file on one runtime: ``run`` the network (and the tail in the end-to-end
    scope) on a prepared batch."""

    name = None

    def __init__(self, path, precision, batch_size, scope):
        onnx = require("onnx", "the %s backend" % self.name)
        if not os.path.isfile(path):
            raise SsdqError("no ONNX model at %s" % path)
        self.path = path
        self.meta = read_metadata(onnx.load(path, load_external_data=False))
        wanted = "int8" if precision == "int8" else "fp32"
        if self.meta["precision"] != wanted:
            raise SsdqError("%s precision needs %s model, but %s is %s" % (
                precision, "an int8" if wanted == "int8" else "an fp32", path,
                self.meta["precision"]))
        self.precision, self.batch_size, self.scope = precision, batch_size, scope
        self.tail = DetectionTail(self.meta["anchors"], self.meta["tail"])
        self.threads = pinned_threads()
        self.graph = "%s %s (%s)" % (self.name, precision, os.path.basename(path))

    def input_shape(self, n):
        """The input batch shape for ``n`` images."""
        shape = list((self.meta.get("input") or {}).get("shape", [1, 3, 300, 300]))
        return [n] + shape[1:]

    def prepare_input(self, batch):
        """A contiguous float32 batch of at most ``batch_size`` images (not padded: a smaller
        batch runs at its own size)."""
        if len(batch) > self.batch_size:
            raise SsdqError("a batch of %d images is more than the %d this runner was made for"
                            % (len(batch), self.batch_size))
        return np.ascontiguousarray(batch, dtype=np.float32)

    def forward(self, data):
        """(class logits, box offsets) of a prepared batch, as numpy arrays."""
        raise NotImplementedError

    def run(self, data):
        """The timed unit of a prepared batch: the network, and the tail in the end_to_end scope."""
        outputs = self.forward(data)
        return outputs if self.scope == "network" else self.tail(*outputs)

    def __call__(self, batch):
        return tuple(self.run(self.prepare_input(batch)))
