"""``ssdq score``'s result for people: the printout and ``score.md``."""
from ssdq.fileio import markdown_table

# pycocotools' summarize() order
COCO_STATS = ("AP @[.50:.95]", "AP @.50", "AP @.75", "AP small", "AP medium", "AP large",
              "AR maxDets=1", "AR maxDets=10", "AR maxDets=100", "AR small", "AR medium",
              "AR large")


def _matched(result):
    unmatched = result["detections_unmatched"]
    line = ("%d detections scored (images matched by %s, classes by %s); %d match no image, %d "
            "no class" % (result["detections"], result["images_matched_by"].replace("_", " "),
                          result["classes_matched_by"], unmatched["image"], unmatched["class"]))
    if result.get("detections_malformed"):
        line += "; %d entries are not detections" % result["detections_malformed"]
    return line


def summary_lines(result):
    """The lines ``ssdq score`` prints."""
    gt = ("%d ground truths (%d ignored: crowd or difficult) in %d images"
          % (result["ground_truths"], result["ground_truths_ignored"], result["images"]))
    if result["metric"] == "coco":
        lines = ["pycocotools: mAP@[.5:.95] %.3f   AP50 %.3f   AP75 %.3f"
                 % (result["map"], result["ap50"], result["ap75"]),
                 "GluonCV's convention (w, h + 1): mAP %.3f" % result["map_gluoncv"]]
    else:
        lines = ["VOC07 mAP@.5: %.2f (11-point), %.2f (all points); difficult objects ignored"
                 % (result["voc07_map"], result["voc07_map_all_points"])]
    return lines + [_matched(result), gt]


def markdown(result):
    """``score.md``: what was scored against what, the summary and the per-class AP."""
    parts = ["# Detections scored", "",
             "`%s` (%s) against %s, split `%s`." % (
                 result["detections_file"], result["detections_kind"],
                 result["dataset"].get("annotation_file") or result["dataset"].get("root"),
                 result["dataset"].get("split")), "", _matched(result) + ".", ""]
    if result["metric"] == "coco":
        rows = [(name, "%.3f" % value) for name, value in zip(COCO_STATS, result["coco_stats"])]
        rows.append(("AP @[.50:.95], GluonCV's convention", "%.3f" % result["map_gluoncv"]))
        parts += ["pycocotools' summary (%):", "", markdown_table(("metric", "value"), rows), ""]
        title = "AP @[.50:.95] (%)"
    else:
        parts += [markdown_table(("metric", "value"), [
            ("VOC07 mAP@.5, 11-point (%)", "%.2f" % result["voc07_map"]),
            ("VOC07 mAP@.5, all points (%)", "%.2f" % result["voc07_map_all_points"])]), ""]
        title = "AP@.5, 11-point (%)"
    parts += [markdown_table(("class", title), [(name, "%.2f" % ap) for name, ap in
                                                result["per_class"].items()]), "",
              "%d ground truths, %d ignored (crowd or difficult), %d images."
              % (result["ground_truths"], result["ground_truths_ignored"], result["images"])]
    return "\n".join(parts) + "\n"
