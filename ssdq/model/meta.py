"""What a plain MXNet checkpoint (no ``PREFIX-meta.json``) says about itself, read from its graph.

Checkpoints ssdq did not write -- ``net.export``, ``export_block``, the recipe's
``converted``/``quantized`` files, GluonCV's shipped ``*_int8-symbol.json`` -- carry everything
ssdq needs except the class names:

* precision: int8 if the graph holds quantized ops (MXNet 1.5's fused ``_sg_mkldnn_conv`` with
  ``quantized=true`` and baked calibration ranges, or ``_contrib_quantize*`` ops); bf16 if AMP
  cast it; else fp32;
* NMS and decoder settings: from the tail (``model.tail.graph_tail``);
* input: ``export_block(preprocess=True)`` puts ``broadcast_sub(data, mean)``,
  ``broadcast_div(., std)`` and an HWC->CHW ``transpose`` in front of the network, so such a graph
  takes resized RGB in 0..255, NHWC; otherwise the input is NCHW, ImageNet-normalised, as ssdq's;
* classes: ``--classes coco|voc|FILE`` (GluonCV's zoo class lists, or one name per line), checked
  against the number the class head predicts.

``infer_meta`` returns a meta dict like ``checkpoint.save_checkpoint`` writes, with an
``inferred`` entry saying where each part came from. Nothing is written anywhere.
"""
import json
import os

from gluoncv.data import COCODetection, VOCDetection

from ssdq.data.transforms import INPUT_SIZE, MEAN, STD
from ssdq.errors import SsdqError, first_line
from ssdq.model.graph import Graph
from ssdq.model.tail import graph_tail

CLASS_LISTS = ("coco", "voc")


def class_list(spec):
    """``coco``/``voc`` (GluonCV's zoo class lists) or a text file, one name per line."""
    if spec in CLASS_LISTS:
        return tuple({"coco": COCODetection, "voc": VOCDetection}[spec].CLASSES)
    if not os.path.isfile(spec):
        raise SsdqError("--classes %s: not coco, voc or a file of class names" % spec)
    try:
        with open(spec) as f:
            names = tuple(line.strip() for line in f if line.strip())
    except (OSError, UnicodeDecodeError) as exc:
        raise SsdqError("cannot read class names from %s (%s)" % (spec, exc)) from None
    if not names:
        raise SsdqError("class file %s holds no names (one class name per line)" % spec)
    if len(set(names)) != len(names):
        raise SsdqError("class file %s names a class twice" % spec)
    return names


def graph_precision(symbol):
    """fp32, bf16 or int8, from the operators the graph holds."""
    nodes = Graph(symbol).nodes
    for node in nodes:
        op, attrs = node["op"], node.get("attrs", {})
        if op.startswith(("_contrib_quantize", "_contrib_quantized_", "_contrib_requantize")):
            return "int8"
        if op.startswith("_sg_mkldnn_") and attrs.get("quantized") == "true":
            return "int8"
    if any(n["op"] in ("amp_cast", "amp_multicast") and "bfloat16" in
           json.dumps(n.get("attrs", {})) for n in nodes):
        return "bf16"
    return "fp32"


def preprocessing_in_graph(symbol, arg_params):
    """The mean/std/transpose prefix ``export_block(preprocess=True)`` adds, or None.

    Returns {"layout", "mean", "std"} with the constants' values (0..255 scale)."""
    graph = Graph(symbol)
    nodes = graph.nodes
    data = [i for i, n in enumerate(nodes) if n["op"] == "null" and n["name"] == "data"]
    if not data:
        return None

    def only_consumer(i, op):
        readers = [j for j, _ in graph.readers[i]]
        return readers[0] if len(readers) == 1 and nodes[readers[0]]["op"] == op else None

    def constant(node):
        name = nodes[node["inputs"][1][0]]["name"]
        value = arg_params.get(name)
        return None if value is None else [float(v) for v in value.asnumpy().ravel()]

    sub = only_consumer(data[0], "broadcast_sub")
    div = only_consumer(sub, "broadcast_div") if sub is not None else None
    if div is None:
        return None
    mean, std = constant(nodes[sub]), constant(nodes[div])
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        return None
    transpose = only_consumer(div, "transpose")
    hwc = transpose is not None and nodes[transpose].get("attrs", {}).get("axes") == "(0, 3, 1, 2)"
    return {"layout": "NHWC" if hwc else "NCHW", "mean": mean, "std": std}


def infer_meta(symbol, arg_params, classes=None, classes_from=None):
    """The meta a plain checkpoint would have had, read from its graph (+ ``classes``)."""
    tail = graph_tail(symbol)  # a one-line error naming what is missing if it is no SSD
    baked = preprocessing_in_graph(symbol, arg_params)
    if baked:
        layout = baked["layout"]
        shape = [1, INPUT_SIZE, INPUT_SIZE, 3] if layout == "NHWC" else [1, 3, INPUT_SIZE, INPUT_SIZE]
        input_meta = {"shape": shape, "layout": layout, "color": "RGB",
                      "resize": "to %dx%d, aspect not kept" % (INPUT_SIZE, INPUT_SIZE),
                      "range": "0..255", "preprocessing_in_graph": True,
                      "mean": baked["mean"], "std": baked["std"]}
    else:
        input_meta = {"shape": [1, 3, INPUT_SIZE, INPUT_SIZE], "layout": "NCHW", "color": "RGB",
                      "resize": "to %dx%d, aspect not kept" % (INPUT_SIZE, INPUT_SIZE),
                      "scale": 1 / 255.0, "mean": list(MEAN), "std": list(STD),
                      "preprocessing_in_graph": False}
    num_classes = head_classes(symbol, input_meta["shape"])
    if classes is not None and len(classes) != num_classes:
        raise SsdqError("--classes %s lists %d classes but the graph's class head predicts %d"
                        % (classes_from, len(classes), num_classes))
    nms = tail["nms"]
    meta = {
        "model": "plain MXNet checkpoint",
        "precision": graph_precision(symbol),
        "input": input_meta,
        "nms": {"threshold": nms["overlap_thresh"], "topk": nms["topk"],
                "post_nms": tail.get("post_nms"), "score_threshold": tail["score_thresh"]},
        "num_classes": num_classes,
        "inferred": {"by": "ssdq.model.meta (no -meta.json)",
                     "precision": "the graph's operators (quantized ones or not)",
                     "nms": "the graph's tail",
                     "input": "export_block(preprocess=True) prefix found in the graph" if baked
                     else "no preprocessing in the graph: ssdq's NCHW ImageNet normalisation",
                     "input_size": "%dx%d assumed (SSD300)" % (INPUT_SIZE, INPUT_SIZE),
                     "classes": ("--classes %s" % classes_from) if classes is not None
                     else "not given (pass --classes coco|voc|FILE)",
                     "tail": "decoder recognised" if "box" in tail
                     else "decoder not recognised: the graph's own tail runs"},
    }
    if classes is not None:
        meta["classes"] = list(classes)
    return meta


def head_classes(symbol, data_shape):
    """Foreground classes the class head predicts: the softmax input's last dimension - 1."""
    internals = symbol.get_internals()
    cls = internals[graph_tail(symbol)["cls"]]
    try:
        _, out_shapes, _ = cls.infer_shape(data=tuple(data_shape))
    except Exception as exc:  # MXNetError; shape errors also surface as others
        raise SsdqError("cannot infer the class head's shape for input %s (%s)" % (
            tuple(data_shape), first_line(exc, 160))) from None
    return int(out_shapes[0][-1]) - 1
