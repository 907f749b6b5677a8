"""Detection metrics behind one interface: ``reset()``, ``process(...)``, ``evaluate() -> dict``.

``COCOEvaluator`` scores with pycocotools (mAP@[.5:.95], AP50, AP75, per-class AP) in two box
conventions from the same detections:

* ``map``, ``ap50``, ``ap75``: pycocotools' own (continuous) convention, boxes mapped to the image
  and clipped to it, ``w = x2 - x1``;
* ``map_gluoncv``, ``ap50_gluoncv``, ``ap75_gluoncv``: the convention of GluonCV's
  ``COCODetectionMetric`` as its SSD eval script drives it, in which Intel's recipe figures
  (24.059 / 23.879) are printed: boxes clipped to the network input (``validate()``), scaled to the
  annotated image size in float64, ``w = x2 - x1 + 1``, ``h = y2 - y1 + 1``.

``VOC07Evaluator`` uses the VOC2007 11-point metric (gluoncv's implementation; ``map``) and gives
the all-point one beside it (``voc07_map_all_points``, as VOC2010 onwards average). Predictions arrive
with their image ids, so no result depends on call order, and with the model's class indices: a
``data.classmap.ClassMatch`` maps them onto the dataset's classes, and detections of model classes
the dataset does not have are dropped before scoring. Image ids are the dataset's own (a COCO
file's integers or strings, as written). All figures are percentages; ``ground_truths`` and
``ground_truths_ignored`` count the boxes scored (those of the images seen and the classes
scored) and those that are ignored regions (COCO crowd, VOC difficult: a detection on one is
neither a hit nor a false positive, and missing one is no miss).
"""
import contextlib
import io
import os

import numpy as np
from gluoncv.utils.metrics.voc_detection import VOC07MApMetric, VOCMApMetric
from pycocotools.cocoeval import COCOeval

from ssdq.data.classmap import match_classes
from ssdq.data.transforms import INPUT_SIZE
from ssdq.eval.criterion import relative_drop_pct  # noqa: F401  (its old home)


def gluoncv_coco_boxes(boxes, width=None, height=None, input_size=INPUT_SIZE):
    """x1y1x2y2 boxes -> COCO [x, y, w, h] as GluonCV's SSD evaluation writes them.

    With ``width``/``height``, ``boxes`` are in network-input pixels: clipped to
    [0, input_size] in float32 (``det_bboxes.clip(0, 300)``), then scaled in float64 by
    image size / input size. Without, they are already image pixels (the metric without
    ``data_shape``). Either way ``w, h = x2 - x1 + 1, y2 - y1 + 1``."""
    if width is None:
        out = np.asarray(boxes).astype(np.float64)
    else:
        out = np.clip(np.asarray(boxes, np.float32), 0, input_size).astype(np.float64)
        out[:, [0, 2]] *= float(width) / input_size
        out[:, [1, 3]] *= float(height) / input_size
    out[:, 2:4] -= out[:, :2] - 1
    return out


def _image_key(image_id):
    """An image id as the dataset holds it: the file's int or str (a numpy scalar made plain)."""
    return image_id.item() if isinstance(image_id, np.generic) else image_id


class COCOEvaluator:
    def __init__(self, dataset, match=None, input_size=INPUT_SIZE):
        self.dataset = dataset
        self.match = match if match is not None else match_classes(dataset, dataset.classes)
        self.input_size = input_size
        self._category_of = {m: dataset.category_ids[d]
                             for m, d in self.match.model_to_dataset.items()}
        self.reset()

    def reset(self):
        self._detections = []
        self._detections_gluoncv = []
        self._seen = set()

    def process(self, image_ids, labels, scores, boxes, input_boxes=None, image_sizes=None):
        """Add one batch: per image, (K,) model class indices, (K,) scores and (K, 4) x1y1x2y2
        boxes in image pixels (clipped to the image). ``input_boxes``: the same boxes in
        network-input pixels as the network gave them, with ``image_sizes`` (width, height)
        they map to, for the GluonCV convention; without them it starts from ``boxes``."""
        for i, (image_id, lab, sco, box) in enumerate(zip(image_ids, labels, scores, boxes)):
            image_id = _image_key(image_id)
            self._seen.add(image_id)
            keep = np.array([int(k) in self._category_of for k in lab], bool)
            if not keep.any():
                continue
            cats = [self._category_of[int(k)] for k in np.asarray(lab)[keep]]
            sco = np.asarray(sco)[keep]
            box = np.asarray(box)[keep]
            if input_boxes is not None:
                width, height = image_sizes[i]
                gbox = gluoncv_coco_boxes(np.asarray(input_boxes[i])[keep], width, height,
                                          self.input_size)
            else:
                gbox = gluoncv_coco_boxes(box)
            for cat, s, (x1, y1, x2, y2), g in zip(cats, sco, box, gbox):
                self._detections.append({
                    "image_id": image_id, "category_id": cat,
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "score": float(s)})
                self._detections_gluoncv.append({
                    "image_id": image_id, "category_id": cat,
                    "bbox": g.tolist(), "score": float(s)})

    def evaluate(self):
        cat_ids = sorted(self._category_of.values())
        metrics = coco_metrics(self.dataset, self._detections, self._detections_gluoncv,
                               sorted(self._seen), cat_ids)
        return dict(metrics, **self.match.describe())

    def results(self):
        """The detections as a COCO results list under the dataset's own image and category
        ids (what ``ssdq eval --save-detections`` writes and ``ssdq score`` reads)."""
        return list(self._detections)


def coco_metrics(dataset, results, gluoncv_results, image_ids, cat_ids):
    """pycocotools' scores of a COCO results list (``results``, under ``dataset``'s ids) on
    ``image_ids`` and ``cat_ids``, and GluonCV's convention's of ``gluoncv_results`` (the same
    detections, boxes as GluonCV writes them): the one scoring code of ``ssdq eval`` and
    ``ssdq score``. Percentages; ``coco_stats`` is pycocotools' 12-number summary."""
    names = [dataset.classes[dataset.category_ids.index(c)] for c in cat_ids]
    scored = _ground_truth_counts(dataset, image_ids, cat_ids)
    if not results:
        return {"map": 0.0, "ap50": 0.0, "ap75": 0.0, "map_gluoncv": 0.0, "ap50_gluoncv": 0.0,
                "ap75_gluoncv": 0.0, "coco_stats": [0.0] * 12,
                "per_class": {n: 0.0 for n in names}, "images": len(image_ids),
                "detections": 0, "summary": "no detections", **scored}
    ev, summary = _cocoeval(dataset.coco, results, image_ids, cat_ids)
    gluoncv_ev, _ = _cocoeval(dataset.coco, gluoncv_results, image_ids, cat_ids)
    # precision: [iou thresholds, recall points, classes, area ranges, max dets]
    precision = ev.eval["precision"][:, :, :, 0, -1]
    per_class = {}
    for k, name in enumerate(names):
        valid = precision[:, :, k][precision[:, :, k] > -1]
        per_class[name] = float(valid.mean() * 100) if valid.size else float("nan")
    stats, gstats = ev.stats * 100, gluoncv_ev.stats * 100
    return {"map": float(stats[0]), "ap50": float(stats[1]), "ap75": float(stats[2]),
            "ap_small": float(stats[3]), "ap_medium": float(stats[4]),
            "ap_large": float(stats[5]), "ar100": float(stats[8]),
            "coco_stats": [float(v) for v in stats],
            "map_gluoncv": float(gstats[0]), "ap50_gluoncv": float(gstats[1]),
            "ap75_gluoncv": float(gstats[2]),
            "per_class": per_class, "images": len(image_ids), "detections": len(results),
            **scored, "summary": summary.split("\n", 3)[-1].rstrip()}


def _ground_truth_counts(dataset, image_ids, cat_ids):
    """The ground truths COCOeval scores: those of ``image_ids`` and the classes scored, a crowd
    region (or a box whose area is outside COCOeval's "all" range, [0, 1e10]) being ignored."""
    cats, counts = set(cat_ids), {"ground_truths": 0, "ground_truths_ignored": 0}
    for image_id in image_ids:
        for ann in dataset.coco.imgToAnns.get(image_id, ()):
            if ann["category_id"] in cats:
                ignored = ann.get("iscrowd", 0) or not 0 <= ann["area"] <= 1e10
                counts["ground_truths_ignored" if ignored else "ground_truths"] += 1
    return counts


def _cocoeval(coco, detections, image_ids, cat_ids):
    summary = io.StringIO()
    with contextlib.redirect_stdout(summary):
        results = coco.loadRes(detections)
        ev = COCOeval(coco, results, "bbox")
        ev.params.imgIds = sorted(image_ids)
        ev.params.catIds = cat_ids
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    return ev, summary.getvalue()


class VOC07Evaluator:
    def __init__(self, dataset, match=None, iou_thresh=0.5):
        self.dataset = dataset
        self.match = match if match is not None else match_classes(dataset, dataset.classes)
        self._dataset_index = self.match.model_to_dataset
        self._scored_labels = sorted(self.match.dataset_to_model)
        self._by_id = {rec.image_id: rec for rec in dataset.records}
        self._metric = VOC07MApMetric(iou_thresh=iou_thresh, class_names=list(dataset.classes))
        self._all_points = VOCMApMetric(iou_thresh=iou_thresh, class_names=list(dataset.classes))
        self.reset()

    def reset(self):
        self._metric.reset()
        self._all_points.reset()
        self._results = []
        self._images = 0
        self._ground_truths = {"ground_truths": 0, "ground_truths_ignored": 0}

    def process(self, image_ids, labels, scores, boxes, input_boxes=None, image_sizes=None):
        for image_id, lab, sco, box in zip(image_ids, labels, scores, boxes):
            rec = self._by_id[_image_key(image_id)]
            self._images += 1
            scored = np.isin(rec.labels, self._scored_labels)
            self._ground_truths["ground_truths"] += int((scored & ~rec.ignore).sum())
            self._ground_truths["ground_truths_ignored"] += int((scored & rec.ignore).sum())
            keep = np.array([int(k) in self._dataset_index for k in lab], bool)
            lab = np.array([self._dataset_index[int(k)] for k in np.asarray(lab)[keep]], np.float32)
            name = os.path.splitext(os.path.basename(rec.path))[0]
            for c, s, (x1, y1, x2, y2) in zip(lab, np.asarray(sco)[keep], np.asarray(box)[keep]):
                self._results.append({"image_id": name, "category_id": self.dataset.classes[int(c)],
                                      "bbox": [float(x1), float(y1), float(x2 - x1),
                                               float(y2 - y1)], "score": float(s)})
            for metric in (self._metric, self._all_points):
                metric.update(
                    np.asarray(box, np.float32)[keep][None], lab[None],
                    np.asarray(sco, np.float32)[keep][None], rec.boxes[None],
                    rec.labels.astype(np.float32)[None], rec.ignore.astype(np.float32)[None])

    def evaluate(self):
        scored = set(self.match.scored)
        per_class, mean = self._per_class(self._metric, scored)
        _, all_points = self._per_class(self._all_points, scored)
        return {"map": mean, "ap50": mean, "voc07_map": mean, "voc07_map_all_points": all_points,
                "per_class": per_class, "images": self._images, **self._ground_truths,
                **self.match.describe()}

    def results(self):
        """The detections as a COCO results list: image ids are the images' file stems, category
        ids the class names (a VOC split has no ids of its own; ``ssdq score`` matches both)."""
        return list(self._results)

    @staticmethod
    def _per_class(metric, scored):
        """({class: AP %}, mean AP %) of a gluoncv VOC metric over the classes scored."""
        names, values = metric.get()
        per_class = {n: float(v * 100) for n, v in zip(names[:-1], values[:-1]) if n in scored}
        return per_class, float(np.nanmean(list(per_class.values()))) if per_class else 0.0


def evaluator_for(dataset, match=None):
    """The dataset's metric (COCO or VOC07); ``match``: its ``ClassMatch`` onto the model's
    classes (default: the model's classes are the dataset's)."""
    return (COCOEvaluator if dataset.fmt == "coco" else VOC07Evaluator)(dataset, match)
