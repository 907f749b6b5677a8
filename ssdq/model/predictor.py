"""Run a symbolic checkpoint on CPU: fp32 on the oneDNN-fused graph, int8 as quantized.

The fp32 graph is partitioned with MXNet's ``MKLDNN`` backend (conv+bias+relu fused, as the int8
graph is): comparing int8 against an unfused fp32 graph would inflate the speed-up. The executor
is bound once for ``batch_size``; a smaller last batch is padded and the padding dropped.

``tail``: "fast" (default) replaces GluonCV's per-class decoder + NMS with the vectorised one of
``postprocess.fast_detection_symbol`` (same detections); "graph" runs the checkpoint's own tail;
"none" stops at the raw class logits and box offsets (the network-only benchmark scope).

The input is what the checkpoint's ``input_format`` says: NCHW normalised for ssdq's own
checkpoints, NHWC 0..255 for a graph with GluonCV's preprocessing baked in.
"""
import numpy as np

from ssdq.errors import SsdqError


TAILS = ("fast", "graph", "none")


class Predictor:
    def __init__(self, checkpoint, batch_size, fuse_fp32=True, tail="fast", bf16=False):
        import mxnet as mx

        from ssdq.model.tail import fast_detection_symbol, graph_tail, network_symbol

        self.input_format = checkpoint.input_format
        data_shape = self.input_format.shape(batch_size)
        self.graph = checkpoint.precision
        if tail == "fast" and "box" not in graph_tail(checkpoint.symbol):
            tail = "graph"  # a decoder ssdq cannot read: the graph's own tail, and say so
            self.graph += " (its own tail: decoder not recognised)"
        symbol = {"fast": lambda s: fast_detection_symbol(s, data_shape),
                  "graph": lambda s: s, "none": network_symbol}[tail](checkpoint.symbol)
        arg_params, aux_params = checkpoint.arg_params, checkpoint.aux_params
        self.tail = tail
        if bf16:
            if checkpoint.precision != "fp32":
                raise SsdqError("bf16 is made from an fp32 checkpoint, not %s" % checkpoint.precision)
            from mxnet.contrib import amp

            symbol, arg_params, aux_params = amp.convert_model(
                symbol, arg_params, aux_params, target_dtype="bfloat16")
            self.graph = "bf16"
        if checkpoint.precision == "fp32" and fuse_fp32:
            symbol = symbol.get_backend_symbol("MKLDNN")
            self.graph += " (oneDNN-fused)"
        self.batch_size = batch_size
        self._mx = mx
        self._executor = symbol.simple_bind(mx.cpu(), grad_req="null", data=data_shape)
        self._executor.copy_params_from(arg_params, aux_params, allow_extra_params=True)

    def run(self, data):
        """Forward a full NDArray batch; return the output NDArrays once they are computed."""
        outputs = self._executor.forward(is_train=False, data=data)
        for out in outputs:
            out.wait_to_read()
        return outputs

    def __call__(self, batch):
        """A float32 numpy batch as ``self.input_format`` makes it -> numpy (ids, scores, boxes), one row per input image
        (with ``tail="none"``: (class logits, box offsets))."""
        n = len(batch)
        if n < self.batch_size:
            pad = np.zeros((self.batch_size - n,) + batch.shape[1:], batch.dtype)
            batch = np.concatenate([batch, pad])
        return tuple(out.asnumpy()[:n] for out in self.run(self._mx.nd.array(batch)))
