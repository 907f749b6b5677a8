"""ONNX Runtime (CPU execution provider) running ``ssdq export onnx``'s fp32 or QDQ int8 model.

Threads: ``intra_op_num_threads`` = the threads ssdq pinned, one inter-op thread, sequential
execution; the session is created with the calling thread on every pinned core, so its thread
pool starts on all of them. The model's batch dimension is free, so a smaller last batch runs at
its own size. ORT's CPU provider has no bf16 kernels for this graph, so ``bf16`` is refused with
that reason.
"""
from ssdq.backends.onnx_runner import OnnxRunner
from ssdq.errors import SsdqError
from ssdq.host.cpus import pinned_affinity
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

    def __init__(self, checkpoint, precision, batch_size, scope, **options):
        with pinned_affinity():  # its import and its pools start threads: on every pinned core
            self._setup(checkpoint, precision, batch_size, scope, **options)

    def _setup(self, checkpoint, precision, batch_size, scope, **options):
        ort = require("onnxruntime", "the onnxruntime backend")
        if precision == "bf16":
            raise SsdqError("ONNX Runtime's CPU execution provider has no bf16 path for this "
                            "model; bf16 runs on openvino or mxnet")
        super().__init__(checkpoint, precision, batch_size, scope, **options)
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = self.threads
        opts.inter_op_num_threads = 1
        opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        opts.log_severity_level = 3
        self.session = ort.InferenceSession(self.path, opts, providers=["CPUExecutionProvider"])
        self.input_name = self.session.get_inputs()[0].name
        self.graph += ", CPUExecutionProvider, %d threads" % self.threads

    def forward(self, data):
        return self.session.run(None, {self.input_name: data})
