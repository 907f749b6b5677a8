"""A checkpoint's network as ONNX: fp32, or int8 as a QDQ model carrying ssdq's own calibration.

The graph is the network up to the raw class logits and box offsets
(``model.tail.network_symbol``), exported with MXNet's own ``mx.onnx.export_model``; the decode
+ NMS tail runs outside it (``backends.tail``), from the settings and anchors stored in the
model's ``ssdq`` metadata entry.

An int8 checkpoint becomes the fp32 graph of the checkpoint it was quantized from plus
QuantizeLinear/DequantizeLinear pairs that reproduce what oneDNN runs, so ONNX Runtime and
OpenVINO execute one quantization, not a calibration of their own:

- a Q/DQ pair on the output of every convolution oneDNN runs in int8 (after its fused ReLU),
  with that layer's range from ``PREFIX-calib.json``: oneDNN requantizes every int8
  convolution's output, the prediction heads' too (they are dequantized right after);
- a Q/DQ pair on every int8 convolution's input that does not come straight from one: the
  image (``quantize_v2`` on the first convolution's input), the L2Norm island's output, or a
  max-pooling of a quantized tensor (which keeps its producer's range);
- uint8 where ssdq's quantize chose it (a range that never goes negative), int8 elsewhere, both
  with zero point 0 and scale max/255.5 or max|x|/127.5: MXNet's own ranges (``kUint8Range``,
  ``kInt8Range``), the top value saturating;
- weights int8, symmetric, one scale per output channel, and biases int32 with scale input
  scale x weight scale: what MXNet 1.9.1 asks oneDNN for (its quantized convolution switches
  to channel-wise weight scales whenever the output range is calibrated, which ssdq's always
  is); ``per_channel=False`` gives one scale per tensor instead;
- convolutions the int8 checkpoint keeps in fp32 (excluded layers, the tuner's choices) get
  no Q/DQ and stay fp32.

The ranges are read from ``PREFIX-calib.json`` and checked against the ranges the int8 graph
itself carries (what oneDNN really uses), so a stale calibration file is an error, not a
silently different model.
"""
import base64
import json
import os
import tempfile

import mxnet as mx
import numpy as np

from ssdq.backends.onnx_runner import FORMAT_VERSION, METADATA_KEY, read_metadata
from ssdq.errors import SsdqError
from ssdq.fileio import atomic_path, read_json
from ssdq.model.checkpoint import checkpoint_files, load_checkpoint, resolve_prefix
from ssdq.model.graph import Graph
from ssdq.model.tail import graph_tail, network_symbol
from ssdq.optional import require

# MXNet's quantization ranges (src/operator/quantization/quantization_utils.h): a calibrated
# range maps to 127.5 (int8) or 255.5 (uint8) steps, the ends saturating to 127 / 255.
INT8_RANGE = 127.5
UINT8_RANGE = 255.5
# quantized ops that pass their input's range through unchanged (max-pooling of int8 values)
_RANGE_PRESERVING = ("_contrib_quantized_pooling", "_contrib_quantized_flatten")


def default_onnx_path(prefix, per_channel=True):
    return "%s%s.onnx" % (prefix, "" if per_channel else "-per-tensor")


def onnx_model_for(checkpoint, per_channel=True):
    """The ONNX model of a checkpoint (prefix or loaded): exported beside it once, re-exported
    when the checkpoint is newer or the file was written by another version of this exporter; a
    path ending in .onnx is taken as is."""
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
    stale = not os.path.isfile(path) or (newest is not None and os.path.getmtime(path) < newest)
    if not stale:
        onnx = require("onnx", "the ONNX runtimes")
        model = onnx.load(path, load_external_data=False)
        stale = read_metadata(model).get("format_version") != FORMAT_VERSION
    if stale:
        export_onnx(prefix, path, per_channel=per_channel)
    return path


def export_onnx(prefix, out=None, per_channel=True):
    """Write the ONNX model of checkpoint ``prefix`` (fp32, or int8 as QDQ); return its path."""

    onnx = require("onnx", "ssdq export onnx")
    ckpt = load_checkpoint(prefix)
    out = out or default_onnx_path(ckpt.prefix, per_channel)
    if ckpt.precision == "int8":
        source = _source_checkpoint(ckpt)
        quantization = int8_quantization(ckpt)
    elif ckpt.precision == "fp32":
        source, quantization = ckpt, None
    else:
        raise SsdqError("cannot export a %s checkpoint (%s) to ONNX" % (ckpt.precision, prefix))
    model = _export_network(source)
    _strip_initializer_inputs(model)
    info = {"quantized_convolutions": 0}
    if quantization is not None:
        info = insert_qdq(model, source.arg_params, quantization, per_channel)
    onnx.checker.check_model(model)
    metadata = model.metadata_props.add()
    metadata.key = METADATA_KEY
    metadata.value = json.dumps(_metadata(ckpt, source, quantization, per_channel, info))
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    with atomic_path(out) as tmp:
        onnx.save(model, tmp)
    return out


def _source_checkpoint(ckpt):
    """The fp32 checkpoint an int8 one was quantized from (its graph is what gets exported)."""

    named = ckpt.meta.get("source_checkpoint")
    candidates = [named, os.path.join(os.path.dirname(ckpt.prefix), os.path.basename(named or ""))]
    for prefix in candidates:
        if prefix and os.path.isfile(checkpoint_files(prefix)["symbol"]):
            return load_checkpoint(prefix)
    raise SsdqError("int8 checkpoint %s was quantized from %s, which is missing: the ONNX "
                    "export needs that fp32 graph" % (ckpt.prefix, named))


def _export_network(ckpt):
    """``mx.onnx.export_model`` of the network up to the raw predictions, batch dimension free."""
    onnx = require("onnx", "ssdq export onnx")

    net = network_symbol(ckpt.symbol)
    needed = set(net.list_arguments()) | set(net.list_auxiliary_states())
    params = {k: v for k, v in {**ckpt.arg_params, **ckpt.aux_params}.items() if k in needed}
    shape = tuple(ckpt.meta.get("input", {}).get("shape", (1, 3, 300, 300)))
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "network.onnx")
        try:
            mx.onnx.export_model(net, params, in_shapes=[(1,) + shape[1:]],
                                 in_types=[np.float32], onnx_file_path=path, dynamic=True,
                                 dynamic_input_shapes=[(None,) + shape[1:]], verbose=False)
        except (AttributeError, ImportError) as exc:
            raise SsdqError("mx.onnx.export_model failed (%s): it needs onnx 1.15.0 (onnx.mapping), "
                            "pip install -c constraints.txt -e '.[runtimes]'" % exc) from None
        return onnx.load(path)


def _strip_initializer_inputs(model):
    """MXNet's exporter lists every weight as a graph input too; runtimes then treat them as
    overridable and skip constant folding and QDQ fusion."""
    names = {init.name for init in model.graph.initializer}
    keep = [i for i in model.graph.input if i.name not in names]
    del model.graph.input[:]
    model.graph.input.extend(keep)


def int8_quantization(ckpt):
    """What oneDNN runs in the int8 checkpoint, with ranges from its ``PREFIX-calib.json``.

    Returns {"convolutions": {conv name: {"activation": fused ReLU name or None,
    "output": range, "input": range}}, "fp32_convolutions": [...]}, each range a dict
    (min, max, dtype, calib key).
    """
    calib_path = "%s-calib.json" % ckpt.prefix
    if not os.path.isfile(calib_path):
        raise SsdqError("int8 checkpoint %s has no %s: the QDQ export takes its ranges from "
                        "ssdq's calibration file" % (ckpt.prefix, calib_path))
    calib = read_json(calib_path, "calibration file")
    nodes = Graph(ckpt.symbol).nodes

    def node_range(node, key):
        attrs = node.get("attrs", {})
        in_graph = (float(attrs["min_calib_range"]), float(attrs["max_calib_range"]))
        if key not in calib:
            raise SsdqError("%s has no range for %s, which the int8 graph quantizes: the "
                            "calibration file does not belong to this graph" % (calib_path, key))
        lo, hi = (float(v) for v in calib[key])
        if not np.allclose((lo, hi), in_graph, rtol=1e-4, atol=1e-5):
            raise SsdqError("%s gives %s the range [%g, %g] but the int8 graph uses [%g, %g]: "
                            "stale calibration file" % (calib_path, key, lo, hi, *in_graph))
        dtype = "uint8" if lo >= 0 and attrs.get("out_type", "auto") in ("auto", "uint8") else "int8"
        return {"min": lo, "max": hi, "dtype": dtype, "calib_key": key}

    def conv_parts(node):
        inner = node["subgraphs"][0]["nodes"]
        conv = [n["name"] for n in inner if n["op"] == "Convolution"]
        act = [n["name"] for n in inner if n["op"] == "Activation"
               and n.get("attrs", {}).get("act_type") == "relu"]
        return conv[0], (act[0] if act else None)

    def input_range(node):
        source = nodes[node["inputs"][0][0]]
        while source["op"] in _RANGE_PRESERVING:
            source = nodes[source["inputs"][0][0]]
        if source["op"] == "_contrib_quantize_v2":
            quantized = nodes[source["inputs"][0][0]]  # a graph input's range is keyed by its name
            return node_range(source, quantized["name"] + ("" if quantized["op"] == "null"
                                                           else "_output"))
        if source["op"] == "_sg_mkldnn_conv" and source.get("attrs", {}).get("quantized") == "true":
            return node_range(source, _calib_name(source["name"]) + "_output")
        raise SsdqError("cannot tell the input range of %s: it reads %s (%s)" % (
            node["name"], source["name"], source["op"]))

    convolutions, fp32 = {}, []
    for node in nodes:
        if node["op"] != "_sg_mkldnn_conv":
            continue
        conv, act = conv_parts(node)
        attrs = node.get("attrs", {})
        if attrs.get("quantized") != "true":
            fp32.append(conv)
            continue
        if "min_calib_range" not in attrs:
            raise SsdqError("int8 convolution %s has no calibrated output range (made without "
                            "calibration?)" % node["name"])
        convolutions[conv] = {"activation": act, "fused_name": _calib_name(node["name"]),
                              "output": node_range(node, _calib_name(node["name"]) + "_output"),
                              "input": input_range(node)}
    if not convolutions:
        raise SsdqError("%s runs no convolution in int8: nothing to export as QDQ" % ckpt.prefix)
    return {"convolutions": convolutions, "fp32_convolutions": fp32,
            "calib_file": os.path.basename(calib_path)}


def _calib_name(node_name):
    return node_name[len("quantized_"):] if node_name.startswith("quantized_") else node_name


def activation_scale(rng):
    """ONNX (scale, zero point dtype) of a calibrated range, as MXNet's auto dtype quantizes."""
    if rng["dtype"] == "uint8":
        return max(rng["max"], 1e-12) / UINT8_RANGE, np.uint8
    return max(abs(rng["min"]), abs(rng["max"]), 1e-12) / INT8_RANGE, np.int8


def quantize_weight(weight, per_channel):
    """Symmetric int8 weights -> (int8 array, float32 scale: scalar or one per output channel)."""
    if per_channel:
        max_abs = np.abs(weight.reshape(len(weight), -1)).max(axis=1)
        scale = np.maximum(max_abs, 1e-12) / INT8_RANGE
        q = np.round(weight / scale.reshape((-1,) + (1,) * (weight.ndim - 1)))
    else:
        scale = np.float32(max(float(np.abs(weight).max()), 1e-12) / INT8_RANGE)
        q = np.round(weight / scale)
    return np.clip(q, -128, 127).astype(np.int8), np.asarray(scale, np.float32)


def insert_qdq(model, arg_params, quantization, per_channel=True):
    """Rewrite ``model`` (the exported fp32 network) in place into the QDQ model of
    ``quantization`` (``int8_quantization``'s result); return counts of what was inserted."""
    require("onnx", "ssdq export onnx")  # the one-line error if the extra is missing
    from onnx import helper, numpy_helper

    graph = model.graph
    producers = {out: node for node in graph.node for out in node.output}
    convs = {node.output[0]: node for node in graph.node if node.op_type == "Conv"}
    initializers = {init.name: init for init in graph.initializer}
    new_after = {}  # tensor -> nodes to insert right after its producer
    new_inits = []

    def add_qdq(tensor, rng):
        """Q/DQ pair on ``tensor``; returns the dequantized tensor's name (one pair per tensor)."""
        dq_name = tensor + "_dequantized"
        if dq_name in qdq_done:
            return dq_name
        scale, dtype = activation_scale(rng)
        scale_name, zp_name = tensor + "_scale", tensor + "_zero_point"
        new_inits.append(numpy_helper.from_array(np.array(scale, np.float32), scale_name))
        new_inits.append(numpy_helper.from_array(np.array(0, dtype), zp_name))
        new_after.setdefault(tensor, []).extend([
            helper.make_node("QuantizeLinear", [tensor, scale_name, zp_name], [tensor + "_quantized"],
                             name=tensor + "_QuantizeLinear"),
            helper.make_node("DequantizeLinear", [tensor + "_quantized", scale_name, zp_name],
                             [dq_name], name=tensor + "_DequantizeLinear")])
        qdq_done[dq_name] = scale
        return dq_name

    qdq_done = {}
    # 1. every int8 convolution's output (after its fused ReLU), requantized as oneDNN does
    for conv_name, q in quantization["convolutions"].items():
        if conv_name not in convs:
            raise SsdqError("the exported graph has no convolution %s" % conv_name)
        out = q["activation"] or conv_name
        if out not in producers:
            raise SsdqError("the exported graph has no tensor %s after %s" % (out, conv_name))
        dq = add_qdq(out, q["output"])
        for node in graph.node:
            if node.name != out + "_QuantizeLinear":
                for i, name in enumerate(node.input):
                    if name == out:
                        node.input[i] = dq
    # 2. every int8 convolution's input that is not already a dequantized int8 tensor
    input_scales = {}
    for conv_name, q in quantization["convolutions"].items():
        conv = convs[conv_name]
        if conv.input[0] not in qdq_done:
            conv.input[0] = add_qdq(conv.input[0], q["input"])
        input_scales[conv_name] = qdq_done[conv.input[0]]
    # 3. int8 weights and int32 biases behind DequantizeLinear nodes that keep the fp32 names
    weight_nodes = []
    for conv_name in quantization["convolutions"]:
        conv = convs[conv_name]
        weight_name = conv.input[1]
        weight = arg_params[weight_name].asnumpy() if weight_name in arg_params else \
            numpy_helper.to_array(initializers[weight_name])
        q_weight, w_scale = quantize_weight(weight, per_channel)
        axis = {"axis": 0} if per_channel else {}
        zero = np.zeros(w_scale.shape, np.int8)
        new_inits += [numpy_helper.from_array(q_weight, weight_name + "_quantized"),
                      numpy_helper.from_array(w_scale, weight_name + "_scale"),
                      numpy_helper.from_array(zero, weight_name + "_zero_point")]
        weight_nodes.append(helper.make_node(
            "DequantizeLinear", [weight_name + "_quantized", weight_name + "_scale",
                                 weight_name + "_zero_point"], [weight_name],
            name=weight_name + "_DequantizeLinear", **axis))
        graph.initializer.remove(initializers[weight_name])
        if len(conv.input) > 2 and conv.input[2]:
            bias_name = conv.input[2]
            bias = numpy_helper.to_array(initializers[bias_name]).astype(np.float64)
            b_scale = (input_scales[conv_name] * w_scale.astype(np.float64)).astype(np.float32)
            q_bias = np.round(bias / b_scale.astype(np.float64)).astype(np.int32)
            b_scale = np.broadcast_to(b_scale, w_scale.shape).astype(np.float32)
            new_inits += [numpy_helper.from_array(q_bias, bias_name + "_quantized"),
                          numpy_helper.from_array(np.asarray(b_scale), bias_name + "_scale"),
                          numpy_helper.from_array(np.zeros(w_scale.shape, np.int32),
                                                  bias_name + "_zero_point")]
            weight_nodes.append(helper.make_node(
                "DequantizeLinear", [bias_name + "_quantized", bias_name + "_scale",
                                     bias_name + "_zero_point"], [bias_name],
                name=bias_name + "_DequantizeLinear", **axis))
            graph.initializer.remove(initializers[bias_name])
    graph.initializer.extend(new_inits)
    graph_inputs = [i.name for i in graph.input]
    ordered = list(weight_nodes)
    for name in graph_inputs:
        ordered += new_after.pop(name, [])
    for node in graph.node:
        ordered.append(node)
        for out in node.output:
            ordered += new_after.pop(out, [])
    if new_after:
        raise SsdqError("cannot place Q/DQ nodes on %s" % ", ".join(sorted(new_after)))
    del graph.node[:]
    graph.node.extend(ordered)
    return {"quantized_convolutions": len(quantization["convolutions"]),
            "activation_qdq_pairs": len(qdq_done)}


def _anchors(ckpt):
    """The anchors the box decoder reads, (1, N, 4) centre format in input pixels."""
    tail = graph_tail(ckpt.symbol)
    shape = tuple(ckpt.meta.get("input", {}).get("shape", (1, 3, 300, 300)))
    anchors = ckpt.symbol.get_internals()[tail["anchors"]]
    args = {k: v for k, v in ckpt.arg_params.items() if k in anchors.list_arguments()}
    args["data"] = mx.nd.zeros((1,) + shape[1:])
    auxs = {k: v for k, v in ckpt.aux_params.items() if k in anchors.list_auxiliary_states()}
    return anchors.bind(mx.cpu(), args, aux_states=auxs).forward()[0].asnumpy().astype(np.float32)


def _metadata(ckpt, source, quantization, per_channel, info):
    tail = {k: v for k, v in graph_tail(source.symbol).items() if k not in ("nms_index", "cls",
                                                                           "box", "anchors")}
    anchors = _anchors(source)
    meta = {
        "format_version": FORMAT_VERSION,
        "precision": ckpt.precision,
        "checkpoint": ckpt.prefix,
        "source_checkpoint": source.prefix,
        "model": ckpt.meta.get("model"),
        "classes": list(ckpt.classes),
        "input": ckpt.meta.get("input"),
        "outputs": ["class logits (N, anchors, classes + 1)", "box offsets (N, anchors, 4)"],
        "tail": tail,
        "anchors": {"shape": list(anchors.shape),
                    "float32_base64": base64.b64encode(anchors.tobytes()).decode("ascii")},
    }
    if quantization is not None:
        meta["quantization"] = {
            "format": "QDQ", "calibration_from": quantization["calib_file"],
            "calibration": ckpt.meta.get("quantization", {}).get("calibration"),
            "weights": "int8 symmetric, %s" % ("per output channel (as MXNet's oneDNN "
                                               "convolution)" if per_channel else "per tensor"),
            "activations": "uint8 for ranges that never go negative, else int8; zero point 0",
            "fp32_convolutions": quantization["fp32_convolutions"], **info}
    return meta
