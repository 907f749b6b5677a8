"""Convert a Gluon SSD into a symbolic checkpoint, folding BatchNorm into the convolutions.

Sources: the embedded reference model (``reference``), any gluoncv zoo SSD by name (zoo weights,
or ``params_file``). The graph is exported without preprocessing (mean/std stay outside and go
into meta.json, as do the NMS settings baked into the graph), then folded (``model.fold``): each
BatchNorm that directly follows a convolution goes into that convolution's weights and bias, the
anchor tables are cut to their feature maps, and the per-channel input and L2Norm scales go into
the convolutions that read them, so the deployed fp32 graph, and the int8 graph made from it,
carries none of them.
"""
import os
import tempfile

from ssdq.data.transforms import INPUT_SIZE, MEAN, STD
from ssdq.errors import SsdqError
from ssdq.fileio import utc_now
from ssdq.model import weights
from ssdq.model.checkpoint import save_checkpoint, sha256
from ssdq.model.fold import fold
from ssdq.model.ssd import DEFAULT_ZOO_MODEL, REFERENCE_NAME, load_params, reference_ssd, zoo_ssd


def build_gluon_model(model=DEFAULT_ZOO_MODEL, params_file=None):
    """Return (Gluon net with weights loaded, description dict)."""
    if model in ("reference", REFERENCE_NAME):
        path = params_file or weights.REFERENCE_WEIGHTS
        card = weights.card()
        net = reference_ssd(card["classes"], width_divisor=card["width_divisor"])
        if not os.path.isfile(path):
            raise SsdqError("weights file not found: %s" % path)
        load_params(net, path)
        return net, {"model": REFERENCE_NAME, "weights": weights.describe(path),
                     "weights_sha256": sha256(path), "width_divisor": card["width_divisor"],
                     "trained_on": card.get("trained_on")}
    if params_file is not None and not os.path.isfile(params_file):
        raise SsdqError("weights file not found: %s" % params_file)
    net = zoo_ssd(model, params_file=params_file)
    return net, {"model": model, "weights": params_file or "gluoncv model zoo (pretrained=True)"}


def convert(out_prefix, model=DEFAULT_ZOO_MODEL, params_file=None):
    """Write ``out_prefix``-symbol.json/-0000.params/-meta.json; return the prefix."""
    net, source = build_gluon_model(model, params_file)
    return export_checkpoint(net, source, out_prefix)


def export_checkpoint(net, source, out_prefix):
    """Export a Gluon SSD with weights as a checkpoint; ``source`` goes into its meta."""
    import mxnet as mx

    net.hybridize()
    net(mx.nd.zeros((1, 3, INPUT_SIZE, INPUT_SIZE)))
    with tempfile.TemporaryDirectory() as tmp:
        net.export(os.path.join(tmp, "net"), epoch=0)
        symbol = mx.sym.load(os.path.join(tmp, "net-symbol.json"))
        saved = mx.nd.load(os.path.join(tmp, "net-0000.params"))
    arg_params = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux_params = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    symbol, arg_params, aux_params, folded = fold(symbol, arg_params, aux_params,
                                                  (1, 3, INPUT_SIZE, INPUT_SIZE))
    meta = {
        **source,
        "precision": "fp32",
        "classes": list(net.classes),
        "input": {"shape": [1, 3, INPUT_SIZE, INPUT_SIZE], "layout": "NCHW", "color": "RGB",
                  "resize": "to %dx%d, aspect not kept" % (INPUT_SIZE, INPUT_SIZE),
                  "scale": 1 / 255.0, "mean": list(MEAN), "std": list(STD)},
        "nms": {"threshold": net.nms_thresh, "topk": net.nms_topk, "post_nms": net.post_nms},
        "batchnorm_folded": folded["batchnorm"],
        "folded": {k: v for k, v in folded.items() if k != "batchnorm"},
        "created": utc_now(),
        "versions": {"mxnet": mx.__version__, "gluoncv": _version("gluoncv")},
    }
    return save_checkpoint(out_prefix, symbol, arg_params, aux_params, meta)


def _version(package):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None
