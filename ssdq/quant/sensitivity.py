"""Per-layer quantization sensitivity: which convolutions lose accuracy when they run in int8.

One calibration pass gives every layer's ranges; after that each variant is rebuilt from those
ranges without data (``quantize.build_int8``), so probing 35 layers costs 35 graph builds and
evaluations, not 35 calibrations. Two measures per layer:

* ``map_recovered``: mAP of the int8 model with only this layer left in fp32, minus the mAP of
  the fully quantized model (needs labels; the ground truth of what the layer costs).
* ``snr_db`` / ``cosine``: the raw class and box predictions (before decoding and NMS) of a model
  with *only* this layer quantized, against fp32 (needs no labels, a fast proxy).
"""
import re
import time

import numpy as np

from ssdq.model.checkpoint import Checkpoint, load_checkpoint
from ssdq.data.classmap import match_classes
from ssdq.errors import SsdqError
from ssdq.data.loader import iterate_batches
from ssdq.eval.evaluate import detect
from ssdq.eval.metrics import evaluator_for
from ssdq.model.predictor import Predictor
from ssdq.quant.quantize import (DEFAULT_EXCLUDE_MATCH, build_int8, calibration_dataset, collect_statistics, conv_layers, fuse_for_quantization, matching_layers, thresholds_for)


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


class Int8Variants:
    """Builds and scores int8 variants of one fp32 checkpoint from one calibration pass."""

    def __init__(self, fp32_prefix, calib_set, eval_set, calib_mode="naive", num_calib_batches=5,
                 batch_size=64, exclude_match=DEFAULT_EXCLUDE_MATCH, num_workers=1,
                 progress=True):
        self.ckpt = load_checkpoint(fp32_prefix)
        if self.ckpt.precision != "fp32":
            raise SsdqError("%s is %s; analyse an fp32 checkpoint" % (self.ckpt.prefix, self.ckpt.precision))
        self.match = match_classes(eval_set, self.ckpt.require_classes())  # calibration reads images only
        self.calib_set = calibration_dataset(calib_set, num_calib_batches, batch_size)
        self.eval_set, self.batch_size, self.num_workers = eval_set, batch_size, num_workers
        self.progress = progress
        self.fused = fuse_for_quantization(self.ckpt.symbol)
        self.base_excluded = matching_layers(self.fused, exclude_match)
        self.layers = {f: o for f, o in conv_layers(self.fused).items() if f not in self.base_excluded}
        self.stats = collect_statistics(self.fused, self.ckpt, self.calib_set, batch_size,
                                        self.base_excluded, num_workers=num_workers,
                                        progress=progress)
        self._thresholds = {}
        self.proxy_batch, _ = next(iterate_batches(self.calib_set, batch_size, num_workers,
                                                   self.ckpt.input_format))
        self._fp32_raw = self._raw(self.ckpt)

    def thresholds(self, mode, percentile=99.99):
        key = (mode, percentile)
        if key not in self._thresholds:
            self._thresholds[key] = thresholds_for(self.stats, mode, percentile=percentile)
        return self._thresholds[key]

    def build(self, mode="naive", fp32_layers=(), percentile=99.99):
        excluded = sorted(set(self.base_excluded) | set(fp32_layers))
        qsym, qargs, auxs = build_int8(self.ckpt, self.fused, self.thresholds(mode, percentile),
                                       excluded)
        meta = dict(self.ckpt.meta, precision="int8")
        return Checkpoint(self.ckpt.prefix + "[int8]", qsym, qargs, auxs, meta), excluded

    def score(self, ckpt):
        metrics, _ = detect(Predictor(ckpt, self.batch_size), self.eval_set,
                            evaluator_for(self.eval_set, self.match), self.batch_size,
                            self.num_workers, progress=False, transform=ckpt.input_format)
        return metrics

    def _raw(self, ckpt):
        return list(Predictor(ckpt, len(self.proxy_batch), tail="none")(self.proxy_batch))

    def proxy(self, ckpt):
        return agreement(self._fp32_raw, self._raw(ckpt))


def sensitivity_trial(context, item):
    """One trial of the analysis (a pure function, so it can run as a Ray task):
    ("fp32", None) and ("int8", None) score the whole model; ("layer", name) measures one layer."""
    variants, mode, with_map = context
    kind, layer = item
    if kind == "fp32":
        return variants.score(variants.ckpt)["map"]
    if kind == "int8":
        return variants.score(variants.build(mode)[0])["map"]
    others = [l for l in variants.layers if l != layer]
    only_this, _ = variants.build(mode, fp32_layers=others)
    row = {"layer": layer, "conv": variants.layers[layer], **variants.proxy(only_this)}
    if with_map:
        fallback, _ = variants.build(mode, fp32_layers=[layer])
        row["map_with_layer_fp32"] = variants.score(fallback)["map"]
    return row


def analyse(variants, mode="naive", with_map=True, progress=True, engine=None):
    """Rank the quantizable layers by sensitivity; return the sensitivity report dict.

    ``engine`` (``scaleout.engine``) runs the trials; by default one after another here."""
    from ssdq.scaleout.engine import LocalEngine, ray_block

    engine = engine or LocalEngine()
    start = time.time()
    items = [("fp32", None), ("int8", None)] if with_map else []
    items += [("layer", layer) for layer in variants.layers]
    results = engine.map(sensitivity_trial, (variants, mode, with_map), items, progress,
                         desc="sensitivity")
    values = [r["value"] for r in results]
    fp32_map, int8_map = values[:2] if with_map else (None, None)
    rows = values[2:] if with_map else values
    for row in rows:
        if with_map:
            row["map_recovered"] = row["map_with_layer_fp32"] - int8_map
    key = (lambda r: -r["map_recovered"]) if with_map else (lambda r: r["snr_db"])
    rows.sort(key=key)
    report = {"calib_mode": mode, "fp32_map": fp32_map, "int8_map": int8_map,
              "eval_images": len(variants.eval_set), "calib_images": len(variants.calib_set),
              "ranked_by": "map_recovered" if with_map else "snr_db", "layers": rows,
              "seconds": round(time.time() - start, 1)}
    if variants.ckpt.inferred:
        report["meta_inferred"] = variants.ckpt.meta_inferred
    ray_info = ray_block(engine, results, time.time() - start)
    if ray_info:
        report["ray"] = ray_info
    return report


def markdown_table(report, top=None):
    rows = report["layers"][:top] if top else report["layers"]
    lines = ["| rank | layer | conv | mAP recovered in fp32 | SNR only-this-int8 (dB) | cosine |",
             "|---|---|---|---|---|---|"]
    for i, r in enumerate(rows, 1):
        recovered = "%+.2f" % r["map_recovered"] if "map_recovered" in r else "-"
        lines.append("| %d | %s | %s | %s | %.1f | %.5f |" % (i, r["layer"], r["conv"], recovered,
                                                            r["snr_db"], r["cosine"]))
    return "\n".join(lines)


def short_name(conv):
    """ssd0_thinvggatrousextractor0_conv4_fwd -> conv4; ssd0_convpredictor2_conv0_fwd -> convpredictor2."""
    name = re.sub(r"^ssd\d+_", "", conv)
    name = re.sub(r"^\w*?extractor\d+_", "", name)
    name = re.sub(r"_fwd$", "", name)
    return re.sub(r"^(convpredictor\d+)_conv0$", r"\1", name)


def plot(report, path):
    """Horizontal bar plot, most sensitive on top."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ssdq.fileio import atomic_path

    rows = report["layers"]
    key = "map_recovered" if report["ranked_by"] == "map_recovered" else "snr_db"
    values = [r[key] for r in rows]
    fig, ax = plt.subplots(figsize=(8, 0.28 * len(rows) + 1.2))
    ax.barh(range(len(rows))[::-1], values, color="#c0504d")
    ax.set_yticks(range(len(rows))[::-1])
    ax.set_yticklabels([short_name(r["conv"]) for r in rows], fontsize=7)
    ax.set_xlabel("mAP recovered when kept in fp32 (points)" if key == "map_recovered"
                  else "SNR of predictions with only this layer in int8 (dB)")
    ax.set_title("int8 sensitivity per layer (%s calibration)" % report["calib_mode"])
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
