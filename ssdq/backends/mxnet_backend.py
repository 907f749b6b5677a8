"""MXNet 1.9.1 with oneDNN: ssdq's own predictor (fused fp32, unfused fp32, AMP bf16, int8).

``fp32`` runs the oneDNN-fused graph (the honest baseline), ``fp32_unfused`` the graph as
exported (what GluonCV's published speed-up was measured against), ``bf16`` the fp32 graph cast
by MXNet's AMP (needs AVX512-BF16), ``int8`` the quantized checkpoint as saved.
"""
import os

from ssdq.errors import SsdqError
from ssdq.model.checkpoint import load_checkpoint
from ssdq.model.predictor import Predictor

PRECISIONS = ("fp32", "fp32_unfused", "bf16", "int8")
SCOPES = ("network", "end_to_end", "end_to_end_gluoncv")
SCOPE_TAIL = {"network": "none", "end_to_end": "fast", "end_to_end_gluoncv": "graph"}


def runtime_info():
    """MXNet's own record is ``host.environment``'s (versions, oneDNN, OpenMP threads)."""
    return {}


class Runner:
    name = "mxnet"

    def __init__(self, checkpoint, precision, batch_size, scope):
        import mxnet as mx

        ckpt = load_checkpoint(checkpoint)
        if (precision == "int8") != (ckpt.precision == "int8"):
            raise SsdqError("%s precision on MXNet needs %s checkpoint, but %s is %s" % (
                precision, "an int8" if precision == "int8" else "an fp32", ckpt.prefix,
                ckpt.precision))
        self.precision, self.batch_size, self.scope = precision, batch_size, scope
        self.input_format = ckpt.input_format
        self.predictor = Predictor(ckpt, batch_size, fuse_fp32=precision != "fp32_unfused",
                                   tail=SCOPE_TAIL[scope], bf16=precision == "bf16")
        self.graph = self.predictor.graph
        self.pid = os.getpid()
        self._mx = mx

    def prepare_input(self, batch):
        return self._mx.nd.array(batch)

    def run(self, data):
        return self.predictor.run(data)

    def __call__(self, batch):
        return self.predictor(batch)
