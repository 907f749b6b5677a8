"""Making a runner of any runtime (the interface: ``backends``), in this process for MXNet and
in a runtime worker process for the others (``remote``)."""
import importlib.util

from ssdq.backends import BACKENDS, backend_module, remote
from ssdq.errors import SsdqError
from ssdq.optional import MissingRuntimeError

# what each runtime needs installed, besides ssdq's own dependencies
_PACKAGES = {"onnxruntime": ("onnx", "onnxruntime"), "openvino": ("onnx", "openvino")}


def supports(backend, precision, scope):
    """Whether ``backend`` runs ``precision`` in ``scope`` (without trying)."""
    module = backend_module(backend)
    return precision in module.PRECISIONS and scope in module.SCOPES


def prepare(backend, checkpoint, precision="fp32", batch_size=8, scope="end_to_end", **options):
    """A runner of ``checkpoint`` on ``backend`` (see ``backends``)."""
    module = backend_module(backend)
    if precision not in module.PRECISIONS:
        raise SsdqError("%s runs %s, not %s" % (backend, ", ".join(module.PRECISIONS), precision))
    if scope not in module.SCOPES:
        raise SsdqError("%s runs the scopes %s, not %s" % (backend, ", ".join(module.SCOPES),
                                                          scope))
    if backend == "mxnet":
        return module.Runner(checkpoint, precision, batch_size, scope)
    check_installed([backend])
    return remote.Runner(backend, checkpoint, precision, batch_size, scope, **options)


def runtime_info(backends=BACKENDS):
    """For the environment record: each installed runtime's version and the ISA it uses, as its
    worker process reads them."""
    info = {}
    for name in backends:
        if name == "mxnet":
            continue  # the environment record holds MXNet's own (mxnet_backend.runtime_info)
        try:
            check_installed([name])
            info[name] = remote.runtime_info(name)
        except SsdqError as exc:
            info[name] = {"error": str(exc)}
    return info


def check_installed(backends):
    """Fail now, with the extra to install, if a runtime of ``backends`` is missing."""
    for name in backends:
        backend_module(name)  # an unknown name is an error too
        for package in _PACKAGES.get(name, ()):
            if importlib.util.find_spec(package) is None:
                raise MissingRuntimeError(
                    "the %s backend needs the Python package %r, which is not installed: "
                    "pip install -c constraints.txt -e '.[runtimes]'" % (name, package))
