"""Calibrate an fp32 checkpoint on a calibration split and quantize it with oneDNN int8 ops.

The steps are MXNet's ``quantize_model_mkldnn`` opened up so that ssdq owns the calibration:
fuse the fp32 graph for oneDNN (``MKLDNN_QUANTIZE``), insert quantize/requantize nodes
(``quantize_graph``), run calibration batches through the fused fp32 graph while a monitor
collects every quantizable layer's output, turn those statistics into thresholds (``naive``:
min/max; ``entropy``: MXNet's KL-divergence search), bake them into the graph (``calib_graph``)
and fuse again. The thresholds are also saved beside the checkpoint as ``PREFIX-calib.json``.

Defaults follow GluonCV's int8 SSD recipe: 5 batches of 64 images, ``quantized_dtype='auto'``
and layers whose names contain ``flatten`` or ``concat`` (the prediction heads' reshaping)
left in fp32. Calibration uses a split other than the one evaluated.
"""
import datetime
import logging

from tqdm import tqdm

from .checkpoint import load_checkpoint, save_checkpoint
from .data.dataset import check_classes
from .errors import SsdqError
from .evaluate import iterate_batches
from .fileio import write_json

log = logging.getLogger("ssdq.quantize")
CALIB_MODES = ("naive", "entropy")
DEFAULT_EXCLUDE_MATCH = ("flatten", "concat")
QUANTIZED_OPS = ("_sg_mkldnn_conv", "_contrib_quantized", "_sg_mkldnn_fully_connected")


def calibration_dataset(dataset, num_batches, batch_size):
    needed = num_batches * batch_size
    if num_batches < 1 or batch_size < 1:
        raise SsdqError("calibration needs at least one batch of at least one image")
    if needed > len(dataset):
        raise SsdqError("calibration asks for %d batches of %d images (%d) but split %r holds "
                        "only %d images" % (num_batches, batch_size, needed, dataset.split,
                                            len(dataset)))
    return dataset.subset(needed)


def matching_layers(symbol, patterns):
    """Names of the graph's operator nodes containing any of ``patterns`` (substring match)."""
    names = [s.name for s in symbol.get_internals() if s.get_children() is not None]
    return sorted({n for n in names for p in patterns if p and p in n})


def quantize(fp32_prefix, out_prefix, calib_set, calib_mode="naive", num_calib_batches=5,
             batch_size=64, exclude_layers=(), exclude_match=DEFAULT_EXCLUDE_MATCH,
             exclude_ops=(), quantized_dtype="auto", quantize_mode="smart", num_workers=1,
             progress=True):
    """Write an int8 checkpoint at ``out_prefix`` from the fp32 one at ``fp32_prefix``."""
    import mxnet as mx
    from mxnet.contrib.quantization import (_get_optimal_thresholds, calib_graph,
                                            quantize_graph)

    if calib_mode not in CALIB_MODES:
        raise SsdqError("unknown calibration mode %r (one of %s)" % (calib_mode, ", ".join(CALIB_MODES)))
    ckpt = load_checkpoint(fp32_prefix)
    if ckpt.precision != "fp32":
        raise SsdqError("%s is already %s; quantize an fp32 checkpoint" % (ckpt.prefix, ckpt.precision))
    check_classes(calib_set, ckpt.classes)
    calib_set = calibration_dataset(calib_set, num_calib_batches, batch_size)

    ctx = mx.cpu()
    fused = ckpt.symbol.get_backend_symbol("MKLDNN_QUANTIZE")
    excluded = sorted(set(exclude_layers) | set(matching_layers(fused, exclude_match)))
    qsym, _, _, collector = quantize_graph(
        fused, ckpt.arg_params, ckpt.aux_params, ctx=ctx, excluded_sym_names=excluded,
        excluded_op_names=list(exclude_ops), calib_mode=calib_mode,
        quantized_dtype=quantized_dtype, quantize_mode=quantize_mode)

    executor = fused.simple_bind(ctx, grad_req="null", data=(batch_size, 3, 300, 300))
    executor.copy_params_from(ckpt.arg_params, ckpt.aux_params, allow_extra_params=True)
    executor.set_monitor_callback(collector.collect, monitor_all=True)
    for batch, _ in tqdm(iterate_batches(calib_set, batch_size, num_workers),
                         total=num_calib_batches, desc="calibrating (%s)" % calib_mode,
                         unit="batch", disable=not progress, leave=False):
        executor.forward(is_train=False, data=mx.nd.array(batch))
        mx.nd.waitall()

    if calib_mode == "naive":
        thresholds = dict(collector.min_max_dict)
    else:
        thresholds = _get_optimal_thresholds(collector.hist_dict, quantized_dtype)
    if not thresholds:
        raise SsdqError("calibration collected no layer statistics: nothing is quantizable "
                        "with these exclusions")
    qsym, qarg_params, aux_params = calib_graph(
        qsym, ckpt.arg_params, ckpt.aux_params, _Thresholds(thresholds),
        calib_mode="customize", quantized_dtype=quantized_dtype, logger=None)
    qsym = qsym.get_backend_symbol("MKLDNN_QUANTIZE")

    quantized_nodes = quantized_conv_nodes(qsym)
    meta = dict(ckpt.meta)
    meta.pop("files", None)
    meta.update({
        "precision": "int8",
        "source_checkpoint": ckpt.prefix,
        "quantization": {
            "backend": "MXNet oneDNN (MKLDNN_QUANTIZE)",
            "quantized_dtype": quantized_dtype, "quantize_mode": quantize_mode,
            "granularity": "tensor-wise",
            "calibration": {"mode": calib_mode, "batches": num_calib_batches,
                            "batch_size": batch_size, "images": len(calib_set),
                            "dataset": calib_set.describe()},
            "excluded_layers": excluded, "excluded_ops": list(exclude_ops),
            "quantized_conv_nodes": len(quantized_nodes),
            "thresholds_file": "%s-calib.json" % out_prefix,
        },
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
    })
    write_json("%s-calib.json" % out_prefix,
               {name: [float(lo), float(hi)] for name, (lo, hi) in sorted(thresholds.items())})
    save_checkpoint(out_prefix, qsym, qarg_params, aux_params, meta)
    return out_prefix


class _Thresholds:
    """What ``calib_graph(calib_mode='customize')`` reads: layer name -> (min, max)."""

    def __init__(self, thresholds):
        self.min_max_dict = {k: (float(lo), float(hi)) for k, (lo, hi) in thresholds.items()}


def quantized_conv_nodes(symbol):
    """Names of the convolution nodes that run in int8 in a (fused) symbol."""
    import json

    nodes = json.loads(symbol.tojson())["nodes"]
    found = []
    for node in nodes:
        attrs = node.get("attrs", {})
        if node["op"] == "_sg_mkldnn_conv" and attrs.get("quantized") == "true":
            found.append(node["name"])
        elif node["op"] == "_contrib_quantized_conv":
            found.append(node["name"])
    return found


def op_histogram(symbol):
    import collections
    import json

    return dict(collections.Counter(n["op"] for n in json.loads(symbol.tojson())["nodes"]))




def deployed_weights_mb(symbol, arg_params):
    """Weight bytes as oneDNN runs the graph: int8 conv weights at 1 byte, the rest at 4."""
    import json

    nodes = json.loads(symbol.tojson())["nodes"]
    int8_weights = set()
    for node in nodes:
        attrs = node.get("attrs", {})
        if node["op"] == "_sg_mkldnn_conv" and attrs.get("quantized") == "true":
            for src, _, _ in node["inputs"]:
                if nodes[src]["op"] == "null" and nodes[src]["name"].endswith("weight"):
                    int8_weights.add(nodes[src]["name"])
    total = sum(v.size * (1 if k in int8_weights else 4) for k, v in arg_params.items())
    return total / 2 ** 20
