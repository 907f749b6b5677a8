"""Convert a Gluon SSD into a symbolic checkpoint, folding BatchNorm into the convolutions.

Sources: the embedded reference model (``reference``), any gluoncv zoo SSD by name (zoo weights,
or ``params_file``). The graph is exported without preprocessing (mean/std stay outside and go
into meta.json, as do the NMS settings baked into the graph). Each BatchNorm that directly follows
a convolution is folded into that convolution's weights and bias, so the deployed fp32 graph, and
the int8 graph made from it, carries no BatchNorm at all.
"""
import os
import tempfile

import numpy as np

from ssdq.data.transforms import INPUT_SIZE, MEAN, STD
from ssdq.errors import SsdqError
from ssdq.fileio import utc_now
from ssdq.model import weights
from ssdq.model.checkpoint import save_checkpoint
from ssdq.model.graph import Graph
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
                     "width_divisor": card["width_divisor"], "trained_on": card.get("trained_on")}
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
    symbol, arg_params, aux_params, folded = fold_batchnorm(symbol, arg_params, aux_params)
    meta = {
        **source,
        "precision": "fp32",
        "classes": list(net.classes),
        "input": {"shape": [1, 3, INPUT_SIZE, INPUT_SIZE], "layout": "NCHW", "color": "RGB",
                  "resize": "to %dx%d, aspect not kept" % (INPUT_SIZE, INPUT_SIZE),
                  "scale": 1 / 255.0, "mean": list(MEAN), "std": list(STD)},
        "nms": {"threshold": net.nms_thresh, "topk": net.nms_topk, "post_nms": net.post_nms},
        "batchnorm_folded": folded,
        "created": utc_now(),
        "versions": {"mxnet": mx.__version__, "gluoncv": _version("gluoncv")},
    }
    return save_checkpoint(out_prefix, symbol, arg_params, aux_params, meta)


def fold_batchnorm(symbol, arg_params, aux_params):
    """Fold every Convolution -> BatchNorm pair; return (symbol, args, auxs, number folded).

    The graph is edited as JSON: the BatchNorm node and its four parameter nodes go, its consumers
    read the convolution instead, and the convolution gets ``w * s`` and ``(b - mean) * s + beta``
    with ``s = gamma / sqrt(var + eps)``.
    """
    import mxnet as mx

    graph = Graph(symbol)
    nodes = graph.nodes
    args = {k: v.asnumpy() for k, v in arg_params.items()}
    auxs = {k: v.asnumpy() for k, v in aux_params.items()}
    redirect, dropped, new_bias = {}, set(), {}
    for i, node in enumerate(nodes):
        if node["op"] != "BatchNorm":
            continue
        conv_id = node["inputs"][0][0]
        conv = nodes[conv_id]
        if conv["op"] != "Convolution" or graph.uses(conv_id) != 1:
            continue
        attrs = node.get("attrs", {})
        gamma_n, beta_n, mean_n, var_n = (nodes[j]["name"] for j, _, _ in node["inputs"][1:5])
        gamma = args[gamma_n]
        if attrs.get("fix_gamma", "True") == "True":
            gamma = np.ones_like(gamma)
        variance = auxs[var_n] + float(attrs.get("eps", 1e-3))
        if not (variance > 0).all():  # also catches NaN
            bad = variance[~(variance > 0)]
            raise SsdqError("BatchNorm %s has %d channel(s) with running_var + eps <= 0 or NaN "
                            "(first: %g): its statistics are corrupt, not weights to fold"
                            % (node["name"], bad.size, bad[0]))
        scale = gamma / np.sqrt(variance)
        weight_n = nodes[conv["inputs"][1][0]]["name"]
        args[weight_n] = args[weight_n] * scale.reshape(-1, 1, 1, 1)
        conv_attrs = conv.setdefault("attrs", {})
        if conv_attrs.get("no_bias", "False") == "True":
            bias_n = conv["name"].rsplit("_fwd", 1)[0] + "_bias"
            new_bias[conv_id] = bias_n
            conv_attrs["no_bias"] = "False"
            bias = np.zeros_like(scale)
        else:
            bias_n = nodes[conv["inputs"][2][0]]["name"]
            bias = args[bias_n]
        args[bias_n] = (bias - auxs[mean_n]) * scale + args[beta_n]
        redirect[i] = conv_id
        dropped.add(i)
        dropped.update(j for j, _, _ in node["inputs"][1:5] if graph.uses(j) == 1)
        for name in (gamma_n, beta_n):
            args.pop(name, None)
        for name in (mean_n, var_n):
            auxs.pop(name, None)

    new_nodes, new_index = [], {}
    for i, node in enumerate(nodes):
        if i in dropped:
            continue
        if i in new_bias:
            new_nodes.append({"op": "null", "name": new_bias[i], "inputs": []})
            node["inputs"].append([len(new_nodes) - 1, 0, 0])  # already a new index
            node["inputs"][:-1] = [_remap(e, redirect, new_index) for e in node["inputs"][:-1]]
        else:
            node["inputs"] = [_remap(e, redirect, new_index) for e in node["inputs"]]
        new_index[i] = len(new_nodes)
        new_nodes.append(node)
    graph.json["nodes"] = new_nodes
    graph.json["heads"] = [_remap(e, redirect, new_index) for e in graph.heads]
    folded_symbol = graph.to_symbol()
    return (folded_symbol, {k: mx.nd.array(v) for k, v in args.items()},
            {k: mx.nd.array(v) for k, v in auxs.items()}, len(redirect))


def _remap(entry, redirect, new_index):
    src, out, version = entry
    return [new_index[redirect.get(src, src)], out, version]


def _version(package):
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(package)
    except PackageNotFoundError:
        return None
