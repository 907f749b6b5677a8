"""Scoring detections made elsewhere: equal to pycocotools where pycocotools is right, equal to
ssdq eval's own figures on its own detections, images matched by id or file name, classes by id
or name, every detection that matches nothing counted, VOC07 against a hand-computed AP."""
import contextlib
import io
import json
import os
import warnings

import numpy as np
import pytest

from ssdq.data.dataset import open_dataset
from ssdq.errors import SsdqError
from ssdq.eval.loop import detect
from ssdq.eval.metrics import COCOEvaluator
from ssdq.eval.score import read_detections, score_detections


def _write(path, data):
    with open(path, "w") as f:
        json.dump(data, f)
    return str(path)


def _score(path, dataset):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = score_detections(read_detections(path), dataset)
    return result, [str(w.message) for w in caught]


@pytest.fixture(scope="module")
def own_detections(fp32_prefix, tiny_data, tmp_path_factory):
    """ssdq's own detections of the tiny val split, as a COCO results list, and its metrics."""
    from ssdq.backends.runners import prepare
    from ssdq.model.checkpoint import load_checkpoint

    dataset = open_dataset(tiny_data, "val")
    ckpt = load_checkpoint(fp32_prefix)
    evaluator = COCOEvaluator(dataset)
    metrics, _ = detect(prepare("mxnet", ckpt, "fp32", 16, "end_to_end"), dataset, evaluator,
                        16, progress=False, transform=ckpt.input_format)
    path = _write(tmp_path_factory.mktemp("dets") / "detections.json", evaluator.results())
    return path, metrics, dataset


def test_own_detections_score_as_ssdq_eval_scored_them(own_detections):
    path, metrics, dataset = own_detections
    result, notes = _score(path, dataset)
    assert result["images_matched_by"] == "id" and result["classes_matched_by"] == "id"
    for key in ("map", "ap50", "ap75", "map_gluoncv", "ground_truths", "detections"):
        assert result[key] == metrics[key], key
    assert result["coco_stats"] == metrics["coco_stats"] and len(result["coco_stats"]) == 12
    assert result["detections_unmatched"] == {"image": 0, "class": 0} and not notes


def test_equals_pycocotools_on_a_results_file(own_detections):
    """pycocotools on the ground-truth file and the results file, as a user would run it."""
    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval

    path, _, dataset = own_detections
    with contextlib.redirect_stdout(io.StringIO()):
        gt = COCO(dataset.annotation_file)
        ev = COCOeval(gt, gt.loadRes(path), "bbox")
        ev.evaluate()
        ev.accumulate()
        ev.summarize()
    result, _ = _score(path, dataset)
    np.testing.assert_allclose(result["coco_stats"], ev.stats * 100, rtol=0, atol=1e-6)


def test_other_ids_are_matched_by_file_name_and_names(own_detections, tmp_path):
    """A dataset-shaped file of another tool: its own image ids (from 0, in another order) and
    category ids, with file names and category names saying what they are."""
    path, metrics, dataset = own_detections
    detections = json.load(open(path))
    records = list(reversed(dataset.records))
    new_image = {rec.image_id: k for k, rec in enumerate(records)}
    names = dict(zip(dataset.category_ids, dataset.classes))
    new_cat = {c: 100 + k for k, c in enumerate(reversed(dataset.category_ids))}
    other = {"images": [{"id": k, "file_name": "JPEGImages/" + os.path.basename(rec.path)}
                        for k, rec in enumerate(records)],
             "categories": [{"id": new_cat[c], "name": names[c]} for c in dataset.category_ids],
             "annotations": [dict(d, image_id=new_image[d["image_id"]],
                                  category_id=new_cat[d["category_id"]]) for d in detections]}
    result, notes = _score(_write(tmp_path / "other.json", other), dataset)
    assert result["images_matched_by"] == "file_name"
    assert result["classes_matched_by"] == "name"
    assert result["map"] == metrics["map"] and not notes
    # a results list naming its classes and its images by file name scores the same
    stems = {rec.image_id: os.path.basename(rec.path) for rec in dataset.records}
    named = [dict(d, image_id=stems[d["image_id"]], category_id=names[d["category_id"]])
             for d in detections]
    result, _ = _score(_write(tmp_path / "named.json", named), dataset)
    assert result["map"] == metrics["map"]
    assert (result["images_matched_by"], result["classes_matched_by"]) == ("file_name", "name")


def test_every_detection_that_matches_nothing_is_counted_and_said(own_detections, tmp_path):
    path, metrics, dataset = own_detections
    detections = json.load(open(path))
    extra = [dict(detections[0], image_id=987654), dict(detections[0], image_id=987655),
             dict(detections[0], category_id=4242), {"image_id": 1, "bbox": [1, 2, 3]}]
    result, notes = _score(_write(tmp_path / "extra.json", detections + extra), dataset)
    assert result["detections_unmatched"] == {"image": 2, "class": 1}
    assert result["detections_malformed"] == 1
    assert result["detections"] == len(detections) and result["map"] == metrics["map"]
    assert any("2 detections match no image" in n for n in notes)
    assert any("1 detections match no class" in n for n in notes)
    assert any("1 entries" in n and "not detections" in n for n in notes)


def test_files_that_are_not_detections_are_one_line_errors(own_detections, tmp_path):
    _, _, dataset = own_detections
    with pytest.raises(SsdqError, match="ground truth, not detections"):
        read_detections(dataset.annotation_file)
    with pytest.raises(SsdqError, match="neither a COCO results list"):
        read_detections(_write(tmp_path / "obj.json", {"results": []}))
    with pytest.raises(SsdqError, match="none of its 2 entries is a detection"):
        read_detections(_write(tmp_path / "bad.json", [{"image_id": 1}, 3]))
    nowhere = [{"image_id": 10**9, "category_id": 1, "bbox": [0, 0, 5, 5], "score": 0.5}]
    with pytest.raises(SsdqError, match="none of the 1 detections"):
        score_detections(read_detections(_write(tmp_path / "nowhere.json", nowhere)), dataset)


def _voc(root, objects):
    """A VOC folder without images: {name: [(class, x1, y1, x2, y2, difficult)]} (1-based)."""
    for sub in ("Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for name, objs in objects.items():
        xml = ["<annotation><filename>%s.jpg</filename><size><width>200</width>"
               "<height>100</height><depth>3</depth></size>" % name]
        for cls, x1, y1, x2, y2, difficult in objs:
            xml.append("<object><name>%s</name><difficult>%d</difficult><bndbox><xmin>%d</xmin>"
                       "<ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object>"
                       % (cls, difficult, x1, y1, x2, y2))
        with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
            f.write("".join(xml) + "</annotation>")
    with open(os.path.join(root, "ImageSets", "Main", "test.txt"), "w") as f:
        f.write("".join(n + "\n" for n in objects))
    return str(root)


def test_voc07_equals_a_hand_computed_11_point_ap(tmp_path):
    root = _voc(tmp_path / "voc", {"a": [("cat", 11, 11, 50, 50, 0), ("cat", 101, 11, 150, 60, 1)],
                                   "b": [("cat", 21, 21, 60, 60, 0), ("dog", 101, 21, 180, 90, 0)]})
    dataset = open_dataset(root, "test", "voc", require_images=False)
    gt = {rec.image_id: rec for rec in dataset.records}

    def box(image, k):  # a ground-truth box as x, y, w, h
        x1, y1, x2, y2 = gt[image].boxes[k]
        return [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
    a, b = (next(r.image_id for r in dataset.records if r.path.endswith(n + ".jpg"))
            for n in ("a", "b"))
    dets = [("a", "cat", box(a, 0), 0.9),           # hit
            ("b", "cat", [150, 60, 20, 20], 0.8),   # false positive
            ("b", "cat", box(b, 0), 0.7),           # hit
            ("a", "cat", box(a, 1), 0.6),           # on a difficult object: neither
            ("b", "dog", box(b, 1), 0.5)]           # hit
    path = _write(tmp_path / "dets.json", [{"image_id": i, "category_id": c, "bbox": bb,
                                            "score": s} for i, c, bb, s in dets])
    result, _ = _score(path, dataset)
    # cat: precision 1, 1/2, 2/3 at recall 1/2, 1/2, 1; dog: 1 at recall 1
    cat_11 = (6 * 1.0 + 5 * (2 / 3)) / 11
    cat_all = 0.5 * 1.0 + 0.5 * (2 / 3)
    assert result["per_class"]["cat"] == pytest.approx(100 * cat_11, abs=1e-4)
    assert result["voc07_map"] == pytest.approx(100 * (cat_11 + 1) / 2, abs=1e-4)
    assert result["voc07_map_all_points"] == pytest.approx(100 * (cat_all + 1) / 2, abs=1e-4)
    assert result["images_matched_by"] == "file_name" and result["classes_matched_by"] == "name"
    assert result["ground_truths"] == 3 and result["ground_truths_ignored"] == 1


def test_cli_eval_saves_detections_that_ssdq_score_scores_the_same(int8_prefix, tiny_data,
                                                                    tmp_path):
    from helpers import assert_clean_error, run_cli

    dets, eval_json = str(tmp_path / "dets.json"), str(tmp_path / "eval.json")
    proc = run_cli("eval", "--model-prefix", int8_prefix, "--data-root", tiny_data, "--quiet",
                   "--save-detections", dets, "--out", eval_json, "--batch-size", "16")
    assert proc.returncode == 0, proc.stderr
    assert "median of the eval loop's" in proc.stdout  # the speed line costs nothing more
    evaluated = json.load(open(eval_json))
    assert evaluated["speed"]["source"] == "eval loop"
    assert evaluated["speed"]["repeats"] == evaluated["eval_loop"]["images"] // 16 - 1
    out = str(tmp_path / "reports" / "score.json")
    proc = run_cli("score", "--detections", dets, "--data-root", tiny_data, "--out", out)
    assert proc.returncode == 0, proc.stderr
    scored = json.load(open(out))
    assert scored["map"] == evaluated["map"] and scored["map_gluoncv"] == evaluated["map_gluoncv"]
    assert os.path.isfile(out[:-len(".json")] + ".md")
    assert "pycocotools: mAP@[.5:.95] %.3f" % evaluated["map"] in proc.stdout
    # detections are not needed to have images: the ground truth alone is read
    bad = _write(tmp_path / "bad.json", {"images": []})
    assert_clean_error(run_cli("score", "--detections", bad, "--data-root", tiny_data),
                       "neither a COCO results list")
    assert_clean_error(run_cli("score", "--detections", str(tmp_path / "missing.json"),
                               "--data-root", tiny_data), "missing.json")
