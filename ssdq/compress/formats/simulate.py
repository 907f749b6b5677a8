"""Simulated quantization (fake-quant in fp32) of a BN-folded fp32 checkpoint.

Weights and biases of the chosen layers are rounded once, in the params. Activation rounding is
spliced into the symbol's JSON as elementwise ops (scale, sign/abs/floor rounding, clip, unscale)
on each chosen layer's input and on its output before the ReLU. The graph is run unfused
(``Predictor(..., fuse_fp32=False)``) so the rounding sits exactly where it was put.

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
import json
import time
import uuid
import weakref
from dataclasses import dataclass, field

import numpy as np

from ssdq.model.checkpoint import Checkpoint, load_checkpoint
from ssdq.errors import SsdqError
from ssdq.compress.formats.number_format import Grid, parse
from ssdq.compress.layers import list_layers, select_layers

PASS_THROUGH_OPS = ("Pooling",)
EVAL_BATCH_SIZE = 16


@dataclass
class Calibration:
    """Per-tensor activation statistics of one fp32 checkpoint, computed once per study."""
    stats: dict
    fused_names: dict          # original conv name -> fused node name
    images: int
    fused: object = None       # the fused fp32 graph the statistics were taken on
    excluded: tuple = ()
    describe: dict = field(default_factory=dict)
    _ranges: dict = field(default_factory=dict)

    def ranges(self, mode="naive"):
        from ssdq.quant.quantize import thresholds_for

        if mode not in self._ranges:
            self._ranges[mode] = thresholds_for(self.stats, mode)
        return self._ranges[mode]


def calibrate(ckpt, calib_set, batch_size=64, exclude_match=("flatten", "concat"),
              num_workers=1, progress=True):
    """One calibration pass over ``calib_set`` (already cut to the calibration images)."""
    from ssdq.quant.quantize import (collect_statistics, conv_layers, fuse_for_quantization, matching_layers)

    fused = fuse_for_quantization(ckpt.symbol)
    excluded = matching_layers(fused, exclude_match)
    stats = collect_statistics(fused, ckpt, calib_set, batch_size, excluded,
                               num_workers=num_workers, progress=progress)
    fused_names = {orig: f for f, orig in conv_layers(fused).items()}
    return Calibration(stats, fused_names, len(calib_set), fused, tuple(excluded),
                       {"images": len(calib_set), "batches": len(calib_set) // batch_size,
                        "split": calib_set.split, "excluded": list(excluded)})


def input_sources(symbol, layers):
    """{layer name: the node producing its input, followed back through max-pooling/ReLU}."""
    nodes = json.loads(symbol.tojson())["nodes"]
    by_name = {n["name"]: i for i, n in enumerate(nodes)}
    out = {}
    for layer in layers:
        node = nodes[nodes[by_name[layer.name]]["inputs"][0][0]]
        while node["op"] in PASS_THROUGH_OPS or (node["op"] == "Activation" and
                                                 node["attrs"].get("act_type") == "relu"):
            node = nodes[node["inputs"][0][0]]
        out[layer.name] = node["name"]
    return out


def image_nodes(symbol, data_names):
    """Names of the nodes computed from the network input with no layer in between (the input
    itself, gluoncv's ``init_scale`` multiply): the image, not an activation."""
    nodes = json.loads(symbol.tojson())["nodes"]
    image = set()
    for i, node in enumerate(nodes):  # MXNet lists nodes in topological order
        if node["op"] == "null":
            if node["name"] in data_names:
                image.add(i)
        elif node["op"] not in ("Convolution", "FullyConnected") and \
                any(j in image for j, _, _ in node["inputs"]):
            image.add(i)
    return {nodes[i]["name"] for i in image}


def layer_ranges(symbol, layers, calibration, mode="naive"):
    """{layer name: ((in_lo, in_hi) or None, (out_lo, out_hi) or None)} from the statistics."""
    ranges = calibration.ranges(mode)
    nodes = json.loads(symbol.tojson())["nodes"]
    by_name = {n["name"]: i for i, n in enumerate(nodes)}

    def output_range(i):
        node = nodes[i]
        while node["op"] in PASS_THROUGH_OPS or (node["op"] == "Activation" and
                                                 node["attrs"].get("act_type") == "relu"):
            node = nodes[node["inputs"][0][0]]
        if node["op"] == "Convolution" and node["name"] in calibration.fused_names:
            key = calibration.fused_names[node["name"]] + "_output"
        else:
            key = node["name"] + "_output"
        return ranges.get(key)

    out = {}
    for layer in layers:
        i = by_name[layer.name]
        out[layer.name] = (output_range(nodes[i]["inputs"][0][0]), output_range(i))
    return out


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


def simulate(ckpt, variant, calibration=None):
    """Return (fp32 Checkpoint with rounded params and rounding ops, per-layer description)."""
    import mxnet as mx

    all_layers = list_layers(ckpt.symbol, variant.fc_layers)
    w_layers = _assign(all_layers, variant.weights, variant.calib_mode)
    a_layers = _assign(all_layers, variant.activations, variant.calib_mode)
    ranges = {}
    if any(f.needs_threshold for _, f in a_layers):
        if calibration is None:
            raise SsdqError("activation rounding needs calibration statistics")
        ranges = layer_ranges(ckpt.symbol, [l for l, _ in a_layers], calibration,
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
            if in_fmt is not None and in_range is None and calibration is not None:
                in_range = layer_ranges(ckpt.symbol, [layer], calibration,
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
    import mxnet as mx

    graph = json.loads(symbol.tojson())
    nodes = graph["nodes"]
    new_nodes, new_id, redirect = [], {}, {}

    def entry(e):
        return list(redirect.get((e[0], e[1]), [new_id[e[0]], e[1], 0]))

    def splice(grid, src, prefix):
        chain = json.loads(grid.symbol(mx.sym.var("x")).tojson())
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
    graph["nodes"] = new_nodes
    graph["heads"] = [entry(e) for e in graph["heads"]]
    graph["arg_nodes"] = [i for i, n in enumerate(new_nodes) if n["op"] == "null"]
    graph.pop("node_row_ptr", None)
    return mx.sym.load_json(json.dumps(graph))


class Simulator:
    """Scores simulated variants of one fp32 checkpoint from one calibration pass."""

    def __init__(self, fp32_prefix, calib_set, eval_set, batch_size=64, num_calib_batches=5,
                 exclude_match=("flatten", "concat"), num_workers=1, progress=True,
                 calibrate_now=True):
        from ssdq.data.classmap import match_classes
        from ssdq.quant.quantize import calibration_dataset

        self.ckpt = load_checkpoint(fp32_prefix)
        if self.ckpt.precision != "fp32":
            raise SsdqError("%s is %s; simulate from an fp32 checkpoint" % (
                self.ckpt.prefix, self.ckpt.precision))
        self.match = match_classes(eval_set, self.ckpt.require_classes())
        self.eval_set, self.batch_size, self.num_workers = eval_set, batch_size, num_workers
        self.progress = progress
        self.calibration = None
        if calibrate_now:
            calib_set = calibration_dataset(calib_set, num_calib_batches, batch_size)
            self.calibration = calibrate(self.ckpt, calib_set, batch_size, exclude_match,
                                         num_workers, progress)
        self.layers = list_layers(self.ckpt.symbol)
        self._spec = None

    def spec(self):
        """This simulator as plain data for trials in other processes (``simulator_for``); in
        this process the spec resolves to this very object."""
        if self._spec is None:
            c = self.calibration
            calibration = None if c is None else Calibration(c.stats, c.fused_names, c.images,
                                                             None, c.excluded, c.describe)
            self._spec = SimulatorSpec(uuid.uuid4().hex, self.ckpt.prefix, self.eval_set,
                                       self.batch_size, self.num_workers, calibration)
            _ORIGINALS[self._spec.key] = self
        return self._spec

    def build(self, variant):
        return simulate(self.ckpt, variant, self.calibration)

    def score(self, ckpt, desc="eval"):
        from ssdq.eval.evaluate import detect
        from ssdq.eval.metrics import evaluator_for
        from ssdq.model.predictor import Predictor

        start = time.time()
        # the unfused graph with rounding ops holds many full-size activations: small batches
        predictor = Predictor(ckpt, min(EVAL_BATCH_SIZE, self.batch_size, len(self.eval_set)),
                              fuse_fp32=False)
        metrics, _ = detect(predictor, self.eval_set, evaluator_for(self.eval_set, self.match),
                            predictor.batch_size, self.num_workers, progress=self.progress,
                            desc=desc, transform=ckpt.input_format)
        metrics["seconds"] = round(time.time() - start, 1)
        return metrics

    def evaluate(self, variant, desc="eval"):
        """mAP etc. of one variant, with its per-layer description."""
        ckpt, info = self.build(variant)
        metrics = self.score(ckpt, desc)
        return {"map": metrics["map"], "ap50": metrics["ap50"], "seconds": metrics["seconds"],
                "variant": variant.describe(), "layers": info}

    def onednn_int8(self, mode="naive", desc="eval int8 (oneDNN)"):
        """The real oneDNN int8 graph built from the same statistics (``quantize.build_int8``):
        what ``ssdq quantize`` writes with this calibration, scored on the same images."""
        from ssdq.quant.quantize import build_int8

        if self.calibration is None:
            raise SsdqError("the oneDNN int8 check needs calibration statistics")
        qsym, qargs, auxs = build_int8(self.ckpt, self.calibration.fused,
                                       self.calibration.ranges(mode), self.calibration.excluded)
        ckpt = Checkpoint(self.ckpt.prefix + "[int8]", qsym, qargs, auxs,
                          dict(self.ckpt.meta, precision="int8"))
        return self.score(ckpt, desc)


@dataclass
class SimulatorSpec:
    """What another process needs to rebuild a Simulator: the checkpoint prefix, the calibration
    statistics (numpy, without the fused graph) and the eval images; no mxnet objects."""
    key: str
    prefix: str
    eval_set: object
    batch_size: int
    num_workers: int
    calibration: Calibration = None


_ORIGINALS = weakref.WeakValueDictionary()  # spec key -> the Simulator that made the spec
_REBUILT = {}  # spec key -> Simulator rebuilt in this process (a trial worker)


def simulator_for(spec):
    """The Simulator a spec describes: the original in the process that made the spec, else
    rebuilt from the checkpoint and the shipped statistics (no calibration pass) and cached."""
    sim = _ORIGINALS.get(spec.key) or _REBUILT.get(spec.key)
    if sim is None:
        from ssdq.quant.quantize import fuse_for_quantization

        sim = Simulator(spec.prefix, None, spec.eval_set, spec.batch_size,
                        num_workers=spec.num_workers, progress=False, calibrate_now=False)
        c = spec.calibration
        if c is not None:
            sim.calibration = Calibration(c.stats, c.fused_names, c.images,
                                          fuse_for_quantization(sim.ckpt.symbol), c.excluded,
                                          c.describe)
        _REBUILT[spec.key] = sim
    return sim
