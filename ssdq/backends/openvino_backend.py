"""OpenVINO (CPU plugin) running ``ssdq export onnx``'s fp32 or QDQ int8 model.

OpenVINO reads the ONNX model itself and runs a QDQ model's convolutions in int8 (its
low-precision transformations fold the Q/DQ pairs into int8 kernels: AMX on CPUs that have it,
else AVX-512 VNNI). ``bf16`` is the fp32 model with ``INFERENCE_PRECISION_HINT=bf16``, refused on
a CPU whose ``OPTIMIZATION_CAPABILITIES`` lack BF16. ``fp32`` pins the hint to f32 (OpenVINO
would otherwise pick bf16 by itself on such CPUs). Threads: ``INFERENCE_NUM_THREADS`` = the
threads ssdq pinned, one stream, latency hint.
"""
from ssdq.errors import SsdqError
from ssdq.optional import require
from ssdq.backends import OnnxRunner


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

    def __init__(self, checkpoint, precision, batch_size, scope, **options):
        ov = require("openvino", "the openvino backend")
        super().__init__(checkpoint, precision, batch_size, scope, **options)
        core = ov.Core()
        if precision == "bf16" and "BF16" not in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES"):
            raise SsdqError("this CPU has no bf16 support in OpenVINO (OPTIMIZATION_CAPABILITIES "
                            "lacks BF16)")
        model = core.read_model(self.path)
        shape = (self.meta.get("input") or {}).get("shape", [1, 3, 300, 300])
        model.reshape({model.inputs[0]: ov.PartialShape([batch_size] + list(shape[1:]))})
        config = {"INFERENCE_NUM_THREADS": self.threads, "NUM_STREAMS": 1,
                  "PERFORMANCE_HINT": "LATENCY",
                  "INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32"}
        self.compiled = core.compile_model(model, "CPU", config)
        self.request = self.compiled.create_infer_request()
        self.graph += ", CPU plugin, %d threads" % self.threads

    def forward(self, data):
        results = self.request.infer({0: data})
        return [results[out] for out in self.compiled.outputs]
