import json
import os
import shutil

import numpy as np
import pytest

from ssdq.data.dataset import open_dataset, read_image
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


def test_exif_orientation_is_not_applied(tmp_path):
    """As mx.image.imdecode (GluonCV's decoder): the stored pixels, whatever the EXIF tag says."""
    import cv2

    from conftest import add_exif_orientation

    img = np.zeros((100, 200, 3), np.uint8)
    img[:, :50] = 255  # a white band on the left of the stored pixels
    ok, jpeg = cv2.imencode(".jpg", img)
    path = tmp_path / "rotated.jpg"
    path.write_bytes(add_exif_orientation(jpeg.tobytes(), 6))
    assert cv2.imdecode(np.fromfile(str(path), np.uint8), cv2.IMREAD_COLOR).shape == (200, 100, 3)
    decoded = read_image(str(path))
    assert decoded.shape == (100, 200, 3) and decoded[:, :40].mean() > 240 and decoded[:, 60:].mean() < 15


def test_decoded_size_is_checked_against_the_annotation(data_copy):
    from ssdq.data.loader import iterate_batches
    from ssdq.errors import SsdqWarning

    data = json.load(open(_ann(data_copy)))
    first = sorted(data["images"], key=lambda i: i["id"])[0]
    true_width = first["width"]
    first["width"] += 7
    json.dump(data, open(_ann(data_copy), "w"))
    ds = open_dataset(data_copy, "val").subset(2)
    with pytest.raises(SsdqError, match=r"%s decodes as %dx%d but its annotation says %dx%d.*"
                       r"--allow-size-mismatch" % (first["file_name"], true_width, first["height"],
                                                  true_width + 7, first["height"])):
        next(iterate_batches(ds, 2))
    ds = open_dataset(data_copy, "val", allow_size_mismatch=True).subset(2)
    with pytest.warns(SsdqWarning, match="using the decoded size"):
        _, records = next(iterate_batches(ds, 2))
    assert records[0].width == true_width and ds.records[0].width == true_width + 7


def _write_coco_file(path, images, annotations, categories):
    with open(path, "w") as f:
        json.dump({"images": images, "annotations": annotations, "categories": categories}, f)


def test_any_coco_file_png_grayscale_and_sub_folders(tmp_path):
    """A one-category COCO file somewhere else than its images, file_name with sub-folders, a
    PNG and a grayscale JPEG; annotation ids from 0, no area or iscrowd fields."""
    import cv2

    from ssdq.data.loader import iterate_batches

    images_dir = tmp_path / "pictures"
    (images_dir / "street" / "day").mkdir(parents=True)
    colour = np.full((120, 160, 3), 60, np.uint8)
    cv2.rectangle(colour, (20, 30), (90, 80), (0, 0, 255), -1)
    cv2.imwrite(str(images_dir / "street" / "day" / "a.png"), colour)
    cv2.imwrite(str(images_dir / "street" / "b.jpg"), np.full((90, 70), 128, np.uint8))
    ann = tmp_path / "labels" / "cars.json"
    ann.parent.mkdir()
    _write_coco_file(str(ann),
                     [{"id": 0, "file_name": "street/day/a.png", "width": 160, "height": 120},
                      {"id": 1, "file_name": "street/b.jpg", "width": 70, "height": 90}],
                     [{"id": 0, "image_id": 0, "category_id": 3, "bbox": [20, 30, 70, 50]},
                      {"id": 1, "image_id": 1, "category_id": 3, "bbox": [5, 5, 10, 10]}],
                     [{"id": 3, "name": "car"}])
    ds = open_dataset(annotations=str(ann), images=str(images_dir))
    assert ds.classes == ("car",) and [r.image_id for r in ds] == [0, 1]
    assert ds[0].boxes.tolist() == [[20, 30, 90, 80]]
    assert [a["id"] for a in ds.coco.dataset["annotations"]] == [1, 2]  # 0 means "unmatched" to COCOeval
    assert ds.coco.anns[1]["area"] == 3500 and ds.coco.anns[1]["iscrowd"] == 0
    assert ds.describe()["annotation_file"] == str(ann)
    batch, records = next(iterate_batches(ds, 2))
    assert batch.shape == (2, 3, 300, 300) and [r.width for r in records] == [160, 70]
    assert read_image(ds[1].path).shape == (90, 70, 3)
    with pytest.raises(SsdqError, match="image file not found: .*labels/street/day/a.png"):
        open_dataset(annotations=str(ann))  # images default to the file's own folder


def test_voc_folder_without_split_list_uses_every_annotation(tmp_path):
    from ssdq.errors import SsdqNote

    _write_voc(str(tmp_path), {"b": [(1, 0, (1, 1, 50, 50))], "a": [(0, 0, (11, 21, 60, 80))]},
               ("circle", "square"))
    os.unlink(tmp_path / "ImageSets" / "Main" / "test.txt")
    with pytest.warns(SsdqNote, match="no ImageSets/Main/val.txt: using every Annotations/\\*.xml"):
        ds = open_dataset(str(tmp_path), "val")
    assert ds.fmt == "voc" and [os.path.basename(r.path) for r in ds] == ["a.jpg", "b.jpg"]
    assert ds.classes == ("circle", "square")  # the names found, sorted
