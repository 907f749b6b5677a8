"""Whether a run reproduced Intel's figures: only GluonCV's ssd_300_vgg16_atrous_coco with its
zoo weights on all of COCO val2017 is comparable; the verdict says by how much it differs."""
import pytest

from ssdq.report.published import (
    FP32_TOLERANCE,
    INT8_TOLERANCE,
    ZOO_WEIGHTS,
    recipe_verdict,
    zoo_weights,
)

VAL2017 = {"format": "coco", "annotation_file": "/data/coco/annotations/instances_val2017.json",
           "split": "val2017", "images": 5000, "classes": ["c%d" % i for i in range(80)]}
ZOO = {"model": "ssd_300_vgg16_atrous_coco", "weights": ZOO_WEIGHTS}


def test_the_recipes_run_within_the_tolerance_is_reproduced():
    verdict = recipe_verdict(ZOO, VAL2017, 24.059 + FP32_TOLERANCE / 2, 23.879 - INT8_TOLERANCE / 2)
    assert verdict["verdict"] == "reproduced", verdict
    assert verdict["tolerance"]["fp32_points"] == FP32_TOLERANCE


def test_a_run_off_the_tolerance_says_by_how_much_and_which_way():
    verdict = recipe_verdict(ZOO, VAL2017, 24.059, 23.5)
    assert verdict["verdict"] == "differs"
    assert verdict["differences"] == {"fp32": 0.0, "int8": pytest.approx(-0.379)}
    assert "int8 -0.379 points (below Intel's 23.879)" in verdict["reason"]
    assert "fp32" not in verdict["reason"]


@pytest.mark.parametrize("meta, dataset, why", [
    ({"model": "ssd_300_vgg16_atrous_reference", "weights": "reference.params"}, VAL2017,
     "the model is ssd_300_vgg16_atrous_reference"),
    ({"model": "ssd_300_vgg16_atrous_coco", "weights": "mine.params", "weights_sha1": "ab12",
      "zoo_sha1": "b302ad8a8660"}, VAL2017, "not GluonCV's model-zoo weights"),
    (ZOO, dict(VAL2017, images=100), "100 of val2017's 5000 images"),
    (ZOO, dict(VAL2017, annotation_file="/x/instances_val.json"), "not COCO val2017"),
])
def test_any_other_run_says_why_it_is_not_comparable(meta, dataset, why):
    verdict = recipe_verdict(meta, dataset, 24.059, 23.879)
    assert verdict["verdict"] == "not comparable" and why in verdict["reason"], verdict


def test_a_weights_file_is_the_zoos_when_its_sha1_is_the_model_stores():
    store = "b302ad8a8660345c368448141d8acf30b5a3801d"
    assert zoo_weights({"weights": "x.params", "weights_sha1": store, "zoo_sha1": store})
    assert not zoo_weights({"weights": "x.params", "weights_sha1": "0" * 40, "zoo_sha1": store})
    assert not zoo_weights({"weights": "x.params"})
