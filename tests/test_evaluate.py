"""The trained reference model, scored for real on unseen images of the default val split."""
import pytest

from ssdq.data.dataset import open_dataset
from ssdq.evaluate import detect, evaluate_checkpoint, format_result
from ssdq.metrics import COCOEvaluator


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


def test_printout_has_the_recipe_block(results):
    lines = format_result(results["int8"]).splitlines()
    assert lines[0] == "~~~~ MeanAP @ IoU=[0.50,0.95] ~~~~"
    assert float(lines[1]) == pytest.approx(results["int8"]["map"], abs=0.05)
    assert any(line.startswith("ring") for line in lines)


def test_speed_is_measured_not_assumed(results):
    for r in results.values():
        s = r["speed"]
        assert s["images_per_sec_min"] <= s["images_per_sec"] <= s["images_per_sec_max"]
        assert r["graph"] in ("fp32 (oneDNN-fused)", "int8")


def test_detect_accepts_any_forward(tiny_data):
    import numpy as np

    ds = open_dataset(tiny_data, "val").subset(5)

    def nothing(batch):
        n = len(batch)
        return -np.ones((n, 3, 1)), np.zeros((n, 3, 1)), np.zeros((n, 3, 4))

    metrics, timing = detect(nothing, ds, COCOEvaluator(ds), batch_size=2, progress=False)
    assert metrics["map"] == 0.0 and timing["images"] == 5
