"""Build, write and print the fp32-vs-int8 report (``report.json`` + ``report.md``).

report.json is the file CI diffs: every figure a person reads in report.md comes from it.
Accuracy figures are percentages, COCO ones in two conventions (pycocotools' ``map`` and GluonCV's
``map_gluoncv``, the one Intel's 24.059 is printed in). ``images_per_sec`` is the median of the
model's forward pass (network, box decoding and NMS, no JPEG decoding) from the report's short
bench, where fp32 and int8 are timed in turns within one run, so the speed-up is a fair ratio
even on a shared, noisy machine; ``eval_loop_images_per_sec`` is each evaluation's own
throughput (JPEG decoding included, the two evaluations run minutes apart).
"""
import os

from ssdq import __version__
from ssdq.bench.harness import markdown as bench_markdown
from ssdq.errors import SsdqError
from ssdq.eval.metrics import relative_drop_pct
from ssdq.eval.runtimes import markdown_table as backends_markdown
from ssdq.fileio import markdown_table, utc_now, write_artifacts

# Published anchors, for putting ours in context (docs/results.md, "Published figures").
PUBLISHED = {
    "intel_coco_ssd_300_vgg16_atrous": {"fp32_map": 24.059, "int8_map": 23.879,
                                        "source": "Intel's gluon-cv recipe, COCO val2017"},
    "gluoncv_voc_ssd300_vgg16": {"fp32_map": 77.4, "int8_map": 77.38, "speedup": 5.96,
                                 "source": "GluonCV int8 tutorial, VOC07, unfused fp32 baseline"},
}

_FIGURES = ("map", "ap50", "ap75", "map_gluoncv", "ap50_gluoncv", "ap75_gluoncv", "per_class",
            "classes_scored", "classes_renamed", "classes_ignored", "images_per_sec", "speed",
            "eval_loop_images_per_sec", "size_mb", "deployed_weights_mb", "graph", "checkpoint",
            "eval_loop", "metric")


def paired_speed(bench, scope="end_to_end"):
    """fp32's and int8's ``scope`` records at the bench's speed-up batch size: timed in turns."""
    batch = bench["speedup_batch_size"]
    found = {r["precision"]: r for r in bench["records"] if r["scope"] == scope
             and r["batch_size"] == batch and "images_per_sec" in r}
    if not {"fp32", "int8"} <= set(found):
        raise SsdqError("the bench has no fp32 and int8 %s figures at batch %s: %s" % (
            scope, batch, "; ".join(r.get("error", "") for r in bench["records"] if "error" in r)))
    return {p: dict(found[p], scope=scope, timed_in_turns=True) for p in ("fp32", "int8")}


def build_report(fp32, int8, environment, threads, calibration, dataset, bench=None):
    """``bench``: the short bench of the same run; its fp32/int8 figures, timed in turns, are the
    report's ``images_per_sec`` (without one, each evaluation's own timing is used)."""
    if bench is not None:
        speed = paired_speed(bench)
        fp32, int8 = ({**r, "images_per_sec": speed[p]["images_per_sec"], "speed": speed[p]}
                      for p, r in (("fp32", fp32), ("int8", int8)))
    drop = fp32["map"] - int8["map"]
    report = {
        "ssdq_version": __version__,
        "created": utc_now(),
        "dataset": dataset,
        "calibration": calibration,
        "fp32": {k: fp32[k] for k in _FIGURES if k in fp32},
        "int8": {k: int8[k] for k in _FIGURES if k in int8},
        "comparison": {
            "map_drop": drop,
            "relative_map_drop_pct": relative_drop_pct(fp32["map"], int8["map"]),
            "ap50_drop": fp32["ap50"] - int8["ap50"],
            "speedup": int8["images_per_sec"] / fp32["images_per_sec"],
            "deployed_size_ratio": (fp32.get("deployed_weights_mb") or 0)
            / (int8.get("deployed_weights_mb") or 1),
        },
        "published": PUBLISHED,
        "environment": environment,
        "threads": threads,
    }
    if "map_gluoncv" in fp32 and "map_gluoncv" in int8:
        report["comparison"]["map_drop_gluoncv"] = fp32["map_gluoncv"] - int8["map_gluoncv"]
    if bench is not None:
        report["bench"] = bench
    return report


def comparison_table(report):
    fp32, int8, cmp_ = report["fp32"], report["int8"], report["comparison"]
    speed = fp32["speed"]
    coco = fp32["metric"] == "coco"
    rows = [
        ("mAP@[.5:.95] (%), pycocotools" if coco else "VOC07 mAP (%)",
         "%.2f" % fp32["map"], "%.2f" % int8["map"],
         "%+.2f (%+.2f%% rel.)" % (-cmp_["map_drop"], -(cmp_["relative_map_drop_pct"] or 0))),
        ("AP50 (%)", "%.2f" % fp32["ap50"], "%.2f" % int8["ap50"], "%+.2f" % -cmp_["ap50_drop"]),
    ]
    if "ap75" in fp32:
        rows.append(("AP75 (%)", "%.2f" % fp32["ap75"], "%.2f" % int8["ap75"],
                     "%+.2f" % (int8["ap75"] - fp32["ap75"])))
    if "map_gluoncv" in fp32:
        rows += [("mAP@[.5:.95] (%%), GluonCV convention (%s)" % "as Intel's 24.059",
                  "%.3f" % fp32["map_gluoncv"], "%.3f" % int8["map_gluoncv"],
                  "%+.3f" % (int8["map_gluoncv"] - fp32["map_gluoncv"])),
                 ("AP50 / AP75 (%), GluonCV convention",
                  "%.2f / %.2f" % (fp32["ap50_gluoncv"], fp32["ap75_gluoncv"]),
                  "%.2f / %.2f" % (int8["ap50_gluoncv"], int8["ap75_gluoncv"]), "")]
    if speed.get("timed_in_turns"):
        speed_label = "images/s, %s, batch %d (median of %d, timed in turns)" % (
            speed["scope"].replace("_", " "), speed["batch_size"], speed["repeats"])
    else:
        speed_label = "images/s, batch %d (median)" % speed["batch_size"]
    rows += [
        (speed_label, "%.1f" % fp32["images_per_sec"],
         "%.1f" % int8["images_per_sec"], "%.2fx" % cmp_["speedup"]),
    ]
    if "eval_loop_images_per_sec" in fp32:
        rows.append(("eval loop images/s (JPEG decode included; each run alone)",
                     "%.1f" % fp32["eval_loop_images_per_sec"],
                     "%.1f" % int8["eval_loop_images_per_sec"],
                     "%.2fx" % (int8["eval_loop_images_per_sec"] / fp32["eval_loop_images_per_sec"])))
    rows += [
        ("checkpoint on disk (MB)", "%.2f" % fp32["size_mb"], "%.2f" % int8["size_mb"], ""),
        ("weights as deployed (MB)", "%.2f" % fp32.get("deployed_weights_mb", 0),
         "%.2f" % int8.get("deployed_weights_mb", 0), "%.2fx smaller" % cmp_["deployed_size_ratio"]),
    ]
    return markdown_table(("", "fp32", "int8", "int8 vs fp32"), rows)


def per_class_table(report):
    fp32, int8 = report["fp32"]["per_class"], report["int8"]["per_class"]  # pycocotools' convention
    rows = [(name, "%.2f" % ap, "%.2f" % int8[name], "%+.2f" % (int8[name] - ap))
            for name, ap in fp32.items()]
    return markdown_table(("class", "fp32 AP", "int8 AP", "change"), rows)


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
        "## Runtimes (`--backends`)\n\n" + backends_markdown(report["backends"]),
    ] if report.get("backends") else []) + [
        "## Environment\n\n```\n" + environment_text + "\n```",
        "images/s: the median of repeated forward passes (network + decode + NMS) on one "
        "batch of real images, threads pinned, fp32 and int8 timed in turns in this run's bench; "
        "the eval loop's img/s include JPEG decoding and come from two evaluations run apart. "
        "COCO mAP is given in pycocotools' convention and in GluonCV's (boxes clipped to the "
        "300x300 input, w/h + 1), the one Intel's 24.059 / 23.879 are printed in. "
        "The int8 checkpoint stores fp32 weights that oneDNN quantizes when the graph is "
        "loaded, so its file is no smaller: \"weights as deployed\" counts int8 weights at one "
        "byte.",
    ]) + "\n"


def write_report(out_dir, report, environment_text, name="report"):
    """``OUT_DIR/NAME.json`` and ``OUT_DIR/NAME.md``; returns the two paths."""
    return tuple(write_artifacts(os.path.join(out_dir, name), report,
                                 render_markdown(report, environment_text)))
