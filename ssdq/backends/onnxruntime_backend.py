"""ONNX Runtime (CPU execution provider) running ``ssdq export onnx``'s fp32 or QDQ int8 model.

Threads: ``intra_op_num_threads`` = the threads ssdq pinned, one inter-op thread, sequential
execution. It runs in ssdq's runtime worker process (``backends.worker``), never beside MXNet.
The model's batch dimension is free, so a smaller last batch runs at its own size. ORT's CPU
provider has no bf16 kernels for this graph, so ``bf16`` is refused with that reason.
"""
from ssdq.backends.onnx_runner import OnnxRunner
from ssdq.errors import SsdqError
from ssdq.optional import require

PRECISIONS = ("fp32", "bf16", "int8")  # bf16: refused with the reason (a record says it)
SCOPES = ("network", "end_to_end")


def runtime_info():
    """Version and what it runs on; raises MissingRuntimeError if it (or onnx) is missing."""
    require("onnx", "the onnxruntime backend")
    ort = require("onnxruntime", "the onnxruntime backend")
    return {"version": ort.__version__, "providers": ort.get_available_providers(),
            "used_provider": "CPUExecutionProvider", "device": ort.get_device(),
            "isa": "chosen at run time by MLAS from the CPU's flags (AVX-512 VNNI int8 kernels "
                   "when the CPU has them); see environment.isa"}


class Runner(OnnxRunner):
    name = "onnxruntime"

    def __init__(self, path, precision, batch_size, scope):
        ort = require("onnxruntime", "the onnxruntime backend")
        if precision == "bf16":
            raise SsdqError("ONNX Runtime's CPU execution provider has no bf16 path for this "
                            "model; bf16 runs on openvino or mxnet")
        super().__init__(path, precision, batch_size, scope)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.graph += ", CPUExecutionProvider, %d threads" % self.threads

    def forward(self, data):
        return self.session.run(None, {self.input_name: data})
