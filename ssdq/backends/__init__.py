"""Runtimes behind one interface, so the evaluation loop and the benchmark take any of them.

``runners.prepare(backend, checkpoint, precision, batch_size, scope)`` returns a runner:

- ``runner(batch)``: a float32 numpy batch of at most ``batch_size`` images, as the checkpoint's
  ``input_format`` makes it -> numpy (ids, scores, boxes), one row per image (scope
  ``network``: the raw class logits and box offsets);
- ``runner.run(runner.prepare_input(batch))``: the timed unit of the benchmark (the runtime's own
  input object built once; the outputs computed when it returns);
- ``runner.graph``: what ran, in words, for reports; ``runner.pid``: the process it runs in.

``checkpoint`` is a prefix or a loaded ``Checkpoint``: an fp32 one for ``fp32``/``bf16``, an int8
one for ``int8``. Each runtime is a module (``mxnet_backend``, ``onnxruntime_backend``,
``openvino_backend``) with a ``Runner``, the ``PRECISIONS`` and ``SCOPES`` it runs, and
``runtime_info()``; it imports its runtime only when used, and a missing one is a one-line error
naming the ``runtimes`` extra. MXNet runs in ssdq's process; ONNX Runtime and OpenVINO run
``ssdq export onnx``'s model of the checkpoint (``onnx_export``) and the numpy tail
(``tail``) in a worker process that never loads MXNet (``worker``, driven by ``remote``).

Scopes: ``network`` (up to the raw predictions), ``end_to_end`` (through decode + NMS: ssdq's
fast tail) and, on MXNet only, ``end_to_end_gluoncv`` (the checkpoint's own per-class tail).

This package's ``__init__`` and the runtime modules import nothing that loads MXNet: the worker
imports them.
"""
import importlib

from ssdq.errors import SsdqError

BACKENDS = ("mxnet", "onnxruntime", "openvino")
_MODULES = {"mxnet": "mxnet_backend", "onnxruntime": "onnxruntime_backend",
            "openvino": "openvino_backend"}


def backend_module(name):
    """The module of runtime ``name`` (its ``Runner``, ``PRECISIONS``, ``SCOPES``)."""
    if name not in BACKENDS:
        raise SsdqError("unknown backend %r (one of %s)" % (name, ", ".join(BACKENDS)))
    return importlib.import_module("%s.%s" % (__name__, _MODULES[name]))
