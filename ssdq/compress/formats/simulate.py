"""Simulated quantization (fake-quant in fp32) of a BN-folded fp32 checkpoint.

Weights and biases of the chosen layers are rounded once, in the params. Activation rounding is
spliced into the symbol's JSON as elementwise ops (scale, sign/abs/floor rounding, clip, unscale)
on each chosen layer's input and on its output before the ReLU. The graph is run unfused
(precision ``fp32_unfused``) so the rounding sits exactly where it was put.

Activation ranges come from ``quantize.collect_statistics`` on the fused fp32 graph (the same
pass, exclusions and per-layer naming as ``ssdq quantize``), turned into (min, max) per tensor by
``quantize.thresholds_for``. A layer's output range is that of its fused node (after the ReLU,
which the fused node includes); its input range is that of the tensor feeding it, followed back
through max-pooling and ReLU to the layer or node that produced it.

``int:8`` with naive ranges reproduces what oneDNN's int8 convolution computes in MXNet 1.9.1:
int8/uint8 inputs (uint8 when the range is never negative), one weight scale per output channel
(127 / max|w_c|, because every quantized convolution here requantizes its output), an int32 bias
at scale ``s_w[c] * s_x``, and the output requantized to the layer's calibrated range.
"""
import time
from dataclasses import dataclass

import mxnet as mx
import numpy as np

from ssdq.compress.formats.number_format import Grid, parse
from ssdq.errors import SsdqError
from ssdq.model.checkpoint import Checkpoint
from ssdq.model.graph import Graph
from ssdq.model.layers import list_layers, select_layers
from ssdq.quant.calibrated import Calibrated, range_keys

EVAL_BATCH_SIZE = 16


def input_sources(symbol, layers):
    """{layer name: the node producing its input, followed back through max-pooling/ReLU}."""
    graph = Graph(symbol)
    return {layer.name: graph.nodes[graph.producer(graph.input(graph.index[layer.name]))]["name"]
            for layer in layers}


def image_nodes(symbol, data_names):
    """Names of the nodes computed from the network input with no layer in between (the input
    itself, gluoncv's ``init_scale`` multiply): the image, not an activation."""
    nodes = Graph(symbol).nodes
    image = set()
    for i, node in enumerate(nodes):  # MXNet lists nodes in topological order
        if node["op"] == "null":
            if node["name"] in data_names:
                image.add(i)
        elif node["op"] not in ("Convolution", "FullyConnected") and \
                any(j in image for j, _, _ in node["inputs"]):
            image.add(i)
    return {nodes[i]["name"] for i in image}


def layer_ranges(symbol, layers, calibrated, mode="naive"):
    """{layer name: ((in_lo, in_hi) or None, (out_lo, out_hi) or None)} from the statistics of
    a ``Calibrated`` model, in calibration ``mode``."""
    ranges = calibrated.thresholds(mode)
    return {name: (ranges.get(k_in), ranges.get(k_out)) for name, (k_in, k_out)
            in range_keys(symbol, layers, calibrated.fused_names).items()}


@dataclass
class Variant:
    """What one simulated model is: (format spec, layer selection) pairs for weights and for
    activations (a layer takes the first pair that selects it), and the activation calibration."""
    weights: tuple = ()          # ((spec, (selector, ...)), ...)
    activations: tuple = ()
    calib_mode: str = "naive"
    fc_layers: tuple = ()

    @classmethod
    def of(cls, weights=None, activations=None, weight_layers=("all",),
           activation_layers=("all",), **kwargs):
        return cls(((weights, tuple(weight_layers)),) if weights else (),
                   ((activations, tuple(activation_layers)),) if activations else (), **kwargs)

    def describe(self):
        def pairs(p):
            return [{"format": spec, "layers": list(layers)} for spec, layers in p] or "fp32"
        return {"weights": pairs(self.weights), "activations": pairs(self.activations),
                "calib_mode": self.calib_mode, "fc_layers": list(self.fc_layers)}


def _assign(all_layers, pairs, calib_mode):
    """[(layer, NumberFormat)] for (spec, selection) pairs, first pair wins."""
    chosen = {}
    for spec, selection in pairs:
        fmt = parse(spec, calib_mode)
        if fmt is None:
            continue
        for layer in select_layers(all_layers, selection):
            chosen.setdefault(layer.name, (layer, fmt))
    order = {l.name: i for i, l in enumerate(all_layers)}
    return sorted(chosen.values(), key=lambda lf: order[lf[0].name])


def simulate(ckpt, variant, calibrated=None):
    """Return (fp32 Checkpoint with rounded params and rounding ops, per-layer description)."""
    all_layers = list_layers(ckpt.symbol, variant.fc_layers)
    w_layers = _assign(all_layers, variant.weights, variant.calib_mode)
    a_layers = _assign(all_layers, variant.activations, variant.calib_mode)
    ranges = {}
    if any(f.needs_threshold for _, f in a_layers):
        if calibrated is None:
            raise SsdqError("activation rounding needs calibration statistics")
        ranges = layer_ranges(ckpt.symbol, [l for l, _ in a_layers], calibrated,
                              variant.calib_mode)
    sources = input_sources(ckpt.symbol, [l for l, _ in a_layers])
    network_inputs = image_nodes(ckpt.symbol,
                                 set(ckpt.symbol.list_arguments()) - set(ckpt.arg_params))
    in_grids, out_grids, info = {}, {}, {}
    for layer, afmt in a_layers:
        in_range, out_range = ranges.get(layer.name, (None, None))
        entry = info.setdefault(layer.name, {"layer": layer.short})
        in_fmt = afmt
        if sources[layer.name] in network_inputs and afmt.fixed_clip:
            # A fixed clip bounds activations (what the clipping paper trains with), not the
            # image: the network input gets the format's calibrated clip (pow2clip:BITS), or
            # stays fp32 under a bare clip:J.
            in_fmt = afmt.calibrated_clip()
            if in_fmt is not None and in_range is None and calibrated is not None:
                in_range = layer_ranges(ckpt.symbol, [layer], calibrated,
                                        variant.calib_mode)[layer.name][0]
            entry["input"] = "fp32 (network input, not clipped)"
        if in_fmt is not None and (in_range is not None or not in_fmt.needs_threshold):
            in_grids[layer.name] = in_fmt.activations(*(in_range or (None, None)))
            entry["input"] = in_grids[layer.name].describe
        if out_range is not None or not afmt.needs_threshold:
            out_grids[layer.name] = afmt.activations(*(out_range or (None, None)))
            entry["output"] = out_grids[layer.name].describe
    # An input already on its producer's output grid (max-pooling and ReLU keep it there) would
    # be rounded twice to the same values: skip the second rounding, it only costs time.
    for layer, _ in a_layers:
        source = sources[layer.name]
        if layer.name in in_grids and out_grids.get(source) == in_grids[layer.name]:
            del in_grids[layer.name]
            info[layer.name]["input_rounded_by"] = source
    args = dict(ckpt.arg_params)
    for layer, wfmt in w_layers:
        w = ckpt.arg_params[layer.weight].asnumpy()
        grid = wfmt.weights(w)
        args[layer.weight] = mx.nd.array(grid.apply(w))
        entry = info.setdefault(layer.name, {"layer": layer.short})
        entry["weights"] = _brief(grid.describe)
        if layer.bias:
            b = ckpt.arg_params[layer.bias].asnumpy()
            bgrid = bias_grid(wfmt, b, grid, in_grids.get(layer.name) or
                              out_grids.get(sources.get(layer.name, "")))
            if bgrid is not None:
                args[layer.bias] = mx.nd.array(bgrid.apply(b))
            entry["bias"] = "fp32" if bgrid is None else _brief(bgrid.describe)
    symbol = insert_rounding(ckpt.symbol, in_grids, out_grids)
    meta = dict(ckpt.meta, precision="fp32", simulated=variant.describe())
    return Checkpoint(ckpt.prefix + "[simulated]", symbol, args, dict(ckpt.aux_params), meta), info


def bias_grid(wfmt, bias, weight_grid, input_grid):
    """The bias's grid: oneDNN's int32 bias for ``int`` (needs the input's scale), else the
    format's own rule (``NumberFormat.bias``)."""
    if wfmt.kind == "int":
        if input_grid is None or input_grid.scale is None:
            return None
        scale = np.asarray(weight_grid.scale, np.float64) * float(input_grid.scale)
        scale = np.broadcast_to(scale, bias.shape)
        return Grid(scale, -2.0 ** 31, 2.0 ** 31 - 1, {"int32": True})
    return wfmt.bias(bias, weight_grid)


def _brief(describe):
    return {k: (v if not isinstance(v, np.ndarray) else "per channel") for k, v in describe.items()}


def insert_rounding(symbol, input_grids, output_grids):
    """Splice each grid's rounding ops before a layer's data input / after its output."""
    graph = Graph(symbol)
    nodes = graph.nodes
    new_nodes, new_id, redirect = [], {}, {}

    def entry(e):
        return list(redirect.get((e[0], e[1]), [new_id[e[0]], e[1], 0]))

    def splice(grid, src, prefix):
        chain = Graph(grid.symbol(mx.sym.var("x"))).json
        local = {}
        for k, node in enumerate(chain["nodes"]):
            if node["op"] == "null":
                local[k] = src
                continue
            node = dict(node, name="%s_%s" % (prefix, node["name"]),
                        inputs=[list(local[j]) if chain["nodes"][j]["op"] == "null"
                                else [local[j][0], o, 0] for j, o, _ in node["inputs"]])
            new_nodes.append(node)
            local[k] = [len(new_nodes) - 1, 0, 0]
        head = chain["heads"][0]
        return [local[head[0]][0], head[1], 0]

    for i, node in enumerate(nodes):
        node = dict(node, inputs=[entry(e) for e in node["inputs"]])
        name = node["name"]
        if name in input_grids:
            node["inputs"][0] = splice(input_grids[name], node["inputs"][0], name + "_in")
        new_nodes.append(node)
        new_id[i] = len(new_nodes) - 1
        if name in output_grids:
            redirect[(i, 0)] = splice(output_grids[name], [new_id[i], 0, 0], name + "_out")
    graph.json["nodes"] = new_nodes
    graph.json["heads"] = [entry(e) for e in graph.heads]
    return graph.to_symbol()


class Simulator(Calibrated):
    """Scores simulated variants of one fp32 checkpoint, calibrated once (``Calibrated``): the
    rounded graphs run unfused, in small batches (their rounding ops hold many full-size
    activations), and the real oneDNN int8 graph of the same ranges runs beside them."""

    def build(self, variant):
        return simulate(self.ckpt, variant, self)

    def score(self, ckpt, precision=None, batch_size=None, desc="eval"):
        start = time.time()
        if precision is None:  # the rounding ops sit where they were put only unfused
            precision = "fp32_unfused" if ckpt.precision == "fp32" else ckpt.precision
        metrics = super().score(ckpt, precision,
                                batch_size or min(EVAL_BATCH_SIZE, self.batch_size), desc)
        metrics["seconds"] = round(time.time() - start, 1)
        return metrics

    def evaluate(self, variant, desc="eval"):
        """mAP etc. of one variant, with its per-layer description."""
        ckpt, info = self.build(variant)
        metrics = self.score(ckpt, desc=desc)
        return {"map": metrics["map"], "ap50": metrics["ap50"], "seconds": metrics["seconds"],
                "variant": variant.describe(), "layers": info}

    def onednn_int8(self, mode="naive", desc="eval int8 (oneDNN)"):
        """The real oneDNN int8 graph built from the same statistics (``quantize.build_int8``):
        what ``ssdq quantize`` writes with this calibration, scored on the same images."""
        return self.score(self.build_int8(mode)[0], desc=desc)
