"""MXNet 1.9.1 with oneDNN: ssdq's own predictor (fused fp32, AMP bf16, the int8 checkpoint)."""
import numpy as np


class Runner:
    name = "mxnet"

    def __init__(self, checkpoint, precision, batch_size, scope, fuse_fp32=True, **_):
        import mxnet as mx

        from ssdq.model.checkpoint import Checkpoint, load_checkpoint
        from ssdq.errors import SsdqError
        from ssdq.model.predictor import Predictor

        ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        if (precision == "int8") != (ckpt.precision == "int8"):
            raise SsdqError("%s precision on MXNet needs %s checkpoint, but %s is %s" % (
                precision, "an int8" if precision == "int8" else "an fp32", ckpt.prefix,
                ckpt.precision))
        self.precision, self.batch_size, self.scope = precision, batch_size, scope
        self.predictor = Predictor(ckpt, batch_size, fuse_fp32=fuse_fp32,
                                   tail="none" if scope == "network" else "fast",
                                   bf16=precision == "bf16")
        self.graph = "mxnet " + self.predictor.graph
        self._mx = mx

    def prepare_input(self, batch):
        if len(batch) < self.batch_size:
            pad = np.zeros((self.batch_size - len(batch),) + batch.shape[1:], batch.dtype)
            batch = np.concatenate([batch, pad])
        return self._mx.nd.array(batch)

    def run(self, data):
        return self.predictor.run(data)

    def __call__(self, batch):
        return self.predictor(batch)
