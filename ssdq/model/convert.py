"""Convert a Gluon SSD into a symbolic checkpoint, folding BatchNorm into the convolutions.

Sources: the embedded reference model (``reference``), any gluoncv zoo SSD by name (zoo weights,
or ``params_file``). The graph is exported without preprocessing (mean/std stay outside and go
into meta.json, as do the NMS settings baked into the graph), then folded (``model.fold``): each
BatchNorm that directly follows a convolution goes into that convolution's weights and bias, the
anchor tables are cut to their feature maps, and the per-channel input and L2Norm scales go into
the convolutions that read them, so the deployed fp32 graph, and the int8 graph made from it,
carries none of them.
"""
import hashlib
import os
import tempfile
from importlib.metadata import PackageNotFoundError, version

import mxnet as mx
from gluoncv.model_zoo import model_store

from ssdq.data.transforms import INPUT_SIZE, MEAN, STD
from ssdq.errors import SsdqError
from ssdq.fileio import atomic_path, utc_now
from ssdq.model import weights
from ssdq.model.checkpoint import load_checkpoint, save_checkpoint, sha256
from ssdq.model.fold import fold
from ssdq.model.ssd import (
    DEFAULT_ZOO_MODEL,
    REFERENCE_NAME,
    REFERENCE_WIDTH_DIVISOR,
    feature_convs,
    load_params,
    reference_ssd,
    zoo_ssd,
)


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
    if params_file is None:
        return net, {"model": model, "weights": "gluoncv model zoo (pretrained=True)"}
    # a file's SHA-1 beside the model store's says whether it holds the zoo's weights
    return net, {"model": model, "weights": params_file, "weights_sha1": _sha1(params_file),
                 "zoo_sha1": model_store._model_sha1.get(model)}  # pylint: disable=protected-access


def _sha1(path):
    digest = hashlib.sha1()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def convert(out_prefix, model=DEFAULT_ZOO_MODEL, params_file=None):
    """Write ``out_prefix``-symbol.json/-0000.params/-meta.json; return the prefix."""
    net, source = build_gluon_model(model, params_file)
    return export_checkpoint(net, source, out_prefix)


def network_from(source):
    """The reference-topology BatchNorm network to train further, with its weights: from a
    weights file, or from the prefix of a checkpoint exported with its BatchNorm weights
    (``ssdq prune``, ``ssdq qat``: a pruned architecture comes with it). -> (net, source meta)."""
    if os.path.isfile(source):
        return build_gluon_model("reference", source)
    meta = load_checkpoint(source).meta
    if not meta.get("bn_params"):
        raise SsdqError("%s holds no BatchNorm weights to train (a weights file, or a checkpoint "
                        "written by ssdq prune or ssdq qat)" % source)
    net = reference_ssd(meta["classes"], meta.get("width_divisor", weights.card()["width_divisor"]),
                        widths=meta.get("widths"), num_scales=meta.get("num_scales", 6))
    load_params(net, os.path.join(os.path.dirname(source), meta["bn_params"]))
    kept = ("model", "weights", "weights_sha256", "width_divisor", "trained_on", "widths",
            "num_scales", "pruning", "qat")
    return net, dict({k: meta[k] for k in kept if k in meta}, bn_source=source)


def bn_free_reference(ckpt):
    """The reference topology without BatchNorm, holding the checkpoint's folded weights.

    What export folded away (``model.fold``) is put back neutral: a channel scale folded into
    the convolutions that read it becomes ones, frozen (the convolutions hold it, so a format
    in the loop sees the weights as deployed), and the anchor tables are the network's own
    constants."""
    divisor = ckpt.meta.get("width_divisor", REFERENCE_WIDTH_DIVISOR)
    net = reference_ssd(ckpt.classes, width_divisor=divisor, batch_norm=False)
    net.initialize(ctx=mx.cpu())
    net(mx.nd.zeros((1, 3, 300, 300)))  # materialise deferred shapes
    saved = dict(ckpt.arg_params, **ckpt.aux_params)
    folded = {f["scale"] for f in (ckpt.meta.get("folded") or {}).get("channel_scales", ())}
    params = net.collect_params()
    for name, param in params.items():
        if name in folded:  # frozen at one: training the convolutions trains it
            param.set_data(mx.nd.ones(param.shape))
            param.grad_req = "null"
            continue
        if "anchor" in name and name not in saved:
            continue  # the generator's own table: export cut it to the feature maps
        if name not in saved:
            raise SsdqError("%s does not hold the reference model's weights (missing %s); "
                            "fine-tuning starts from `ssdq convert --model reference`"
                            % (ckpt.prefix, name))
        if tuple(param.shape) != tuple(saved[name].shape):
            raise SsdqError("%s: %s has shape %s, the reference network %s" % (
                ckpt.prefix, name, saved[name].shape, param.shape))
        param.set_data(saved[name])
    return net


def export_checkpoint(net, source, out_prefix, with_batchnorm=False):
    """Export a Gluon SSD with weights as a checkpoint; ``source`` goes into its meta.
    ``with_batchnorm``: keep the weights before folding too (``PREFIX-bn.params``, for
    ``network_from``), and the architecture (``widths``, ``num_scales``) in the meta."""
    extra = {}
    if with_batchnorm:
        os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
        with atomic_path(out_prefix + "-bn.params") as path:
            net.save_parameters(path)
        extra = {"bn_params": os.path.basename(out_prefix) + "-bn.params",
                 "widths": [c._channels for c in feature_convs(net)],  # pylint: disable=protected-access
                 "num_scales": len(net.class_predictors)}
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
        **extra,
    }
    return save_checkpoint(out_prefix, symbol, arg_params, aux_params, meta)


def _version(package):
    try:
        return version(package)
    except PackageNotFoundError:
        return None
