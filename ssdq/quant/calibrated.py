"""One fp32 checkpoint calibrated once, and the int8 variants built and scored from it.

Sensitivity analysis, accuracy-aware tuning and the format studies' simulator all ask the same
thing many times: "what does this variant of the model score?". They share one calibration pass
(``quantize.collect_statistics`` on the fused graph, the same exclusions and layer names as
``ssdq quantize``), ranges cached per calibration mode, the real oneDNN int8 graph rebuilt from
those ranges without data (``quantize.build_int8``), and one scoring on the eval images.

A ``Calibrated`` object travels to other processes (Ray trials) as plain data: ``spec()`` holds
the checkpoint prefix, the statistics (numpy), the options and the eval images, no mxnet object;
``calibrated_for(spec)`` is the original in the process that made it, else one rebuilt from the
spec (no second calibration pass) and cached there.
"""
import uuid
import weakref
from dataclasses import dataclass

import numpy as np

from ssdq.backends.runners import prepare
from ssdq.data.classmap import match_classes
from ssdq.data.loader import iterate_batches
from ssdq.data.options import DEFAULT_BATCH_SIZE
from ssdq.eval.loop import score
from ssdq.model.checkpoint import Checkpoint, load_checkpoint
from ssdq.model.graph import Graph
from ssdq.model.layers import list_layers
from ssdq.quant.options import CalibOptions
from ssdq.quant.quantize import (
    build_int8,
    calib_thresholds,
    calibration_dataset,
    collect_statistics,
    conv_layers,
    fuse_for_quantization,
    matching_layers,
)


class Calibrated:
    """Int8 variants of one fp32 checkpoint from one calibration pass, scored on ``eval_set``.

    ``calib_set``: the calibration images (cut to ``calib.num_calib_batches`` batches);
    ``stats``: statistics of an earlier pass instead (then ``calib_set`` is not read)."""

    def __init__(self, fp32, calib_set, eval_set, calib=None, batch_size=DEFAULT_BATCH_SIZE,
                 num_workers=1, progress=True, stats=None, describe=None, proxy_batch=None):
        self.ckpt = load_checkpoint(fp32).require_fp32("calibrate")
        self.calib = calib or CalibOptions()
        self.eval_set, self.batch_size, self.num_workers = eval_set, batch_size, num_workers
        self.progress = progress
        # calibration reads images only; the eval set's classes are matched to the model's
        self.match = match_classes(eval_set, self.ckpt.require_classes())
        self.fused = fuse_for_quantization(self.ckpt.symbol)
        self.excluded = tuple(matching_layers(self.fused, self.calib.exclude_match))
        convs = conv_layers(self.fused)
        self.layers = {f: o for f, o in convs.items() if f not in self.excluded}  # fused -> conv
        self.fused_names = {o: f for f, o in convs.items()}  # conv -> fused node
        if stats is None:
            calib_set = calibration_dataset(calib_set, self.calib.num_calib_batches, batch_size)
            stats = collect_statistics(self.fused, self.ckpt, calib_set, batch_size,
                                       self.excluded, num_workers=num_workers, progress=progress)
            describe = self.calib.describe(calib_set, batch_size)
            # the label-free proxy (prediction SNR) compares outputs on one calibration batch
            proxy_batch, _ = next(iterate_batches(calib_set, batch_size, num_workers,
                                                  self.ckpt.input_format))
        self.stats, self.describe, self.proxy_batch = stats, describe, proxy_batch
        self._thresholds, self._fp32_raw, self._spec = {}, None, None

    def thresholds(self, mode=None):
        """Per-layer ranges in calibration ``mode`` (default: the options'), computed once."""
        mode = mode or self.calib.calib_mode
        if mode not in self._thresholds:
            self._thresholds[mode] = calib_thresholds(self.calib.replace(calib_mode=mode),
                                                      self.stats)
        return self._thresholds[mode]

    def power_of_two_thresholds(self, clip_exponent=None):
        """The naive ranges moved onto power-of-two scales: every range becomes the smallest
        ``2^e`` at or above it (a convolution's output capped at ``2^clip_exponent``, the clip
        it was trained in), written as the threshold that gives MXNet's int8 scale
        ``127.5 / T = 2^(7-e)`` (uint8: ``255.5 / T = 2^(8-e)``). oneDNN takes such a scale like
        any other, so the int8 graph runs on its real kernels; the weights keep their per-channel
        scales."""
        outputs = {out for _, out in range_keys(self.ckpt.symbol, list_layers(self.ckpt.symbol),
                                                self.fused_names).values()}
        out = {}
        for key, (lo, hi) in self.thresholds("naive").items():
            top = max(abs(lo), abs(hi)) or 1.0
            e = int(np.ceil(np.log2(top)))
            if clip_exponent is not None and key in outputs:
                e = min(e, clip_exponent)
            out[key] = ((-(2.0 ** e) * 127.5 / 128, 2.0 ** e * 127.5 / 128) if lo < 0
                        else (0.0, 2.0 ** e * 255.5 / 256))
        return out

    def build_int8(self, mode=None, fp32_layers=(), thresholds=None):
        """The real oneDNN int8 graph with these ranges (or ``thresholds``) and ``fp32_layers``
        (fused names) left in fp32 beside the default exclusions -> (in-memory Checkpoint,
        excluded layers)."""
        excluded = sorted(set(self.excluded) | set(fp32_layers))
        qsym, qargs, auxs = build_int8(self.ckpt, self.fused, thresholds or self.thresholds(mode),
                                       excluded)
        meta = dict(self.ckpt.meta, precision="int8")
        return Checkpoint(self.ckpt.prefix + "[int8]", qsym, qargs, auxs, meta), excluded

    def score(self, ckpt, precision=None, batch_size=None, desc="eval"):
        """Metrics of ``ckpt`` on the eval images (``precision``: ``fp32_unfused`` runs an fp32
        graph unfused, as the simulator's rounding ops need)."""
        return score(ckpt, self.eval_set, self.match, batch_size or self.batch_size,
                     self.num_workers, precision, progress=False, desc=desc)

    def proxy(self, ckpt):
        """SNR and cosine of ``ckpt``'s raw predictions against fp32's on one calibration batch."""
        if self._fp32_raw is None:
            self._fp32_raw = self._raw(self.ckpt)
        return agreement(self._fp32_raw, self._raw(ckpt))

    def _raw(self, ckpt):
        runner = prepare("mxnet", ckpt, ckpt.precision, len(self.proxy_batch), "network")
        return list(runner(self.proxy_batch))

    def spec(self):
        """This object as plain data for trials in other processes (``calibrated_for``); in this
        process the spec resolves to this very object."""
        if self._spec is None:
            self._spec = CalibratedSpec(uuid.uuid4().hex, type(self), self.ckpt.prefix,
                                        self.eval_set, self.calib, self.batch_size,
                                        self.num_workers, self.stats, self.describe,
                                        self.proxy_batch, dict(self.layers))
            _ORIGINALS[self._spec.key] = self
        return self._spec


def range_keys(symbol, layers, fused_names):
    """{layer name: (key of its input's range, key of its output's range)} in a calibration's
    statistics (``Calibrated.thresholds``): a convolution's output goes by its fused node
    (``fused_names``: conv -> fused node), the network input by its name, any other tensor by
    its node; an input is followed back through max-pooling and ReLU to its producer."""
    graph = Graph(symbol)

    def key(i):
        node = graph.nodes[graph.producer(i)]
        if node["op"] == "Convolution" and node["name"] in fused_names:
            return fused_names[node["name"]] + "_output"
        if node["op"] == "null":
            return node["name"]
        return node["name"] + "_output"

    out = {}
    for layer in layers:
        i = graph.index[layer.name]
        out[layer.name] = (key(graph.input(i)), key(i))
    return out


def agreement(reference, test):
    """SNR (dB) and cosine similarity of ``test`` outputs against ``reference`` outputs."""
    ref = np.concatenate([r.ravel() for r in reference]).astype(np.float64)
    out = np.concatenate([t.ravel() for t in test]).astype(np.float64)
    noise = ((ref - out) ** 2).sum()
    snr = 10 * np.log10((ref ** 2).sum() / noise) if noise > 0 else float("inf")
    # numpy's pairwise sums, not BLAS dot products: those sum in an order that depends on the
    # thread count, and a figure must not change with where it was computed (scaleout)
    cosine = (ref * out).sum() / (np.sqrt((ref * ref).sum() * (out * out).sum()) + 1e-12)
    return {"snr_db": float(snr), "cosine": float(cosine)}


@dataclass
class CalibratedSpec:
    """What another process needs to rebuild a ``Calibrated`` (or subclass): plain data only."""
    key: str
    kind: type
    prefix: str
    eval_set: object
    calib: CalibOptions
    batch_size: int
    num_workers: int
    stats: dict
    describe: dict
    proxy_batch: object
    layers: dict  # the quantizable layers probed (a caller may narrow them)


_ORIGINALS = weakref.WeakValueDictionary()  # spec key -> the object that made the spec
_REBUILT = {}  # spec key -> the object rebuilt in this process (a trial worker)


def calibrated_for(spec):
    """The object a spec describes: the original in the process that made the spec, else rebuilt
    from the checkpoint and the shipped statistics (no calibration pass) and cached."""
    found = _ORIGINALS.get(spec.key) or _REBUILT.get(spec.key)
    if found is None:
        found = spec.kind(spec.prefix, None, spec.eval_set, spec.calib, spec.batch_size,
                          spec.num_workers, progress=False, stats=spec.stats,
                          describe=spec.describe, proxy_batch=spec.proxy_batch)
        found.layers = dict(spec.layers)
        _REBUILT[spec.key] = found
    return found
