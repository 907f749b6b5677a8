import json

import numpy as np
import pytest

from ssdq.data.dataset import open_dataset
from ssdq.eval.metrics import COCOEvaluator, VOC07Evaluator, gluoncv_coco_boxes


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
    crowd = sum(a["iscrowd"] for a in ds.coco.anns.values())
    assert result["ground_truths"] == len(ds.coco.anns) - crowd == 296
    assert result["ground_truths_ignored"] == crowd == 35


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
    result = ev.evaluate()
    assert result["map"] == 0.0 and result["ground_truths"] == len(ds[0].boxes) > 0


def test_voc07_perfect_and_wrong_class(tiny_data):
    ds = open_dataset(tiny_data, "val")
    ds.fmt = "voc"
    ev = VOC07Evaluator(ds)
    ev.process(*_ground_truth_as_detections(ds))
    result = ev.evaluate()
    assert result["map"] > 99.9 and result["ground_truths"] == 296  # 35 crowd: VOC's difficult
    assert result["ground_truths_ignored"] == 35
    ids, labels, scores, boxes = _ground_truth_as_detections(ds)
    ev.reset()
    ev.process(ids, [(l + 1) % 6 for l in labels], scores, boxes)
    assert ev.evaluate()["map"] < 5


def test_gluoncv_box_convention_clips_to_the_input_then_scales_and_adds_one():
    boxes = np.array([[-10, 20, 150, 310], [30, 60, 90, 120]], np.float32)  # network-input pixels
    out = gluoncv_coco_boxes(boxes, width=600, height=450, input_size=300)
    # clipped to [0, 300], scaled by 2 (x) and 1.5 (y), then w = x2 - x1 + 1, h = y2 - y1 + 1
    np.testing.assert_allclose(out, [[0, 30, 301, 421], [60, 90, 121, 91]])
    np.testing.assert_allclose(gluoncv_coco_boxes(np.array([[1.5, 2, 3, 7]])), [[1.5, 2, 2.5, 6]])


def test_both_conventions_match_gluoncv_coco_detection_metric(fp32_prefix, tiny_data, tmp_path):
    """The same detections scored by gluoncv's own COCODetectionMetric (fed as its SSD eval
    script feeds it) and by ssdq: map_gluoncv is its figure to 3 decimals."""
    import types

    from gluoncv.utils.metrics.coco_detection import COCODetectionMetric

    from ssdq.eval.loop import detect
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.predictor import Predictor

    ds = open_dataset(tiny_data, "val")
    predictor = Predictor(load_checkpoint(fp32_prefix), 16)
    raw = {}

    def forward(batch):  # keep every image's raw detections, keyed by image id
        ids, scores, boxes = predictor(batch)
        raw[len(raw)] = (ids, scores, boxes)
        return ids, scores, boxes

    ours, _ = detect(forward, ds, COCOEvaluator(ds), batch_size=16, progress=False)
    by_image = {}
    for b, (ids, scores, boxes) in raw.items():
        for k, rec in enumerate(ds.records[16 * b:16 * (b + 1)]):
            by_image[rec.image_id] = (ids[k], scores[k], boxes[k])
    shim = types.SimpleNamespace(coco=ds.coco, classes=list(ds.classes),
                                 contiguous_id_to_json=dict(enumerate(ds.category_ids)))
    metric = COCODetectionMetric(shim, str(tmp_path / "gluoncv_eval"), cleanup=True,
                                 data_shape=(300, 300))
    for image_id in sorted(ds.coco.getImgIds()):  # the metric numbers images by call order
        ids, scores, boxes = by_image[image_id]
        clipped = np.clip(boxes, 0, 300)  # GluonCV's validate(): det_bboxes.clip(0, 300)
        metric.update(clipped[None], ids[None], scores[None])
    names, values = metric.get()
    theirs = metric._coco_eval.stats * 100
    assert round(ours["map_gluoncv"], 3) == round(theirs[0], 3)
    assert round(ours["ap50_gluoncv"], 3) == round(theirs[1], 3)
    assert round(ours["ap75_gluoncv"], 3) == round(theirs[2], 3)
    assert values[-1] == "%.1f" % ours["map_gluoncv"] and names[-1].startswith("~~~~ MeanAP")
    assert ours["map"] != ours["map_gluoncv"]  # the continuous figure is another convention


def test_detections_of_model_classes_the_dataset_lacks_are_dropped(tiny_data):
    from ssdq.data.classmap import match_classes

    ds = open_dataset(tiny_data, "val")
    model_classes = ("person",) + ds.classes  # the model knows one class more, at index 0
    match = match_classes(ds, model_classes)
    ids, labels, scores, boxes = _ground_truth_as_detections(ds)
    ev = COCOEvaluator(ds, match)
    ev.process(ids, [l + 1 for l in labels], scores, boxes)  # model indices
    perfect = ev.evaluate()
    ev.reset()
    # the same plus confident 'person' boxes over every object: not scored, so no harm
    ev.process(ids, [np.concatenate([l + 1, np.zeros_like(l)]) for l in labels],
               [np.concatenate([s, s]) for s in scores], [np.concatenate([b, b]) for b in boxes])
    result = ev.evaluate()
    assert perfect["map"] > 99.9 and result["map"] == perfect["map"]
    assert result["classes_scored"] == list(ds.classes) and result["model_classes_not_scored"] == 1


def _rewrite(path, image_id=None, ann_id=None, edit=None):
    """Rewrite a COCO file's image ids (``image_id(old)``), annotation ids, or anything (``edit``)."""
    with open(path) as f:
        data = json.load(f)
    for img in data["images"]:
        img["id"] = image_id(img["id"]) if image_id else img["id"]
    for ann in data["annotations"]:
        ann["image_id"] = image_id(ann["image_id"]) if image_id else ann["image_id"]
        ann["id"] = ann_id(ann["id"]) if ann_id else ann["id"]
    if edit:
        edit(data)
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def test_string_and_huge_ids_score_as_the_integer_ids(fp32_prefix, tiny_data, tmp_path):
    """Image ids "img000000", ... (strings) or above 2^32, annotation ids above 2^32: kept as the
    file writes them, so pycocotools matches the detections; every figure equals the integer
    ids' one, sharded or not."""
    from ssdq.eval.evaluate import evaluate_checkpoint

    from helpers import write_labelme_export

    classes = open_dataset(tiny_data, "val").classes
    paths = {"int": write_labelme_export(str(tmp_path / "int"), tiny_data, 6, classes)}
    paths["str"] = _rewrite(write_labelme_export(str(tmp_path / "str"), tiny_data, 6, classes),
                            image_id=lambda i: "img%06d" % i)
    paths["huge"] = _rewrite(write_labelme_export(str(tmp_path / "huge"), tiny_data, 6, classes),
                             image_id=lambda i: 2 ** 33 + i, ann_id=lambda i: 2 ** 40 + i)
    assert [r.image_id for r in open_dataset(annotations=paths["str"])] == [
        "img%06d" % i for i in range(6)]
    huge = open_dataset(annotations=paths["huge"])
    assert [r.image_id for r in huge] == [2 ** 33 + i for i in range(6)]
    assert min(huge.coco.anns) == 2 ** 40  # valid ids: not renumbered
    results = {kind: evaluate_checkpoint(fp32_prefix, open_dataset(annotations=path), batch_size=2,
                                         progress=False, speed_repeats=0)
               for kind, path in paths.items()}
    results["str sharded"] = evaluate_checkpoint(
        fp32_prefix, open_dataset(annotations=paths["str"]), batch_size=2, progress=False,
        speed_repeats=0, shards=2)
    assert results["int"]["map"] > 20 and results["int"]["images"] == 6
    for kind in ("str", "huge", "str sharded"):
        for key in ("map", "ap50", "map_gluoncv", "per_class", "detections", "images"):
            assert results[kind][key] == results["int"][key], (kind, key)


def _coco_file(tmp_path, annotations, width=160, height=120):
    """A one-image, one-category ("car", id 3) COCO file beside its PNG; opened."""
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.full((height, width, 3), 60, np.uint8))
    path = tmp_path / "ann.json"
    path.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": width, "height": height}],
        "annotations": [dict({"image_id": 1, "category_id": 3}, **a) for a in annotations],
        "categories": [{"id": 3, "name": "car"}]}))
    return open_dataset(annotations=str(path))


def _score(ds, boxes, scores=None):
    ev = COCOEvaluator(ds)
    boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
    ev.process([ds[0].image_id], [np.zeros(len(boxes), np.int64)],
               [np.ones(len(boxes), np.float32) if scores is None else np.asarray(scores)], [boxes])
    return ev.evaluate()


def test_rle_crowd_region_is_ignored_not_missed(tmp_path):
    """An RLE crowd annotation (COCO's uncompressed counts) is an ignored region: not detecting
    it is no miss, a detection inside it is no false positive."""
    rle = {"size": [120, 160], "counts": [0] + [100, 20] * 99 + [100, 20 + 120 * 60]}
    assert sum(rle["counts"]) == 120 * 160
    ds = _coco_file(tmp_path, [
        {"id": 1, "bbox": [120, 20, 30, 40], "area": 1200, "iscrowd": 0},
        {"id": 2, "bbox": [0, 0, 100, 100], "area": 10000, "iscrowd": 1, "segmentation": rle}])
    assert ds[0].ignore.tolist() == [False, True]
    alone = _score(ds, [[120, 20, 150, 60]])
    inside = _score(ds, [[120, 20, 150, 60], [10, 10, 40, 40]], [1.0, 0.9])
    for result in (alone, inside):
        assert result["map"] == pytest.approx(100) and result["ap50"] == pytest.approx(100)
        assert result["ground_truths"] == 1 and result["ground_truths_ignored"] == 1


def test_duplicated_annotation_ids_are_two_ground_truths(tmp_path):
    """Two boxes with the same id (renumbered in memory): both scored; pycocotools indexing
    them under one id would score one box twice and the other not at all."""
    ds = _coco_file(tmp_path, [{"id": 7, "bbox": [10, 10, 40, 30]},
                               {"id": 7, "bbox": [90, 50, 50, 60]}])
    assert sorted(ds.coco.anns) == [1, 2] and len(ds[0].boxes) == 2
    result = _score(ds, [[10, 10, 50, 40], [90, 50, 140, 110]])
    assert result["map"] == pytest.approx(100) and result["ground_truths"] == 2
    assert _score(ds, [[10, 10, 50, 40]])["ap50"] < 51  # half the boxes found: half the recall


def test_float_boxes(tmp_path):
    ds = _coco_file(tmp_path, [{"id": 1, "bbox": [10.25, 20.5, 30.75, 40.125]}])
    assert ds[0].boxes.tolist() == [[10.25, 20.5, 41.0, 60.625]]
    assert ds.coco.anns[1]["area"] == 30.75 * 40.125
    assert _score(ds, ds[0].boxes)["map"] == pytest.approx(100)
    shifted = _score(ds, [[10.25 + 3.075, 20.5, 41.0 + 3.075, 60.625]])  # IoU 0.9 / 1.1 = 0.82
    assert shifted["ap50"] == shifted["ap75"] == pytest.approx(100)
    assert shifted["map"] == pytest.approx(70)  # a hit at IoU 0.5, 0.55, ..., 0.8: 7 of 10
