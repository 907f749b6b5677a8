"""Per-layer quantization sensitivity: which convolutions lose accuracy when they run in int8.

One calibration pass gives every layer's ranges; after that each variant is rebuilt from those
ranges without data (``quantize.build_int8``), so probing 35 layers costs 35 graph builds and
evaluations, not 35 calibrations. Two measures per layer:

* ``map_recovered``: mAP of the int8 model with only this layer left in fp32, minus the mAP of
  the fully quantized model (needs labels; the ground truth of what the layer costs).
* ``snr_db`` / ``cosine``: the raw class and box predictions (before decoding and NMS) of a model
  with *only* this layer quantized, against fp32 (needs no labels, a fast proxy).
"""
import os
import time

from ssdq.fileio import figure, write_artifacts
from ssdq.fileio import markdown_table as table
from ssdq.model.graph import short_name
from ssdq.quant.calibrated import calibrated_for
from ssdq.scaleout.engine import LocalEngine, ray_block


def sensitivity_trial(context, item):
    """One trial of the analysis (a pure function, so it can run as a Ray task): ``context``
    (the ``Calibrated`` spec, calibration mode, whether to score mAP); ("fp32", None) and
    ("int8", None) score the whole model; ("layer", name) measures one layer."""
    spec, mode, with_map = context
    variants = calibrated_for(spec)
    kind, layer = item
    if kind == "fp32":
        return variants.score(variants.ckpt)["map"]
    if kind == "int8":
        return variants.score(variants.build_int8(mode)[0])["map"]
    others = [l for l in variants.layers if l != layer]
    only_this, _ = variants.build_int8(mode, fp32_layers=others)
    row = {"layer": layer, "conv": variants.layers[layer], **variants.proxy(only_this)}
    if with_map:
        fallback, _ = variants.build_int8(mode, fp32_layers=[layer])
        row["map_with_layer_fp32"] = variants.score(fallback)["map"]
    return row


def analyse(variants, mode=None, with_map=True, progress=True, engine=None):
    """Rank the quantizable layers of a ``Calibrated`` model by sensitivity in calibration
    ``mode`` (default: its options'); return the sensitivity report dict.

    ``engine`` (``scaleout.engine``) runs the trials; by default one after another here."""
    engine = engine or LocalEngine()
    mode = mode or variants.calib.calib_mode
    start = time.time()
    items = [("fp32", None), ("int8", None)] if with_map else []
    items += [("layer", layer) for layer in variants.layers]
    results = engine.map(sensitivity_trial, (variants.spec(), mode, with_map), items, progress,
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
              "eval_images": len(variants.eval_set), "calib_images": variants.describe["images"],
              "calibration": variants.describe,
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
    return table(("rank", "layer", "conv", "mAP recovered in fp32", "SNR only-this-int8 (dB)",
                  "cosine"),
                 [(i, r["layer"], r["conv"],
                   "%+.2f" % r["map_recovered"] if "map_recovered" in r else "-",
                   "%.1f" % r["snr_db"], "%.5f" % r["cosine"]) for i, r in enumerate(rows, 1)])


def markdown(report):
    return "# int8 sensitivity per layer\n\nfp32 mAP %s, all-int8 mAP %s (%s calibration)\n\n%s\n" % (
        _maybe(report["fp32_map"]), _maybe(report["int8_map"]), report["calib_mode"],
        markdown_table(report))


def write(report, out_dir):
    """``OUT_DIR/sensitivity.{json,md,png}``; returns the paths."""
    return write_artifacts(os.path.join(out_dir, "sensitivity"), report, markdown(report),
                           lambda path: plot(report, path))


def _maybe(value):
    return "n/a (--no-map)" if value is None else "%.2f" % value


def plot(report, path):
    """Horizontal bar plot, most sensitive on top."""
    rows = report["layers"]
    key = "map_recovered" if report["ranked_by"] == "map_recovered" else "snr_db"
    with figure(path, figsize=(8, 0.28 * len(rows) + 1.2)) as (_, ax):
        ax.barh(range(len(rows))[::-1], [r[key] for r in rows], color="#c0504d")
        ax.set_yticks(range(len(rows))[::-1])
        ax.set_yticklabels([short_name(r["conv"]) for r in rows], fontsize=7)
        ax.set_xlabel("mAP recovered when kept in fp32 (points)" if key == "map_recovered"
                      else "SNR of predictions with only this layer in int8 (dB)")
        ax.set_title("int8 sensitivity per layer (%s calibration)" % report["calib_mode"])
    return path
