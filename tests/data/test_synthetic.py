import hashlib
import json
import os

import cv2
import numpy as np

from ssdq.data.synthetic import CATEGORIES, draw_image, generate_split


def test_images_are_deterministic_per_seed_and_index():
    a, anns_a = draw_image(7, 3)
    b, anns_b = draw_image(7, 3)
    c, _ = draw_image(7, 4)
    assert np.array_equal(a, b) and anns_a == anns_b
    assert not np.array_equal(a[:100, :100], c[:100, :100])


def test_split_has_coco_layout_and_fields(tmp_path):
    ann_path = generate_split(str(tmp_path), "val", 40, seed=11, progress=False)
    assert ann_path == os.path.join(str(tmp_path), "annotations", "instances_val.json")
    data = json.load(open(ann_path))
    assert [c["id"] for c in data["categories"]] == [c["id"] for c in CATEGORIES]
    assert [c["id"] for c in CATEGORIES] != list(range(1, len(CATEGORIES) + 1))  # non-contiguous
    assert len(data["images"]) == 40
    per_image = {}
    for ann in data["annotations"]:
        per_image.setdefault(ann["image_id"], []).append(ann)
        x, y, w, h = ann["bbox"]
        assert w > 0 and h > 0 and ann["area"] > 0 and ann["iscrowd"] in (0, 1)
        assert ann["area"] <= w * h + 1e-6
    for img in data["images"]:
        assert 360 <= min(img["width"], img["height"]) and max(img["width"], img["height"]) <= 640
        decoded = cv2.imread(os.path.join(str(tmp_path), "val", img["file_name"]))
        assert decoded.shape[:2] == (img["height"], img["width"])
        anns = per_image.get(img["id"], [])
        assert len(anns) <= 10
        for ann in anns:
            x, y, w, h = ann["bbox"]
            assert x >= 0 and y >= 0 and x + w <= img["width"] and y + h <= img["height"]
    counts = [len(v) for v in per_image.values()]
    assert max(counts) >= 5 and min(counts) >= 1
    assert any(a["iscrowd"] for a in data["annotations"])  # occlusion happens
    assert len({a["category_id"] for a in data["annotations"]}) == len(CATEGORIES)


def test_regeneration_gives_identical_bytes(tmp_path):
    def digest(root):
        generate_split(root, "train", 6, seed=5, progress=False)
        h = hashlib.sha256()
        for name in sorted(os.listdir(os.path.join(root, "train"))):
            h.update(open(os.path.join(root, "train", name), "rb").read())
        h.update(open(os.path.join(root, "annotations", "instances_train.json"), "rb").read())
        return h.hexdigest()

    assert digest(str(tmp_path / "a")) == digest(str(tmp_path / "b"))


def test_no_temporary_folders_left(tmp_path):
    generate_split(str(tmp_path), "val", 3, progress=False)
    assert sorted(os.listdir(tmp_path)) == ["annotations", "val"]
