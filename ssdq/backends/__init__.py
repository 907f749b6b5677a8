"""Runtimes behind one interface, so the evaluation loop and the benchmark take any of them.

``prepare(backend, checkpoint, precision, batch_size, scope)`` returns a runner:

- ``runner(batch)``: a float32 numpy batch of at most ``batch_size`` images, as the checkpoint's
  ``input_format`` makes it -> numpy (ids, scores, boxes), one row per image (scope
  ``network``: the raw class logits and box offsets);
- ``runner.run(runner.prepare_input(batch))``: the timed unit of the benchmark (the runtime's own
  input object built once; the outputs computed when it returns);
- ``runner.graph``: what ran, in words, for reports.

``checkpoint`` is a prefix or a loaded ``Checkpoint``: an fp32 one for ``fp32``/``bf16``, an int8
one for ``int8``. Each runtime is a module (``mxnet_backend``, ``onnxruntime_backend``,
``openvino_backend``) with a ``Runner``, the ``PRECISIONS`` and ``SCOPES`` it runs, and
``runtime_info()``; it imports its runtime only when used, and a missing one is a one-line error
naming the ``runtimes`` extra. The ONNX runtimes run ``ssdq export onnx``'s model of the
checkpoint and the numpy tail of ``backends.tail`` (``onnx_runner``).

Scopes: ``network`` (up to the raw predictions), ``end_to_end`` (through decode + NMS: ssdq's
fast tail) and, on MXNet only, ``end_to_end_gluoncv`` (the checkpoint's own per-class tail).
"""
import importlib
import os

from ssdq.errors import SsdqError

BACKENDS = ("mxnet", "onnxruntime", "openvino")
_MODULES = {"mxnet": "mxnet_backend", "onnxruntime": "onnxruntime_backend",
            "openvino": "openvino_backend"}


def backend_module(name):
    if name not in BACKENDS:
        raise SsdqError("unknown backend %r (one of %s)" % (name, ", ".join(BACKENDS)))
    return importlib.import_module("%s.%s" % (__name__, _MODULES[name]))


def supports(backend, precision, scope):
    """Whether ``backend`` runs ``precision`` in ``scope`` (without trying)."""
    module = backend_module(backend)
    return precision in module.PRECISIONS and scope in module.SCOPES


def prepare(backend, checkpoint, precision="fp32", batch_size=8, scope="end_to_end", **options):
    """A runner of ``checkpoint`` on ``backend`` (see the module docstring)."""
    module = backend_module(backend)
    if precision not in module.PRECISIONS:
        raise SsdqError("%s runs %s, not %s" % (backend, ", ".join(module.PRECISIONS), precision))
    if scope not in module.SCOPES:
        raise SsdqError("%s runs the scopes %s, not %s" % (backend, ", ".join(module.SCOPES),
                                                          scope))
    return module.Runner(checkpoint, precision, batch_size, scope, **options)


def runtime_info(backends=BACKENDS):
    """For the environment record: each installed runtime's version and the ISA it uses."""
    info = {}
    for name in backends:
        if name == "mxnet":
            continue  # host.environment covers MXNet and its oneDNN
        try:
            info[name] = backend_module(name).runtime_info()
        except SsdqError as exc:
            info[name] = {"error": str(exc)}
    return info


def check_installed(backends):
    """Fail now, with the extra to install, if a runtime of ``backends`` is missing."""
    for name in backends:
        if name != "mxnet":
            backend_module(name).runtime_info()


def pinned_threads():
    """The thread count ssdq pinned MXNet's OpenMP to, so every runtime gets the same."""
    value = os.environ.get("OMP_NUM_THREADS")
    if value and value.isdigit() and int(value) > 0:
        return int(value)
    return len(os.sched_getaffinity(0))
