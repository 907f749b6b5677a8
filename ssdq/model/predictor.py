"""Run a symbolic checkpoint on CPU: fp32 on the oneDNN-fused graph, int8 as quantized.

The fp32 graph is partitioned with MXNet's ``MKLDNN`` backend (conv+bias+relu fused, as the int8
graph is): comparing int8 against an unfused fp32 graph would inflate the speed-up. The executor
is bound once for ``batch_size``; a smaller batch (the last of a split, or a one-image data set)
runs on an executor reshaped to its own size, sharing the first one's memory, so it costs what
it holds rather than a padded full batch.

``tail``: "fast" (default) replaces GluonCV's per-class decoder + NMS with the vectorised one of
``model.tail.fast_detection_symbol`` (same detections); "graph" runs the checkpoint's own tail;
"none" stops at the raw class logits and box offsets (the network-only benchmark scope).

The input is what the checkpoint's ``input_format`` says: NCHW normalised for ssdq's own
checkpoints, NHWC 0..255 for a graph with GluonCV's preprocessing baked in.
"""
import mxnet as mx
from mxnet.contrib import amp

from ssdq.errors import SsdqError
from ssdq.model.tail import fast_detection_symbol, graph_tail, network_symbol

TAILS = ("fast", "graph", "none")


class Predictor:
    def __init__(self, checkpoint, batch_size, fuse_fp32=True, tail="fast", bf16=False):
        if tail not in TAILS:
            raise SsdqError("unknown tail %r (one of %s)" % (tail, ", ".join(TAILS)))
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
            checkpoint.require_fp32("make bf16 from")
            symbol, arg_params, aux_params = amp.convert_model(
                symbol, arg_params, aux_params, target_dtype="bfloat16")
            self.graph = "bf16"
        if checkpoint.precision == "fp32" and fuse_fp32:
            symbol = symbol.get_backend_symbol("MKLDNN")
            self.graph += " (oneDNN-fused)"
        self.batch_size = batch_size
        self._mx = mx
        executor = symbol.simple_bind(mx.cpu(), grad_req="null", data=data_shape)
        executor.copy_params_from(arg_params, aux_params, allow_extra_params=True)
        self._executors = {batch_size: executor}

    def executor(self, n):
        """The executor for a batch of ``n`` images (at most ``batch_size``): the bound one, or
        one reshaped from it (same weights and memory) on first use."""
        if n not in self._executors:
            if not 1 <= n <= self.batch_size:
                raise SsdqError("a batch of %d images does not fit an executor bound for %d"
                                % (n, self.batch_size))
            self._executors[n] = self._executors[self.batch_size].reshape(
                allow_up_sizing=False, data=self.input_format.shape(n))
        return self._executors[n]

    def run(self, data):
        """Forward an NDArray batch of at most ``batch_size`` images; return the output
        NDArrays once they are computed."""
        outputs = self.executor(data.shape[0]).forward(is_train=False, data=data)
        for out in outputs:
            out.wait_to_read()
        return outputs

    def __call__(self, batch):
        """A float32 numpy batch as ``self.input_format`` makes it -> numpy (ids, scores,
        boxes), one row per input image (with ``tail="none"``: (class logits, box offsets))."""
        return tuple(out.asnumpy() for out in self.run(self._mx.nd.array(batch)))
