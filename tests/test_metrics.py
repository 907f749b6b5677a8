import numpy as np

from ssdq.data.dataset import open_dataset
from ssdq.metrics import COCOEvaluator, VOC07Evaluator


def _ground_truth_as_detections(ds, shift=0.0):
    ids, labels, scores, boxes = [], [], [], []
    for rec in ds.records:
        keep = ~rec.ignore
        b = rec.boxes[keep].copy()
        w = b[:, 2] - b[:, 0]
        b[:, [0, 2]] += shift * w[:, None]
        ids.append(rec.image_id)
        labels.append(rec.labels[keep])
        scores.append(np.ones(keep.sum(), np.float32))
        boxes.append(b)
    return ids, labels, scores, boxes


def test_coco_perfect_detections_score_100(tiny_data):
    ds = open_dataset(tiny_data, "val")
    ev = COCOEvaluator(ds)
    ev.process(*_ground_truth_as_detections(ds))
    result = ev.evaluate()
    assert result["map"] > 99.9 and result["ap50"] > 99.9 and result["images"] == 64
    assert set(result["per_class"]) == set(ds.classes)


def test_coco_shifted_boxes_score_lower_and_call_order_does_not_matter(tiny_data):
    ds = open_dataset(tiny_data, "val")
    ev = COCOEvaluator(ds)
    ids, labels, scores, boxes = _ground_truth_as_detections(ds, shift=0.3)
    order = np.random.default_rng(0).permutation(len(ids))
    for i in order:  # one image at a time, shuffled
        ev.process([ids[i]], [labels[i]], [scores[i]], [boxes[i]])
    result = ev.evaluate()
    assert 5 < result["map"] < 60 and result["ap50"] > result["ap75"]


def test_no_detections_is_zero_not_a_crash(tiny_data):
    ds = open_dataset(tiny_data, "val")
    ev = COCOEvaluator(ds)
    ev.process([ds[0].image_id], [np.zeros(0, int)], [np.zeros(0)], [np.zeros((0, 4))])
    assert ev.evaluate()["map"] == 0.0


def test_voc07_perfect_and_wrong_class(tiny_data):
    ds = open_dataset(tiny_data, "val")
    ds.fmt = "voc"
    ev = VOC07Evaluator(ds)
    ev.process(*_ground_truth_as_detections(ds))
    assert ev.evaluate()["map"] > 99.9
    ids, labels, scores, boxes = _ground_truth_as_detections(ds)
    ev.reset()
    ev.process(ids, [(l + 1) % 6 for l in labels], scores, boxes)
    assert ev.evaluate()["map"] < 5
