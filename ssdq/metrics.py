"""Detection metrics behind one interface: ``reset()``, ``process(...)``, ``evaluate() -> dict``.

``COCOEvaluator`` scores with pycocotools (mAP@[.5:.95], AP50, AP75, per-class AP);
``VOC07Evaluator`` with the VOC2007 11-point metric (gluoncv's implementation). Predictions
arrive with their image ids and in original-image pixels, so no result depends on call order.
All figures are percentages.
"""
import contextlib
import io

import numpy as np


class COCOEvaluator:
    def __init__(self, dataset):
        self.dataset = dataset
        self.reset()

    def reset(self):
        self._detections = []
        self._seen = set()

    def process(self, image_ids, labels, scores, boxes):
        """Add one batch: per image, (K,) class indices, (K,) scores and (K, 4) x1y1x2y2 boxes."""
        cat_ids = self.dataset.category_ids
        for image_id, lab, sco, box in zip(image_ids, labels, scores, boxes):
            self._seen.add(int(image_id))
            for k, s, (x1, y1, x2, y2) in zip(lab, sco, box):
                self._detections.append({
                    "image_id": int(image_id), "category_id": int(cat_ids[int(k)]),
                    "bbox": [float(x1), float(y1), float(x2 - x1), float(y2 - y1)],
                    "score": float(s)})

    def evaluate(self):
        from pycocotools.cocoeval import COCOeval

        coco = self.dataset.coco
        names = self.dataset.classes
        if not self._detections:
            return {"map": 0.0, "ap50": 0.0, "ap75": 0.0, "per_class": {n: 0.0 for n in names},
                    "images": len(self._seen), "detections": 0, "summary": "no detections"}
        summary = io.StringIO()
        with contextlib.redirect_stdout(summary):
            results = coco.loadRes(self._detections)
            ev = COCOeval(coco, results, "bbox")
            ev.params.imgIds = sorted(self._seen)
            ev.evaluate()
            ev.accumulate()
            ev.summarize()
        # precision: [iou thresholds, recall points, classes, area ranges, max dets]
        precision = ev.eval["precision"][:, :, :, 0, -1]
        per_class = {}
        for k, name in enumerate(names):
            valid = precision[:, :, k][precision[:, :, k] > -1]
            per_class[name] = float(valid.mean() * 100) if valid.size else float("nan")
        stats = ev.stats * 100
        return {"map": float(stats[0]), "ap50": float(stats[1]), "ap75": float(stats[2]),
                "ap_small": float(stats[3]), "ap_medium": float(stats[4]),
                "ap_large": float(stats[5]), "ar100": float(stats[8]),
                "per_class": per_class, "images": len(self._seen),
                "detections": len(self._detections),
                "summary": summary.getvalue().split("\n", 3)[-1].rstrip()}


class VOC07Evaluator:
    def __init__(self, dataset, iou_thresh=0.5):
        from gluoncv.utils.metrics.voc_detection import VOC07MApMetric

        self.dataset = dataset
        self._by_id = {rec.image_id: rec for rec in dataset.records}
        self._metric = VOC07MApMetric(iou_thresh=iou_thresh, class_names=list(dataset.classes))
        self.reset()

    def reset(self):
        self._metric.reset()
        self._images = 0

    def process(self, image_ids, labels, scores, boxes):
        for image_id, lab, sco, box in zip(image_ids, labels, scores, boxes):
            rec = self._by_id[int(image_id)]
            self._images += 1
            self._metric.update(
                np.asarray(box, np.float32)[None], np.asarray(lab, np.float32)[None],
                np.asarray(sco, np.float32)[None], rec.boxes[None],
                rec.labels.astype(np.float32)[None], rec.ignore.astype(np.float32)[None])

    def evaluate(self):
        names, values = self._metric.get()
        per_class = {n: float(v * 100) for n, v in zip(names[:-1], values[:-1])}
        return {"map": float(values[-1] * 100), "ap50": float(values[-1] * 100),
                "per_class": per_class, "images": self._images}


def evaluator_for(dataset):
    return COCOEvaluator(dataset) if dataset.fmt == "coco" else VOC07Evaluator(dataset)
