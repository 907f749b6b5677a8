"""What the ONNX runtimes share: ``ssdq export onnx``'s model of a checkpoint, made once and kept
beside it, its metadata (anchors, tail settings), and the numpy decode + NMS tail."""
import os

import numpy as np

from ssdq.backends import pinned_threads
from ssdq.backends.onnx_export import FORMAT_VERSION, default_onnx_path, export_onnx, read_metadata
from ssdq.backends.tail import DetectionTail
from ssdq.errors import SsdqError
from ssdq.model.checkpoint import checkpoint_files, resolve_prefix
from ssdq.optional import require


def onnx_model_for(checkpoint, per_channel=True):
    """The ONNX model of a checkpoint prefix: exported beside it once, re-exported when the
    checkpoint is newer; a path ending in .onnx is taken as is."""
    prefix = getattr(checkpoint, "prefix", checkpoint)
    if str(prefix).endswith(".onnx"):
        if not os.path.isfile(prefix):
            raise SsdqError("no ONNX model at %s" % prefix)
        return prefix
    prefix = resolve_prefix(prefix)
    path = default_onnx_path(prefix, per_channel)
    meta = checkpoint_files(prefix)["meta"]
    calib = "%s-calib.json" % prefix
    newest = max(os.path.getmtime(p) for p in (meta, calib) if os.path.isfile(p)) \
        if os.path.isfile(meta) else None
    if not os.path.isfile(path) or (newest is not None and os.path.getmtime(path) < newest):
        export_onnx(prefix, path, per_channel=per_channel)
    return path


class OnnxRunner:
    """What the ONNX runtimes share: the exported model's metadata and the numpy tail."""

    name = None
    input_format = None

    def __init__(self, checkpoint, precision, batch_size, scope, per_channel=True):
        onnx = require("onnx", "the %s backend" % self.name)
        self.path = onnx_model_for(checkpoint, per_channel)
        self.meta = read_metadata(onnx.load(self.path, load_external_data=False))
        made_here = not str(getattr(checkpoint, "prefix", checkpoint)).endswith(".onnx")
        if made_here and self.meta.get("format_version") != FORMAT_VERSION:
            export_onnx(self.meta["checkpoint"], self.path, per_channel=per_channel)
            self.meta = read_metadata(onnx.load(self.path, load_external_data=False))
        model_precision = self.meta["precision"]
        wanted = "int8" if precision == "int8" else "fp32"
        if model_precision != wanted:
            raise SsdqError("%s precision needs %s model, but %s is %s" % (
                precision, "an int8" if wanted == "int8" else "an fp32", self.path,
                model_precision))
        self.precision, self.batch_size, self.scope = precision, batch_size, scope
        self.tail = DetectionTail(self.meta["anchors"], self.meta["tail"])
        self.threads = pinned_threads()
        self.graph = "%s %s (%s)" % (self.name, precision, os.path.basename(self.path))

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
