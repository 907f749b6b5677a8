import json
import os
import shutil

import numpy as np
import pytest

from ssdq.data.dataset import check_classes, open_dataset, read_image
from ssdq.errors import SsdqError


@pytest.fixture
def data_copy(tiny_data, tmp_path):
    root = str(tmp_path / "copy")
    shutil.copytree(tiny_data, root)
    return root


def _ann(root, split="val"):
    return os.path.join(root, "annotations", "instances_%s.json" % split)


def test_opens_coco_split_with_contiguous_classes(tiny_data):
    ds = open_dataset(tiny_data, "val")
    assert ds.fmt == "coco" and len(ds) == 64
    assert ds.classes == ("circle", "square", "triangle", "star", "cross", "ring")
    assert ds.category_ids == [1, 3, 6, 8, 11, 13]
    rec = ds[0]
    assert rec.boxes.shape[1] == 4 and (rec.boxes[:, 2] > rec.boxes[:, 0]).all()
    assert rec.labels.max() < 6
    assert read_image(rec.path).shape == (rec.height, rec.width, 3)


def test_missing_annotation_file(tmp_path):
    os.makedirs(tmp_path / "annotations")
    with pytest.raises(SsdqError, match="no split 'val'"):
        open_dataset(str(tmp_path), "val")
    with pytest.raises(SsdqError, match="dataset folder not found"):
        open_dataset(str(tmp_path / "nowhere"), "val")


def test_corrupt_annotation_json(data_copy):
    with open(_ann(data_copy), "w") as f:
        f.write('{"images": [')
    with pytest.raises(SsdqError, match="not valid JSON"):
        open_dataset(data_copy, "val")


def test_annotation_without_images_list(data_copy):
    json.dump({"annotations": [], "categories": []}, open(_ann(data_copy), "w"))
    with pytest.raises(SsdqError, match="no 'images' list"):
        open_dataset(data_copy, "val")


def test_empty_split(data_copy):
    data = json.load(open(_ann(data_copy)))
    data["images"], data["annotations"] = [], []
    json.dump(data, open(_ann(data_copy), "w"))
    with pytest.raises(SsdqError, match="holds no images"):
        open_dataset(data_copy, "val")


def test_missing_image_file(data_copy):
    ds = open_dataset(data_copy, "val")
    os.unlink(ds[5].path)
    with pytest.raises(SsdqError, match="image file not found: .*listed in"):
        open_dataset(data_copy, "val")


def test_truncated_and_garbage_jpeg(data_copy):
    path = open_dataset(data_copy, "val")[0].path
    data = open(path, "rb").read()
    open(path, "wb").write(data[: len(data) // 2])
    with pytest.raises(SsdqError, match="truncated"):
        read_image(path)
    open(path, "wb").write(b"not a jpeg at all" * 10)
    with pytest.raises(SsdqError, match="does not decode"):
        read_image(path)


def test_class_mismatch(tiny_data):
    ds = open_dataset(tiny_data, "val")
    check_classes(ds, ds.classes)
    with pytest.raises(SsdqError, match="model-only: person"):
        check_classes(ds, ("person",) + ds.classes[1:])
    with pytest.raises(SsdqError, match="different order"):
        check_classes(ds, tuple(reversed(ds.classes)))


def _write_voc(root, names_boxes, classes):
    import cv2

    for sub in ("Annotations", "JPEGImages", "ImageSets/Main"):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for name, boxes in names_boxes.items():
        cv2.imwrite(os.path.join(root, "JPEGImages", name + ".jpg"), np.full((200, 300, 3), 90, np.uint8))
        objs = "".join(
            "<object><name>%s</name><difficult>%d</difficult><bndbox><xmin>%d</xmin><ymin>%d</ymin>"
            "<xmax>%d</xmax><ymax>%d</ymax></bndbox></object>" % (classes[c], d, *b)
            for c, d, b in boxes)
        with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
            f.write("<annotation><size><width>300</width><height>200</height></size>%s</annotation>" % objs)
    with open(os.path.join(root, "ImageSets", "Main", "test.txt"), "w") as f:
        f.write("\n".join(names_boxes) + "\n")


def test_voc_format(tmp_path):
    classes = ("circle", "square")
    _write_voc(str(tmp_path), {"a": [(0, 0, (11, 21, 60, 80))], "b": [(1, 1, (1, 1, 50, 50))]}, classes)
    ds = open_dataset(str(tmp_path), "test", classes=classes)
    assert ds.fmt == "voc" and len(ds) == 2
    assert ds[0].boxes.tolist() == [[10, 20, 59, 79]] and ds[1].ignore.tolist() == [True]
    with pytest.raises(SsdqError, match="does not know"):
        open_dataset(str(tmp_path), "test", classes=("circle", "triangle"))
