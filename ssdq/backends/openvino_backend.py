"""OpenVINO (CPU plugin) running ``ssdq export onnx``'s fp32 or QDQ int8 model.

OpenVINO reads the ONNX model itself and runs a QDQ model's convolutions in int8 (its
low-precision transformations fold the Q/DQ pairs into int8 kernels: AMX on CPUs that have it,
else AVX-512 VNNI). ``bf16`` is the fp32 model with ``INFERENCE_PRECISION_HINT=bf16``, refused on
a CPU whose ``OPTIMIZATION_CAPABILITIES`` lack BF16. ``fp32`` pins the hint to f32 (OpenVINO
would otherwise pick bf16 by itself on such CPUs). Threads: ``INFERENCE_NUM_THREADS`` = the
threads ssdq pinned, one stream, latency hint. It runs in ssdq's runtime worker process
(``backends.worker``), never beside MXNet.

The model is compiled for ``batch_size`` images; a smaller batch gets a model compiled for its
own size on first use, so it costs what it holds.
"""
import numpy as np

from ssdq.backends.onnx_runner import OnnxRunner
from ssdq.errors import SsdqError
from ssdq.optional import require

PRECISIONS = ("fp32", "bf16", "int8")
SCOPES = ("network", "end_to_end")


def runtime_info():
    """Version and what it runs on; raises MissingRuntimeError if it (or onnx) is missing."""
    require("onnx", "the openvino backend")
    ov = require("openvino", "the openvino backend")
    core = ov.Core()
    return {"version": ov.__version__, "device": "CPU",
            "device_name": core.get_property("CPU", "FULL_DEVICE_NAME"),
            "optimization_capabilities": list(core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"))}


class Runner(OnnxRunner):
    name = "openvino"

    def __init__(self, path, precision, batch_size, scope):
        self._ov = require("openvino", "the openvino backend")
        super().__init__(path, precision, batch_size, scope)
        self._core = self._ov.Core()
        if precision == "bf16" and "BF16" not in self._core.get_property(
                "CPU", "OPTIMIZATION_CAPABILITIES"):
            raise SsdqError("this CPU has no bf16 support in OpenVINO (OPTIMIZATION_CAPABILITIES "
                            "lacks BF16)")
        self._compiled = {}  # batch size -> (compiled model, infer request)
        self._compile(batch_size)
        self.graph += ", CPU plugin, %d threads" % self.threads

    def _compile(self, n):
        if n not in self._compiled:
            model = self._core.read_model(self.path)
            model.reshape({model.inputs[0]: self._ov.PartialShape(self.input_shape(n))})
            config = {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1,
                      "PERFORMANCE_HINT": "LATENCY",
                      "INFERENCE_PRECISION_HINT": "bf16" if self.precision == "bf16" else "f32"}
            compiled = self._core.compile_model(model, "CPU", config)
            request = compiled.create_infer_request()
            request.infer({0: np.zeros(self.input_shape(n), np.float32)})
            self._compiled[n] = (compiled, request)
        return self._compiled[n]

    def forward(self, data):
        compiled, request = self._compile(len(data))
        results = request.infer({0: data})
        return [results[out] for out in compiled.outputs]
