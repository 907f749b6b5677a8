"""Build, write and print the fp32-vs-int8 report (``report.json`` + ``report.md``).

report.json is the file CI diffs: every figure a person reads in report.md comes from it.
Accuracy figures are percentages; speeds are the median images/s of the model's forward pass
(network, box decoding and NMS, no JPEG decoding) on one real batch.
"""
import datetime
import os

from . import __version__
from .bench import markdown as bench_markdown
from .fileio import write_json, write_text

# Published anchors, for putting ours in context (see README "Reference numbers").
PUBLISHED = {
    "intel_coco_ssd_300_vgg16_atrous": {"fp32_map": 24.059, "int8_map": 23.879,
                                        "source": "Intel's gluon-cv recipe, COCO val2017"},
    "gluoncv_voc_ssd300_vgg16": {"fp32_map": 77.4, "int8_map": 77.38, "speedup": 5.96,
                                 "source": "GluonCV int8 tutorial, VOC07, unfused fp32 baseline"},
}

_FIGURES = ("map", "ap50", "ap75", "per_class", "images_per_sec", "speed", "size_mb",
            "deployed_weights_mb", "graph", "checkpoint", "eval_loop", "metric")


def build_report(fp32, int8, environment, threads, calibration, dataset):
    drop = fp32["map"] - int8["map"]
    return {
        "ssdq_version": __version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "dataset": dataset,
        "calibration": calibration,
        "fp32": {k: fp32[k] for k in _FIGURES if k in fp32},
        "int8": {k: int8[k] for k in _FIGURES if k in int8},
        "comparison": {
            "map_drop": drop,
            "relative_map_drop_pct": 100.0 * drop / fp32["map"] if fp32["map"] else None,
            "ap50_drop": fp32["ap50"] - int8["ap50"],
            "speedup": int8["images_per_sec"] / fp32["images_per_sec"],
            "deployed_size_ratio": (fp32.get("deployed_weights_mb") or 0)
            / (int8.get("deployed_weights_mb") or 1),
        },
        "published": PUBLISHED,
        "environment": environment,
        "threads": threads,
    }


def comparison_table(report):
    fp32, int8, cmp_ = report["fp32"], report["int8"], report["comparison"]
    batch = fp32["speed"]["batch_size"]
    rows = [
        ("mAP@[.5:.95] (%)" if fp32["metric"] == "coco" else "VOC07 mAP (%)",
         "%.2f" % fp32["map"], "%.2f" % int8["map"],
         "%+.2f (%+.2f%% rel.)" % (-cmp_["map_drop"], -(cmp_["relative_map_drop_pct"] or 0))),
        ("AP50 (%)", "%.2f" % fp32["ap50"], "%.2f" % int8["ap50"], "%+.2f" % -cmp_["ap50_drop"]),
    ]
    if "ap75" in fp32:
        rows.append(("AP75 (%)", "%.2f" % fp32["ap75"], "%.2f" % int8["ap75"],
                     "%+.2f" % (int8["ap75"] - fp32["ap75"])))
    rows += [
        ("images/s, batch %d (median)" % batch, "%.1f" % fp32["images_per_sec"],
         "%.1f" % int8["images_per_sec"], "%.2fx" % cmp_["speedup"]),
        ("checkpoint on disk (MB)", "%.2f" % fp32["size_mb"], "%.2f" % int8["size_mb"], ""),
        ("weights as deployed (MB)", "%.2f" % fp32.get("deployed_weights_mb", 0),
         "%.2f" % int8.get("deployed_weights_mb", 0), "%.2fx smaller" % cmp_["deployed_size_ratio"]),
    ]
    return _markdown(("", "fp32", "int8", "int8 vs fp32"), rows)


def per_class_table(report):
    fp32, int8 = report["fp32"]["per_class"], report["int8"]["per_class"]
    rows = [(name, "%.2f" % ap, "%.2f" % int8[name], "%+.2f" % (int8[name] - ap))
            for name, ap in fp32.items()]
    return _markdown(("class", "fp32 AP", "int8 AP", "change"), rows)


def _markdown(header, rows):
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(lines)


def render_markdown(report, environment_text):
    calib = report["calibration"]
    ds = report["dataset"]
    return "\n\n".join([
        "# ssdq report: fp32 vs int8",
        "Model `%s` on %s split `%s` (%d images, %s). int8: MXNet oneDNN, %s calibration on "
        "%d images of split `%s`." % (report["fp32"]["checkpoint"], ds["format"].upper(),
                                      ds["split"], ds["images"], ds["root"], calib["mode"],
                                      calib["images"], calib["dataset"]["split"]),
        comparison_table(report),
        "## Per-class AP\n\n" + per_class_table(report),
    ] + ([
        "## Benchmark (`ssdq bench`, short run)\n\n" + bench_markdown(report["bench"]).strip(),
    ] if report.get("bench") else []) + ([
        "## Runtimes (`--backends`)\n\n" + _backends_markdown(report["backends"]),
    ] if report.get("backends") else []) + [
        "## Environment\n\n```\n" + environment_text + "\n```",
        "Speeds are the median of repeated forward passes (network + decode + NMS) on one "
        "batch of real images, threads pinned; compare them as ratios within one report. "
        "The int8 checkpoint stores fp32 weights that oneDNN quantizes when the graph is "
        "loaded, so its file is no smaller: \"weights as deployed\" counts int8 weights at one "
        "byte.",
    ]) + "\n"


def _backends_markdown(section):
    from .backends.evaluate import markdown_table

    return markdown_table(section)


def write_report(out_dir, report, environment_text, name="report"):
    json_path = os.path.join(out_dir, name + ".json")
    md_path = os.path.join(out_dir, name + ".md")
    write_json(json_path, report)
    write_text(md_path, render_markdown(report, environment_text))
    return json_path, md_path
