"""Runtimes behind one interface, so ``evaluate.detect`` and ``ssdq bench`` take any of them.

``prepare(backend, checkpoint, precision, batch_size, scope)`` returns a runner:
``runner(batch)`` takes an NCHW float32 numpy batch and returns (ids, scores, boxes) as the MXNet
predictor does (scope ``network``: the raw class logits and box offsets);
``runner.run(runner.prepare_input(batch))`` is the timed unit the benchmark uses (the runtime's
own input object built once, outputs computed when it returns). ``checkpoint`` is a prefix (or a
loaded ``Checkpoint``): an fp32 one for ``fp32``/``bf16``, an int8 one for ``int8``. The ONNX
runtimes run ``ssdq export onnx``'s model of it (exported once, kept beside the checkpoint) and
the numpy tail of ``backends.tail``; a ``.onnx`` path works too.

One module per runtime; each imports its runtime only when used, and a missing one is a one-line
error naming the ``runtimes`` extra.
"""
import importlib
import os

from ssdq.errors import SsdqError

BACKENDS = ("mxnet", "onnxruntime", "openvino")
PRECISIONS = ("fp32", "bf16", "int8")
SCOPES = ("network", "end_to_end")
_MODULES = {"mxnet": "mxnet_backend", "onnxruntime": "onnxruntime_backend",
            "openvino": "openvino_backend"}


def backend_module(name):
    if name not in BACKENDS:
        raise SsdqError("unknown backend %r (one of %s)" % (name, ", ".join(BACKENDS)))
    return importlib.import_module("%s.%s" % (__name__, _MODULES[name]))


def prepare(backend, checkpoint, precision="fp32", batch_size=8, scope="end_to_end", **options):
    """A runner of ``checkpoint`` on ``backend`` (see the module docstring)."""
    if precision not in PRECISIONS:
        raise SsdqError("unknown precision %r (one of %s)" % (precision, ", ".join(PRECISIONS)))
    if scope not in SCOPES:
        raise SsdqError("unknown scope %r (one of %s)" % (scope, ", ".join(SCOPES)))
    return backend_module(backend).Runner(checkpoint, precision, batch_size, scope, **options)


def runtime_info(backends=BACKENDS):
    """For the environment record: each installed runtime's version and the ISA it uses."""
    info = {}
    for name in backends:
        if name == "mxnet":
            continue  # environment_report covers MXNet and its oneDNN
        try:
            info[name] = backend_module(name).runtime_info()
        except SsdqError as exc:
            info[name] = {"error": str(exc)}
    return info


def pinned_threads():
    """The thread count ssdq pinned MXNet's OpenMP to, so every runtime gets the same."""
    value = os.environ.get("OMP_NUM_THREADS")
    if value and value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0))


def onnx_model_for(checkpoint, per_channel=True):
    """The ONNX model of a checkpoint prefix: exported beside it once, re-exported when the
    checkpoint is newer; a path ending in .onnx is taken as is."""
    from ssdq.model.checkpoint import checkpoint_files, resolve_prefix
    from ssdq.backends.onnx_export import default_onnx_path, export_onnx

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
    """What the ONNX runtimes share: the exported model's metadata, the numpy tail, padding."""

    name = None

    def __init__(self, checkpoint, precision, batch_size, scope, per_channel=True):
        from ssdq.optional import require
        from ssdq.backends.onnx_export import read_metadata
        from ssdq.backends.tail import DetectionTail

        from ssdq.backends.onnx_export import FORMAT_VERSION, export_onnx

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
        import numpy as np

        batch = np.ascontiguousarray(batch, dtype=np.float32)
        if len(batch) < self.batch_size:
            pad = np.zeros((self.batch_size - len(batch),) + batch.shape[1:], np.float32)
            batch = np.concatenate([batch, pad])
        return batch

    def forward(self, data):
        """(class logits, box offsets) of a prepared full batch, as numpy arrays."""
        raise NotImplementedError

    def run(self, data):
        """The timed unit of a prepared batch: the network, and the tail in the end_to_end scope."""
        outputs = self.forward(data)
        return outputs if self.scope == "network" else self.tail(*outputs)

    def __call__(self, batch):
        n = len(batch)
        return tuple(out[:n] for out in self.run(self.prepare_input(batch)))
