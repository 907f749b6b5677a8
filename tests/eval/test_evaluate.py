"""The trained reference model, scored for real on unseen images of the default val split."""
import pytest

from ssdq.data.dataset import open_dataset
from ssdq.eval.evaluate import evaluate_checkpoint, format_result
from ssdq.eval.loop import detect
from ssdq.eval.metrics import COCOEvaluator

from helpers import assert_rates_are_the_runs


@pytest.fixture(scope="module")
def results(fp32_prefix, int8_prefix, tiny_data):
    ds = open_dataset(tiny_data, "val")
    return {p: evaluate_checkpoint(prefix, ds, batch_size=24, progress=False, speed_repeats=2)
            for p, prefix in (("fp32", fp32_prefix), ("int8", int8_prefix))}


def test_reference_model_has_learned_the_task(results):
    assert results["fp32"]["map"] >= 35, results["fp32"]["map"]
    assert results["fp32"]["ap50"] >= 60


def test_int8_keeps_the_accuracy(results):
    assert abs(results["fp32"]["map"] - results["int8"]["map"]) < 2.0


def test_every_image_is_scored_including_the_last_partial_batch(results):
    assert results["fp32"]["images"] == 64  # 64 = 2 x 24 + 16
    assert results["fp32"]["eval_loop"]["images"] == 64


def test_printout_has_the_recipe_block_in_gluoncv_convention_and_both_labelled(results):
    r = results["int8"]
    lines = format_result(r).splitlines()
    assert lines[0] == "~~~~ MeanAP @ IoU=[0.50,0.95] ~~~~"
    assert lines[1] == "%.3f" % r["map_gluoncv"]  # three decimals, as the recipe's 24.059
    assert "GluonCV" in lines[2] and "24.059" in lines[2]
    assert lines[3].startswith("pycocotools convention") and "%.3f" % r["map"] in lines[3]
    assert any(line.startswith("ring") for line in lines)
    # the two conventions score the same detections differently (w/h + 1 moves every box)
    assert r["map_gluoncv"] != r["map"] and abs(r["map_gluoncv"] - r["map"]) < 2


def test_speed_is_measured_not_assumed(results):
    for r in results.values():
        s = r["speed"]
        assert s["batch_size"] == 24 and r["images_per_sec"] == s["images_per_sec"]
        assert_rates_are_the_runs(s, runs=2)  # speed_repeats=2
        assert r["graph"] in ("fp32 (oneDNN-fused)", "int8")
        assert r["eval_loop_images_per_sec"] == r["eval_loop"]["images_per_sec"] > 0


def test_exif_rotated_copy_scores_exactly_as_the_original(fp32_prefix, tiny_data, tmp_path):
    from helpers import add_exif_orientation, write_labelme_export

    original = write_labelme_export(str(tmp_path / "orig"), tiny_data, 6, open_dataset(tiny_data, "val").classes)
    rotated = write_labelme_export(str(tmp_path / "rot"), tiny_data, 6, open_dataset(tiny_data, "val").classes)
    for i, rec in enumerate(open_dataset(annotations=rotated)):
        data = open(rec.path, "rb").read()
        with open(rec.path, "wb") as f:  # orientations 6 and 8 swap width and height
            f.write(add_exif_orientation(data, (6, 8, 3)[i % 3]))
    scores = [evaluate_checkpoint(fp32_prefix, open_dataset(annotations=path), batch_size=3,
                                  progress=False, speed_repeats=0) for path in (original, rotated)]
    assert scores[0]["map"] > 20
    assert "speed" not in scores[0] and "images_per_sec" not in scores[0]  # speed_repeats=0
    for key in ("map", "ap50", "map_gluoncv", "per_class", "detections"):
        assert scores[0][key] == scores[1][key], key


def test_detect_accepts_any_forward(tiny_data):
    import numpy as np

    ds = open_dataset(tiny_data, "val").subset(5)

    def nothing(batch):
        n = len(batch)
        return -np.ones((n, 3, 1)), np.zeros((n, 3, 1)), np.zeros((n, 3, 4))

    metrics, timing = detect(nothing, ds, COCOEvaluator(ds), batch_size=2, progress=False)
    assert metrics["map"] == 0.0 and timing["images"] == 5


VOC_NAMES = ("potted plant", "tv/monitor", "car", "dog", "person", "chair")  # labelme's spellings


@pytest.fixture(scope="module")
def voc_zoo_prefix(tmp_path_factory):
    """gluoncv's ssd_300_vgg16_atrous_voc with random weights, through ssdq's convert --params path."""
    import mxnet as mx
    from gluoncv import model_zoo

    from ssdq.model.convert import convert

    root = tmp_path_factory.mktemp("voczoo")
    net = model_zoo.get_model("ssd_300_vgg16_atrous_voc", pretrained=False, pretrained_base=False)
    net.initialize(mx.init.Xavier())
    net(mx.nd.zeros((1, 3, 300, 300)))
    net.save_parameters(str(root / "random.params"))
    return convert(str(root / "voc"), model="ssd_300_vgg16_atrous_voc",
                   params_file=str(root / "random.params"))


def test_voc_names_as_labelme_spells_them(voc_zoo_prefix, tiny_data, tmp_path):
    from ssdq.errors import SsdqError, SsdqNote

    from helpers import write_labelme_export

    ann = write_labelme_export(str(tmp_path), tiny_data, 2, VOC_NAMES)
    with pytest.raises(
            SsdqError, match=r"dataset class 'potted plant' has \d+ annotations .*\(and 1 more: "
                             r"'tv/monitor'\); map it with --class-map FILE.*\"pottedplant\""):
        evaluate_checkpoint(voc_zoo_prefix, open_dataset(annotations=ann), progress=False)
    class_map = {"potted plant": "pottedplant", "tv/monitor": "tvmonitor"}
    with pytest.warns(SsdqNote, match="_background_"):
        result = evaluate_checkpoint(voc_zoo_prefix, open_dataset(annotations=ann, class_map=class_map),
                                     batch_size=2, progress=False, speed_repeats=0)
    assert result["classes_scored"] == list(VOC_NAMES) and result["model_classes_not_scored"] == 14
    assert set(result["per_class"]) == set(VOC_NAMES) and result["images"] == 2
    assert result["classes_renamed"] == class_map


def test_one_class_coco_file_with_a_png_for_a_model_of_many_classes(voc_zoo_prefix, tmp_path):
    import json

    import cv2
    import numpy as np

    (tmp_path / "img").mkdir()
    for name, shade in (("a.png", 90), ("b.png", 160)):
        img = np.full((240, 320, 3), shade, np.uint8)
        cv2.rectangle(img, (40, 60), (200, 150), (20, 20, 200), -1)
        cv2.imwrite(str(tmp_path / "img" / name), img)
    ann = tmp_path / "cars.json"
    ann.write_text(json.dumps({
        "images": [{"id": 1, "file_name": "a.png", "width": 320, "height": 240},
                   {"id": 2, "file_name": "b.png", "width": 320, "height": 240}],
        "annotations": [{"id": 1, "image_id": 1, "category_id": 3, "bbox": [40, 60, 160, 90],
                         "area": 14400, "iscrowd": 0},
                        {"id": 2, "image_id": 2, "category_id": 3, "bbox": [40, 60, 160, 90],
                         "area": 14400, "iscrowd": 0}],
        "categories": [{"id": 3, "name": "car"}]}))
    result = evaluate_checkpoint(voc_zoo_prefix, open_dataset(annotations=str(ann),
                                                              images=str(tmp_path / "img")),
                                 batch_size=2, progress=False, speed_repeats=0)
    assert result["classes_scored"] == ["car"] and list(result["per_class"]) == ["car"]
    assert result["images"] == 2 and result["model_classes_not_scored"] == 19
    assert "detections of the model's other 19 classes dropped" in format_result(result)


def test_a_one_image_set_costs_one_image(fp32_prefix, tiny_data):
    """At the default batch size of 64 a one-image set binds and times one image: the speed
    line names the batch it timed (once it timed a padded 64 and called it batch 1)."""
    one = open_dataset(tiny_data, "val").subset(1)
    result = evaluate_checkpoint(fp32_prefix, one, batch_size=64, progress=False,
                                 speed_repeats=2)
    assert result["speed"]["batch_size"] == 1 and result["eval_loop"]["images"] == 1
    assert result["speed"]["seconds"] > 0
    assert "batch 1, median of 2" in format_result(result)
    assert "speed" not in evaluate_checkpoint(fp32_prefix, one, progress=False, speed_repeats=0)
