"""Published figures, and whether a run reproduced Intel's.

Intel's recipe scores GluonCV's ``ssd_300_vgg16_atrous_coco`` (its model-zoo weights) on COCO
val2017, all 5,000 images, in GluonCV's ``COCODetectionMetric`` convention: fp32 24.059, int8
23.879. ``recipe_verdict`` says, for a report, whether it is that run (``reproduced`` within the
tolerance, or ``differs`` by how much and in which direction) or why it is ``not comparable``.

The tolerances: fp32 is deterministic given the weights, the images and the metric, so it must
land within ``FP32_TOLERANCE`` (the last digit Intel printed, and float sums in another order);
int8 depends on which images calibrate (Intel's were not published), so ``INT8_TOLERANCE``.
"""
import os

PUBLISHED = {
    "intel_coco_ssd_300_vgg16_atrous": {"fp32_map": 24.059, "int8_map": 23.879,
                                        "source": "Intel's gluon-cv recipe, COCO val2017"},
    "gluoncv_voc_ssd300_vgg16": {"fp32_map": 77.4, "int8_map": 77.38, "speedup": 5.96,
                                 "source": "GluonCV int8 tutorial, VOC07, unfused fp32 baseline"},
}
RECIPE_MODEL = "ssd_300_vgg16_atrous_coco"
ZOO_WEIGHTS = "gluoncv model zoo (pretrained=True)"
COCO_VAL2017 = ("instances_val2017.json", 5000, 80)
FP32_TOLERANCE = 0.05  # mAP points
INT8_TOLERANCE = 0.2


def _not_comparable(model, weights_ok, dataset):
    """Why a run is not Intel's (None when it is)."""
    reasons = []
    if model != RECIPE_MODEL:
        reasons.append("the model is %s, not %s" % (model, RECIPE_MODEL))
    elif not weights_ok:
        reasons.append("the weights are not GluonCV's model-zoo weights of %s" % RECIPE_MODEL)
    source = os.path.basename(str(dataset.get("annotation_file") or dataset.get("root") or ""))
    name, images, classes = COCO_VAL2017
    if dataset.get("format") != "coco" or source != name:
        reasons.append("the data is %s, not COCO val2017 (%s)" % (source or "unknown", name))
    elif dataset.get("images") != images:
        reasons.append("%s of val2017's %d images were scored" % (dataset.get("images"), images))
    elif len(dataset.get("classes") or ()) != classes:
        reasons.append("%d classes were scored, not COCO's %d"
                       % (len(dataset.get("classes") or ()), classes))
    return "; ".join(reasons) or None


def zoo_weights(meta):
    """Whether a checkpoint's meta says it holds GluonCV's zoo weights of its model: loaded by
    gluoncv (which checks their SHA-1), or a file whose SHA-1 is the model store's."""
    if meta.get("weights") == ZOO_WEIGHTS:
        return True
    published = meta.get("zoo_sha1")
    return bool(published) and meta.get("weights_sha1", "").startswith(published[:8])


def recipe_verdict(meta, dataset, fp32_map_gluoncv, int8_map_gluoncv):
    """``published["verdict"]`` of a report: the fp32 checkpoint's ``meta``, the dataset's
    ``describe()`` and the two mAPs in GluonCV's convention."""
    anchor = PUBLISHED["intel_coco_ssd_300_vgg16_atrous"]
    tolerance = {"fp32_points": FP32_TOLERANCE, "int8_points": INT8_TOLERANCE,
                 "metric": "map_gluoncv (GluonCV's COCODetectionMetric convention)"}
    reason = _not_comparable(meta.get("model"), zoo_weights(meta), dataset)
    if reason:
        return {"verdict": "not comparable", "reason": reason, "tolerance": tolerance}
    differences = {"fp32": round(fp32_map_gluoncv - anchor["fp32_map"], 3),
                   "int8": round(int8_map_gluoncv - anchor["int8_map"], 3)}
    off = ["%s %+.3f points (%s Intel's %.3f)" % (p, d, "above" if d > 0 else "below",
                                                  anchor["%s_map" % p])
           for p, d, limit in (("fp32", differences["fp32"], FP32_TOLERANCE),
                               ("int8", differences["int8"], INT8_TOLERANCE))
           if abs(d) > limit]
    return {"verdict": "differs" if off else "reproduced", "differences": differences,
            "reason": "; ".join(off) if off else "fp32 and int8 within the tolerance of Intel's "
            "24.059 / 23.879", "tolerance": tolerance}
