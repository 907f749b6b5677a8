"""Run a symbolic checkpoint on CPU: fp32 on the oneDNN-fused graph, int8 as quantized.

The fp32 graph is partitioned with MXNet's ``MKLDNN`` backend (conv+bias+relu fused, as the int8
graph is): comparing int8 against an unfused fp32 graph would inflate the speed-up. The executor
is bound once for ``batch_size``; a smaller last batch is padded and the padding dropped.
"""
import numpy as np

from .data.transforms import INPUT_SIZE


class Predictor:
    def __init__(self, checkpoint, batch_size, fuse_fp32=True):
        import mxnet as mx

        symbol = checkpoint.symbol
        self.graph = checkpoint.precision
        if checkpoint.precision == "fp32" and fuse_fp32:
            symbol = symbol.get_backend_symbol("MKLDNN")
            self.graph = "fp32 (oneDNN-fused)"
        self.batch_size = batch_size
        self._mx = mx
        self._executor = symbol.simple_bind(mx.cpu(), grad_req="null",
                                            data=(batch_size, 3, INPUT_SIZE, INPUT_SIZE))
        self._executor.copy_params_from(checkpoint.arg_params, checkpoint.aux_params,
                                        allow_extra_params=True)

    def __call__(self, batch):
        """NCHW float32 numpy batch -> numpy (ids, scores, boxes), one row per input image."""
        n = len(batch)
        if n < self.batch_size:
            pad = np.zeros((self.batch_size - n,) + batch.shape[1:], batch.dtype)
            batch = np.concatenate([batch, pad])
        outputs = self._executor.forward(is_train=False, data=self._mx.nd.array(batch))
        return tuple(out.asnumpy()[:n] for out in outputs)
