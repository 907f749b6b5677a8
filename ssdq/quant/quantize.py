"""Calibrate an fp32 checkpoint on a calibration split and quantize it with oneDNN int8 ops.

The steps are MXNet's ``quantize_model_mkldnn`` opened up so that ssdq owns the calibration:
fuse the fp32 graph for oneDNN (``MKLDNN_QUANTIZE``), insert quantize/requantize nodes
(``quantize_graph``), run calibration batches through the fused fp32 graph while a monitor
collects a histogram of every quantizable layer's output, turn those statistics into per-layer
ranges (``naive`` min/max, ``entropy`` KL search, ``percentile``, ``mse`` clipping), bake them
into the graph (``calib_graph``) and fuse again. One calibration pass serves every method, and
``build_int8`` re-quantizes from saved ranges without data. The ranges are also saved beside the
checkpoint as ``PREFIX-calib.json`` (layer -> [min, max]).

Defaults follow GluonCV's int8 SSD recipe: 5 batches of 64 images, ``quantized_dtype='auto'``
and layers whose names contain ``flatten`` or ``concat`` (the prediction heads' reshaping)
left in fp32. Calibration uses a split other than the one evaluated.
"""
import contextlib
import ctypes
import logging
import os
import sys

import mxnet as mx
import numpy as np
from mxnet.base import NDArrayHandle, py_str
from mxnet.contrib.quantization import (
    _get_optimal_thresholds,
    _LayerHistogramCollector,
    calib_graph,
    quantize_graph,
)
from mxnet.ndarray import NDArray
from tqdm import tqdm

from ssdq.data.loader import iterate_batches
from ssdq.data.options import DEFAULT_BATCH_SIZE
from ssdq.data.source import open_data
from ssdq.errors import SsdqError
from ssdq.fileio import read_json, utc_now, write_json
from ssdq.model.checkpoint import load_checkpoint, save_checkpoint, writing
from ssdq.model.graph import Graph, quantized_conv_nodes
from ssdq.quant.options import CALIB_MODES, DEFAULT_EXCLUDE_MATCH, PRESETS, CalibOptions

log = logging.getLogger("ssdq.quantize")


def open_calibration_set(calib, data, progress=False):
    """The calibration images ``calib`` (``CalibOptions``) name: ``--calib-annotations``, else
    ``--annotations``' file, else ``calib_split`` of ``data``'s root (``DataOptions``). Only
    images are read, so no class map applies."""
    if calib.calib_images and not calib.calib_annotations:
        raise SsdqError("--calib-images DIR needs --calib-annotations FILE (the COCO file "
                        "describing them)")
    if calib.calib_annotations:
        data = data.replace(annotations=calib.calib_annotations, images=calib.calib_images)
    return open_data(data.replace(class_map=None), calib.calib_split, progress)


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


def fuse_for_quantization(symbol):
    """The fp32 graph as oneDNN will quantize it (conv+bias+relu fused)."""
    return symbol.get_backend_symbol("MKLDNN_QUANTIZE")


def conv_layers(fused):
    """{fused node name: original convolution name} for every convolution of a fused graph."""
    names = {}
    for node in Graph(fused).nodes:
        if node["op"] == "_sg_mkldnn_conv":
            inner = [n["name"] for n in node["subgraphs"][0]["nodes"] if n["op"] == "Convolution"]
            names[node["name"]] = inner[0] if inner else node["name"]
    return names


def resolve_layer_names(fused, names):
    """Accept fused (``sg_mkldnn_conv_3``) or original (``..._conv3_fwd``) names -> fused names."""
    layers = conv_layers(fused)
    by_original = {orig: fused_name for fused_name, orig in layers.items()}
    known = set(layers) | {s.name for s in fused.get_internals()}
    resolved = []
    for name in names:
        if name in by_original:
            resolved.append(by_original[name])
        elif name in known:
            resolved.append(name)
        else:
            raise SsdqError("no layer named %r in the graph (see `ssdq sensitivity` for names)" % name)
    return resolved


def first_last_preset(fused):
    """The first convolution and the prediction-head convolutions (the last ones), kept fp32."""
    layers = list(conv_layers(fused).items())
    heads = [f for f, orig in layers if "predictor" in orig]
    return [layers[0][0]] + (heads or [layers[-1][0]])


@contextlib.contextmanager
def mxnet_logs_muted():
    """Silence MXNet's C++ INFO lines ("Concat is excluded automatically", ...) for a block.

    They go straight to file descriptor 2, so Python-level redirection cannot catch them;
    set SSDQ_MXNET_LOGS=1 to see them.
    """
    if os.environ.get("SSDQ_MXNET_LOGS") == "1":
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    with open(os.devnull, "w") as devnull:
        os.dup2(devnull.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def collect_statistics(fused, ckpt, calib_set, batch_size, excluded=(), exclude_ops=(),
                       num_workers=1, progress=True, desc="calibrating"):
    """One pass over ``calib_set``: per layer to calibrate, a histogram of its fp32 output.

    Returns {layer: (hist, edges, min, max, abs max)} (MXNet's histogram format, 8001 bins
    over [-abs max, abs max]); every calibration method works from these statistics.
    """
    with mxnet_logs_muted():
        _, _, _, collector = quantize_graph(
            fused, ckpt.arg_params, ckpt.aux_params, ctx=mx.cpu(),
            excluded_sym_names=list(excluded), excluded_op_names=list(exclude_ops),
            calib_mode="entropy", quantized_dtype="auto")
    collector = _LayerHistogramCollector(include_layer=set(collector.include_layer))
    executor = fused.simple_bind(mx.cpu(), grad_req="null", data=ckpt.input_format.shape(batch_size))
    executor.copy_params_from(ckpt.arg_params, ckpt.aux_params, allow_extra_params=True)
    executor.set_monitor_callback(_freeing(collector), monitor_all=True)
    num_batches = len(calib_set) // batch_size
    for batch, _ in tqdm(iterate_batches(calib_set, batch_size, num_workers, ckpt.input_format),
                         total=num_batches,
                         desc=desc, unit="batch", disable=not progress, leave=False):
        executor.forward(is_train=False, data=mx.nd.array(batch))
        mx.nd.waitall()
    return collector.hist_dict


def _freeing(collector):
    """``collector.collect`` that frees what it skips. MXNet hands the monitor a copy of every
    input and output of every node and leaves freeing it to the callback, but its collectors
    return before wrapping the ones they do not collect: every calibration pass leaked them,
    and a study that quantizes a dozen variants ran out of memory."""
    def collect(name, handle):
        if py_str(name) in collector.include_layer:
            collector.collect(name, handle)  # wraps the handle itself: freed with its NDArray
        else:
            NDArray(ctypes.cast(handle, NDArrayHandle), writable=False)  # freed right here

    return collect


def calib_thresholds(calib, stats, quantized_dtype="auto"):
    """Per-layer (min, max) ranges of ``collect_statistics`` output as ``calib``
    (``CalibOptions``) says: its mode, and its percentile."""
    return thresholds_for(stats, calib.calib_mode, quantized_dtype, calib.percentile)


def thresholds_for(stats, mode, quantized_dtype="auto", percentile=CalibOptions.percentile):
    """Per-layer (min, max) quantization ranges from ``collect_statistics`` output.

    naive: the observed min/max. entropy: MXNet's KL-divergence search. percentile: the given
    percentile of |x|. mse: the clipping threshold minimising the expected squared error of
    rounding plus clipping over the observed distribution. A layer whose output is never
    negative gets an unsigned range (0, t), as MXNet's ``auto`` dtype does.
    """
    if mode not in CALIB_MODES:
        raise SsdqError("unknown calibration mode %r (one of %s)" % (mode, ", ".join(CALIB_MODES)))
    if mode == "entropy":
        return _get_optimal_thresholds(dict(stats), quantized_dtype)  # it consumes its input
    out = {}
    for name, (hist, edges, lo, hi, _) in stats.items():
        unsigned = lo >= 0 and quantized_dtype in ("auto", "uint8")
        if mode == "naive":
            out[name] = (float(lo), float(hi))
            continue
        counts, centers = _fold_abs(hist, edges)
        if mode == "percentile":
            t = _percentile_threshold(counts, centers, percentile)
        else:
            t = _mse_threshold(counts, centers, levels=255 if unsigned else 127)
        out[name] = (0.0, t) if unsigned else (-t, t)
    return out


def _fold_abs(hist, edges):
    """Histogram over [-a, a] -> counts over |x| (bin centres from 0 to a)."""
    hist = np.asarray(hist, np.float64)
    mid = len(hist) // 2  # the centre bin straddles zero
    counts = hist[mid:].copy()
    counts[1:] += hist[:mid][::-1]
    centers = (np.asarray(edges[mid:-1]) + np.asarray(edges[mid + 1:])) / 2
    centers[0] = 0.0
    return counts, centers


def _percentile_threshold(counts, centers, percentile):
    cdf = np.cumsum(counts) / max(counts.sum(), 1)
    i = int(np.searchsorted(cdf, percentile / 100.0))
    return float(max(centers[min(i, len(centers) - 1)], 1e-8))


def _mse_threshold(counts, centers, levels, candidates=256):
    top = max(float(centers[-1]), 1e-8)
    best_t, best_err = top, np.inf
    for t in np.linspace(top / candidates, top, candidates):
        clipped = centers > t
        err = (counts[clipped] * (centers[clipped] - t) ** 2).sum()
        err += counts[~clipped].sum() * (t / levels) ** 2 / 12.0
        if err < best_err:
            best_t, best_err = float(t), err
    return best_t


def build_int8(ckpt, fused, thresholds, excluded=(), exclude_ops=(), quantized_dtype="auto",
               quantize_mode="smart"):
    """Quantize the fused graph with fixed per-layer ranges; no data needed. -> (sym, args, auxs)."""
    with mxnet_logs_muted():
        qsym, _, _, _ = quantize_graph(
            fused, ckpt.arg_params, ckpt.aux_params, ctx=mx.cpu(),
            excluded_sym_names=list(excluded), excluded_op_names=list(exclude_ops),
            calib_mode="none", quantized_dtype=quantized_dtype, quantize_mode=quantize_mode)
    qsym, qargs, auxs = calib_graph(qsym, ckpt.arg_params, ckpt.aux_params,
                                    _Thresholds(thresholds), calib_mode="customize",
                                    quantized_dtype=quantized_dtype, logger=None)
    return qsym.get_backend_symbol("MKLDNN_QUANTIZE"), qargs, auxs


def excluded_layers(fused, exclude_layers=(), exclude_match=DEFAULT_EXCLUDE_MATCH, preset=None):
    """The fused node names kept in fp32: named layers, layers matching ``exclude_match`` and a
    ``preset`` (``first-last``: the first convolution and the prediction heads)."""
    if preset not in (None,) + PRESETS:
        raise SsdqError("unknown layer preset %r (%s)" % (preset, ", ".join(PRESETS)))
    excluded = set(resolve_layer_names(fused, exclude_layers)) | set(
        matching_layers(fused, exclude_match))
    if preset == "first-last":
        excluded |= set(first_last_preset(fused))
    return sorted(excluded)


def quantize(fp32_prefix, out_prefix, calib_set, calib=None, batch_size=DEFAULT_BATCH_SIZE,
             num_workers=1, exclude_layers=(), exclude_ops=(), preset=None,
             quantized_dtype="auto", quantize_mode="smart", progress=True):
    """Write an int8 checkpoint at ``out_prefix`` from the fp32 one at ``fp32_prefix``,
    calibrated as ``calib`` (``CalibOptions``) says on the first images of ``calib_set``.

    Calibration reads images only, so ``calib_set``'s labels and classes play no part."""
    calib = calib or CalibOptions()
    if calib.calib_mode not in CALIB_MODES:
        raise SsdqError("unknown calibration mode %r (one of %s)" % (calib.calib_mode,
                                                                     ", ".join(CALIB_MODES)))
    ckpt = load_checkpoint(fp32_prefix).require_fp32("quantize")
    calib_set = calibration_dataset(calib_set, calib.num_calib_batches, batch_size)
    fused = fuse_for_quantization(ckpt.symbol)
    excluded = excluded_layers(fused, exclude_layers, calib.exclude_match, preset)
    stats = collect_statistics(fused, ckpt, calib_set, batch_size, excluded, exclude_ops,
                               num_workers, progress, desc="calibrating (%s)" % calib.calib_mode)
    if not stats:
        raise SsdqError("calibration collected no layer statistics: nothing is quantizable "
                        "with these exclusions")
    thresholds = calib_thresholds(calib, stats, quantized_dtype)
    graph = build_int8(ckpt, fused, thresholds, excluded, exclude_ops, quantized_dtype,
                       quantize_mode)
    return save_int8(out_prefix, ckpt, graph, thresholds, {
        "quantized_dtype": quantized_dtype, "quantize_mode": quantize_mode,
        "calibration": calib.describe(calib_set, batch_size), "excluded_layers": excluded,
        "preset": preset, "excluded_ops": list(exclude_ops)})


def save_int8(out_prefix, fp32_ckpt, graph, thresholds, quantization):
    """Save an int8 graph with its meta (how it was made) and its ranges file."""
    qsym, qarg_params, aux_params = graph
    meta = dict(fp32_ckpt.meta)
    meta.pop("files", None)
    if "inferred" in meta:  # the fp32 source had no meta file: say how its meta was read
        meta["source_meta_inferred"] = meta.pop("inferred")
    meta.update({
        "precision": "int8",
        "source_checkpoint": fp32_ckpt.prefix,
        "quantization": {"backend": "MXNet oneDNN (MKLDNN_QUANTIZE)",
                         "granularity": "tensor-wise", **quantization,
                         "quantized_conv_nodes": len(quantized_conv_nodes(qsym)),
                         "thresholds_file": os.path.basename("%s-calib.json" % out_prefix)},
        "created": utc_now(),
    })
    with writing(out_prefix):  # the ranges and the graph they belong to, from one run
        write_json("%s-calib.json" % out_prefix,
                   {name: [float(lo), float(hi)] for name, (lo, hi) in sorted(thresholds.items())})
        save_checkpoint(out_prefix, qsym, qarg_params, aux_params, meta)
    return out_prefix


def quantize_from_recipe(fp32_prefix, out_prefix, recipe_file):
    """Rebuild the int8 graph a tuner recipe describes: its ranges and fp32 layers, no data."""
    recipe = read_json(recipe_file, "tune recipe")
    try:
        thresholds = {k: tuple(v) for k, v in recipe["thresholds"].items()}
        excluded = list(recipe["excluded_layers"])
    except (KeyError, TypeError, AttributeError) as exc:
        raise SsdqError("recipe %s is not an ssdq tune recipe (no valid %s)"
                        % (recipe_file, exc)) from None
    ckpt = load_checkpoint(fp32_prefix).require_fp32("quantize")
    fused = fuse_for_quantization(ckpt.symbol)
    graph = build_int8(ckpt, fused, thresholds, excluded, recipe.get("excluded_ops", ()))
    return save_int8(out_prefix, ckpt, graph, thresholds, {
        "quantized_dtype": "auto", "quantize_mode": "smart", "recipe": recipe_file,
        "calibration": recipe.get("calibration"), "excluded_layers": excluded,
        "excluded_ops": list(recipe.get("excluded_ops", ()))})


class _Thresholds:
    """What ``calib_graph(calib_mode='customize')`` reads: layer name -> (min, max)."""

    def __init__(self, thresholds):
        self.min_max_dict = {k: (float(lo), float(hi)) for k, (lo, hi) in thresholds.items()}
