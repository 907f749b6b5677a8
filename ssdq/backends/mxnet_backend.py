"""MXNet 1.9.1 with oneDNN: ssdq's own predictor (fused fp32, unfused fp32, AMP bf16, int8).

``fp32`` runs the oneDNN-fused graph (the honest baseline), ``fp32_unfused`` the graph as
exported (what GluonCV's published speed-up was measured against), ``bf16`` the fp32 graph cast
by MXNet's AMP (needs AVX512-BF16), ``int8`` the quantized checkpoint as saved.

``runtime_info`` is MXNet's part of the environment record (``host.environment``): its version,
the features it was built with and its oneDNN. oneDNN (v2.4.4) is linked into libmxnet
statically and ``dnnl_version`` is not exported, so its version is read from the
``dnnl_verbose,info,oneDNN vX.Y.Z`` line of a tiny DNNL_VERBOSE=1 subprocess (once per
process); a build that exports ``dnnl_version`` is read through ctypes.
"""
import ctypes
import functools
import os
import re
import subprocess
import sys

import mxnet as mx

from ssdq.errors import SsdqError
from ssdq.host.cpus import THREAD_VARS
from ssdq.model.checkpoint import load_checkpoint
from ssdq.model.predictor import Predictor

PRECISIONS = ("fp32", "fp32_unfused", "bf16", "int8")
SCOPES = ("network", "end_to_end", "end_to_end_gluoncv")
SCOPE_TAIL = {"network": "none", "end_to_end": "fast", "end_to_end_gluoncv": "graph"}
MXNET_FEATURES = ("MKLDNN", "OPENMP", "BLAS_OPEN", "BLAS_MKL", "BLAS_ATLAS", "BLAS_APPLE",
                  "LAPACK", "INT64_TENSOR_SIZE", "CUDA", "DEBUG")


def runtime_info():
    """MXNet's own record, which ``host.environment.environment_report`` takes: its version,
    the features it was built with, and its oneDNN (``onednn_info``)."""
    features = mx.runtime.Features()
    return {"version": mx.__version__,
            "features": {name: features.is_enabled(name) for name in MXNET_FEATURES
                         if name in features},
            "onednn": dict(onednn_info())}


def _libmxnet_path():
    lib = getattr(getattr(mx, "base", None), "_LIB", None)
    path = getattr(lib, "_name", None)
    if path and os.path.exists(path):
        return path
    path = os.path.join(os.path.dirname(mx.__file__), "libmxnet.so")
    return path if os.path.exists(path) else None


_VERBOSE_PROBE = """
import mxnet as mx
x = mx.nd.ones((1, 1, 4, 4))
mx.nd.Convolution(x, mx.nd.ones((1, 1, 1, 1)), kernel=(1, 1), num_filter=1,
                  no_bias=True).wait_to_read()
"""


class DnnlVersion(ctypes.Structure):
    """What oneDNN's ``dnnl_version()`` returns a pointer to."""
    _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int), ("patch", ctypes.c_int),
                ("hash", ctypes.c_char_p)]


@functools.lru_cache(maxsize=None)
def onednn_info():
    """oneDNN version (and, from verbose mode, the ISA it dispatches to); cached per process."""
    info = {"version": None, "commit": None, "isa": None, "method": None, "error": None}
    path = _libmxnet_path()
    try:
        fn = ctypes.CDLL(path).dnnl_version if path else None
    except (OSError, AttributeError):
        fn = None
    if fn is not None:
        fn.restype = ctypes.POINTER(DnnlVersion)
        v = fn().contents
        info.update(version="%d.%d.%d" % (v.major, v.minor, v.patch),
                    commit=(v.hash or b"").decode() or None, method="ctypes dnnl_version")
        return info

    env = dict(os.environ, DNNL_VERBOSE="1", MKLDNN_VERBOSE="1", MXNET_MKLDNN_ENABLED="1",
               OMP_NUM_THREADS="1")
    for name in THREAD_VARS[1:]:
        env.pop(name, None)  # our affinity may be narrower than the places they name
    info["method"] = "DNNL_VERBOSE=1 subprocess"
    try:
        out = subprocess.run([sys.executable, "-c", _VERBOSE_PROBE], env=env, timeout=120,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        info["error"] = "verbose probe failed: %s" % exc
        return info
    match = re.search(r"(?:dnnl|onednn|mkldnn)_verbose,info,(?:oneDNN|DNNL|MKL-DNN) "
                      r"v(\d+\.\d+\.\d+)(?: \(commit ([0-9a-f]+)\))?", out)
    isa = re.search(r"(?:dnnl|onednn|mkldnn)_verbose,info,cpu,isa:(.*)", out)
    if match:
        info.update(version=match.group(1), commit=match.group(2))
    else:
        info["error"] = "no oneDNN version line in verbose output: %s" % out.strip()[-200:]
    if isa:
        info["isa"] = isa.group(1).strip()
    return info


class Runner:
    name = "mxnet"

    def __init__(self, checkpoint, precision, batch_size, scope):
        ckpt = load_checkpoint(checkpoint)
        if (precision == "int8") != (ckpt.precision == "int8"):
            raise SsdqError("%s precision on MXNet needs %s checkpoint, but %s is %s" % (
                precision, "an int8" if precision == "int8" else "an fp32", ckpt.prefix,
                ckpt.precision))
        self.precision, self.batch_size, self.scope = precision, batch_size, scope
        self.input_format = ckpt.input_format
        self.predictor = Predictor(ckpt, batch_size, fuse_fp32=precision != "fp32_unfused",
                                   tail=SCOPE_TAIL[scope], bf16=precision == "bf16")
        self.graph = self.predictor.graph
        self.pid = os.getpid()

    def prepare_input(self, batch):
        return mx.nd.array(batch)

    def run(self, data):
        return self.predictor.run(data)

    def __call__(self, batch):
        return self.predictor(batch)
