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

    from helpers import add_exif_orientation

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


def _coco_boxes_of(root, count, split="val"):
    """{file stem: [[x1, y1, x2, y2], ...]} of the first ``count`` images of a COCO-layout split."""
    data = json.load(open(_ann(root, split)))
    images = sorted(data["images"], key=lambda i: i["id"])[:count]
    out = {os.path.splitext(os.path.basename(i["file_name"]))[0]: [] for i in images}
    stem = {i["id"]: os.path.splitext(os.path.basename(i["file_name"]))[0] for i in images}
    for a in data["annotations"]:
        if a["image_id"] in stem:
            x, y, w, h = a["bbox"]
            out[stem[a["image_id"]]].append([x, y, x + w, y + h])
    return out, {stem[i["id"]]: (i["width"], i["height"]) for i in images}


def test_labelme2voc_export_empty_tags_float_coordinates_no_split_list(tiny_data, tmp_path):
    """labelme2voc writes <difficult/>, <truncated/>, <pose/> empty (0), float coordinates and no
    ImageSets/: read as it is, every box kept, none difficult."""
    from ssdq.errors import SsdqNote

    from helpers import write_labelme_voc_export

    root = write_labelme_voc_export(str(tmp_path / "voc"), tiny_data, 5)
    xml = open(sorted(glob_xml(root))[0]).read()
    assert "<difficult/>" in xml and "<truncated/>" in xml and ".5</xmin>" in xml
    with pytest.warns(SsdqNote, match="no ImageSets/Main/val.txt"):
        ds = open_dataset(root, "val")
    expected, sizes = _coco_boxes_of(tiny_data, 5)
    assert ds.fmt == "voc" and len(ds) == 5
    for rec in ds:
        stem = os.path.splitext(os.path.basename(rec.path))[0]
        # x + 0.5 written, VOC's 1-based index -1: the COCO box - 0.5
        assert sorted(rec.boxes.tolist()) == sorted([[v - 0.5 for v in b] for b in expected[stem]])
        assert not rec.ignore.any() and (rec.width, rec.height) == sizes[stem]
    assert sum(len(r.boxes) for r in ds) == sum(len(b) for b in expected.values()) == 28
    assert ds.describe()["sizes_read_from_images"] == 0


def glob_xml(root):
    import glob

    return glob.glob(os.path.join(root, "Annotations", "*.xml"))


def test_labelme2voc_export_evaluates_through_the_cli(fp32_prefix, tiny_data, tmp_path):
    from helpers import run_cli, write_labelme_voc_export

    root = write_labelme_voc_export(str(tmp_path / "voc"), tiny_data, 8)
    out = tmp_path / "result.json"
    proc = run_cli("eval", "--model-prefix", fp32_prefix, "--data-root", root, "--batch-size", "4",
                   "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "ssdq: note: %s has no ImageSets/Main/val.txt" % root in proc.stderr
    assert "Traceback" not in proc.stderr and "NoneType" not in proc.stderr
    result = json.load(open(out))
    lines = proc.stdout.splitlines()
    assert lines[0] == "~~~~ VOC07 mAP @ IoU=0.50 (11-point) ~~~~"
    assert lines[1] == "%.1f" % result["map"] and result["map"] > 50, proc.stdout
    assert result["metric"] == "voc07" and result["images"] == 8
    objects = sum(len(b) for b in _coco_boxes_of(tiny_data, 8)[0].values())
    assert result["ground_truths"] == objects == 47 and result["ground_truths_ignored"] == 0


def test_voc_file_without_size_gets_the_decoded_size(tiny_data, tmp_path):
    """No <size> (some tools leave it out, and an image without objects may have nothing else):
    the decoded image's size, said once in a note; an image that cannot give it is an error."""
    from ssdq.errors import SsdqNote

    from helpers import write_labelme_voc_export

    root = write_labelme_voc_export(str(tmp_path / "voc"), tiny_data, 3, size=False)
    stems = sorted(os.path.splitext(os.path.basename(p))[0] for p in glob_xml(root))
    with open(os.path.join(root, "Annotations", stems[0] + ".xml"), "w") as f:
        f.write("<annotation><filename>%s.jpg</filename></annotation>" % stems[0])  # no objects
    with pytest.warns(SsdqNote) as notes:
        ds = open_dataset(root, "val")
    messages = [str(n.message) for n in notes]
    assert messages[1] == ("3 of 3 annotation files in %s have no <size> (width, height): using "
                           "their images' decoded size (e.g. %s.xml)"
                           % (os.path.join(root, "Annotations"), stems[0])), messages
    _, sizes = _coco_boxes_of(tiny_data, 3)
    assert [(r.width, r.height) for r in ds] == [sizes[s] for s in stems]
    assert [len(r.boxes) for r in ds][0] == 0 and ds.describe()["sizes_read_from_images"] == 3

    image = os.path.join(root, "JPEGImages", stems[1] + ".jpg")
    xml = os.path.join(root, "Annotations", stems[1] + ".xml")
    data = open(image, "rb").read()
    open(image, "wb").write(data[: len(data) // 2])
    with pytest.warns(SsdqNote), pytest.raises(SsdqError) as exc:
        open_dataset(root, "val")
    assert str(exc.value) == ("annotation file %s has no <size> (width, height), and its image "
                              "cannot give it: corrupt JPEG %s: the file is truncated" % (xml, image))
    os.unlink(image)
    with pytest.warns(SsdqNote), pytest.raises(SsdqError) as exc:
        open_dataset(root, "val")
    assert str(exc.value) == ("annotation file %s has no <size> (width, height), and its image "
                              "%s, which would give it, is not on disk" % (xml, image))


def test_listed_image_without_annotation_file_is_an_error(tmp_path):
    from helpers import make_voc_folder

    root = make_voc_folder(str(tmp_path / "voc"))
    os.unlink(os.path.join(root, "Annotations", "000002.xml"))
    with pytest.raises(SsdqError) as exc:
        open_dataset(root, "val")
    assert str(exc.value) == "annotation file not found: %s (listed in %s)" % (
        os.path.join(root, "Annotations", "000002.xml"),
        os.path.join(root, "ImageSets", "Main", "val.txt"))


@pytest.mark.parametrize("old, new, message", [
    ("<xmin>11</xmin>", "<xmin>eleven</xmin>",
     ": object 1 (circle) has <xmin>eleven</xmin>: expected a number (pixels)"),
    ("<ymax>80</ymax>", "", ": object 1 (circle) has no <bndbox><ymax>"),
    ("<xmax>60</xmax>", "<xmax> </xmax>", ": object 1 (circle) has no <bndbox><xmax>"),
    ("<name>circle</name>", "", ": object 1 has no <name> (its class)"),
    ("<name>circle</name>", "<name/>", ": object 1 has no <name> (its class)"),
    ("<bndbox><xmin>11</xmin><ymin>21</ymin><xmax>60</xmax><ymax>80</ymax></bndbox>", "",
     ": object 1 (circle) has no <bndbox>"),
    ("<difficult>0</difficult>", "<difficult>yes</difficult>",
     ": object 1 (circle) has <difficult>yes</difficult>: expected 0 or 1 (or empty, 0)"),
    ("<width>300</width>", "<width>wide</width>",
     " has <size><width>wide</width>: expected a whole number of pixels"),
    ("<height>200</height>", "<height>-200</height>",
     " has <size><height>-200</height>: expected a whole number of pixels"),
    ("</annotation>", "", " is not valid XML (no element found: line 1, column "),
])
def test_malformed_voc_elements_are_named(tmp_path, old, new, message):
    _write_voc(str(tmp_path), {"a": [(0, 0, (11, 21, 60, 80))]}, ("circle", "square"))
    xml = os.path.join(str(tmp_path), "Annotations", "a.xml")
    text = open(xml).read()
    assert old in text
    open(xml, "w").write(text.replace(old, new))
    with pytest.raises(SsdqError) as exc:
        open_dataset(str(tmp_path), "test")
    assert str(exc.value).startswith("annotation file %s%s" % (xml, message)), str(exc.value)
    assert "\n" not in str(exc.value) and "NoneType" not in str(exc.value)


def test_voc_empty_difficult_is_0_and_1_is_difficult(tmp_path):
    _write_voc(str(tmp_path), {"a": [(0, 0, (11, 21, 60, 80)), (1, 1, (1, 1, 50, 50))]},
               ("circle", "square"))
    xml = os.path.join(str(tmp_path), "Annotations", "a.xml")
    text = open(xml).read()
    open(xml, "w").write(text.replace("<difficult>0</difficult>", "<difficult/>", 1))
    ds = open_dataset(str(tmp_path), "test")
    assert ds[0].ignore.tolist() == [False, True] and ds[0].boxes.tolist()[0] == [10, 20, 59, 79]


def _one_image_coco(tmp_path, edit=None):
    """A one-image COCO file beside its PNG, after ``edit(data)``; returns its path."""
    import cv2

    cv2.imwrite(str(tmp_path / "a.png"), np.full((120, 160, 3), 60, np.uint8))
    data = {"images": [{"id": 0, "file_name": "a.png", "width": 160, "height": 120}],
            "annotations": [{"id": 1, "image_id": 0, "category_id": 3, "bbox": [20, 30, 70, 50]}],
            "categories": [{"id": 3, "name": "car"}]}
    if edit:
        edit(data)
    path = str(tmp_path / "ann.json")
    with open(path, "w") as f:
        json.dump(data, f)
    return path


def _set(where, key, value):
    def edit(data):
        entry = data[where][0]
        if value is KeyError:
            del entry[key]
        else:
            entry[key] = value
    return edit


@pytest.mark.parametrize("edit, message", [
    (_set("annotations", "bbox", [20, 30, 70]),
     "annotation #1 (id 1) has bbox [20, 30, 70]: expected 4 numbers [x, y, width, height] in pixels"),
    (_set("annotations", "bbox", [20, "30", 70, 50]),
     "annotation #1 (id 1) has bbox [20, \"30\", 70, 50]: expected 4 numbers [x, y, width, height] in pixels"),
    (_set("annotations", "bbox", None),
     "annotation #1 (id 1) has bbox null: expected 4 numbers [x, y, width, height] in pixels"),
    (_set("annotations", "bbox", KeyError),
     "annotation #1 (id 1) has no 'bbox': expected 4 numbers [x, y, width, height] in pixels"),
    (_set("annotations", "image_id", KeyError),
     "annotation #1 (id 1) has no 'image_id' (the id of its image)"),
    (_set("annotations", "category_id", None),
     "annotation #1 (id 1) has category_id null: expected an integer or a string"),
    (_set("annotations", "iscrowd", 2), "annotation #1 (id 1) has iscrowd 2: expected 0 or 1"),
    (_set("annotations", "area", "big"),
     "annotation #1 (id 1) has area \"big\": expected a number (pixels)"),
    (lambda data: data["annotations"].append(5), "annotation #2 is 5, not an object"),
    (_set("images", "width", KeyError), "image 0 has no 'width' (its width in pixels)"),
    (_set("images", "height", 0.5), "image 0 has height 0.5: expected a whole number of pixels"),
    (_set("images", "height", "120"), "image 0 has height \"120\": expected a whole number of pixels"),
    (_set("images", "file_name", KeyError),
     "image 0 has no 'file_name': expected its path under the image folder (a string)"),
    (_set("images", "id", KeyError), "image #1 has no 'id'"),
    (_set("images", "id", 1.5), "image #1 has id 1.5: expected an integer or a string"),
    (lambda data: data["images"].append(dict(data["images"][0])),
     "images #1 and #2 have the same id 0: each image needs its own"),
    (lambda data: data["images"].append(dict(data["images"][0], id="7")),
     "image ids mix integers (e.g. 0) and strings (e.g. \"7\"): mixed id types are a corrupt "
     "file; write every id as the same type"),
    (_set("categories", "name", KeyError), "category 3 has no 'name': expected its name (a string)"),
    (_set("categories", "id", None), "category #1 has id null: expected an integer or a string"),
])
def test_malformed_coco_entries_are_named(tmp_path, edit, message):
    path = _one_image_coco(tmp_path, edit)
    with pytest.raises(SsdqError) as exc:
        open_dataset(annotations=path)
    assert str(exc.value) == "annotation file %s: %s" % (path, message)


def test_well_formed_one_image_coco_file(tmp_path):
    ds = open_dataset(annotations=_one_image_coco(tmp_path))
    assert ds[0].boxes.tolist() == [[20, 30, 90, 80]] and (ds[0].width, ds[0].height) == (160, 120)


def _anns(count, **fields):
    return [dict({"id": k + 1, "image_id": 0, "category_id": 3, "bbox": [20, 30, 70, 50]}, **fields)
            for k in range(count)]


@pytest.mark.parametrize("image_ids, category_ids, message", [
    (("2299", ["2299"] + [2299] * 13), None,
     "13 of 14 annotations have an image_id that matches no image, and 13 of them are an image's "
     "id written as another type (image_id 2299, an integer, for image \"2299\", a string): "
     "mixed id types are a corrupt file, not a subset"),
    ((5, ["5", 5, 999]), None,
     "2 of 3 annotations have an image_id that matches no image, and 1 of them are an image's "
     "id written as another type (image_id \"5\", a string, for image 5, an integer): "
     "mixed id types are a corrupt file, not a subset"),
    (None, (3, [3, "3"]),
     "1 of 2 annotations have a category_id that matches no category, and 1 of them are a "
     "category's id written as another type (category_id \"3\", a string, for category 3, an "
     "integer): mixed id types are a corrupt file, not a subset"),
])
def test_coco_id_type_mixup_is_an_error(tmp_path, image_ids, category_ids, message):
    def edit(data):
        if image_ids:
            data["images"][0]["id"] = image_ids[0]
            data["annotations"] = [dict(a, image_id=i) for a, i in
                                   zip(_anns(len(image_ids[1])), image_ids[1])]
        if category_ids:
            data["categories"][0]["id"] = category_ids[0]
            data["annotations"] = [dict(a, category_id=c) for a, c in
                                   zip(_anns(len(category_ids[1])), category_ids[1])]

    path = _one_image_coco(tmp_path, edit)
    with pytest.raises(SsdqError) as exc:
        open_dataset(annotations=path)
    assert str(exc.value) == "annotation file %s: %s" % (path, message)


def test_coco_id_type_mixup_through_the_cli(fp32_prefix, tiny_data, tmp_path):
    """String image ids, but one image's annotations say its id as an integer: exit 2, one line
    (today's ssdq exited 0, those ground truths silently gone)."""
    from helpers import assert_clean_error, run_cli, write_labelme_export

    path = write_labelme_export(str(tmp_path), tiny_data, 4, open_dataset(tiny_data, "val").classes)
    data = json.load(open(path))
    for img in data["images"]:
        img["id"] = str(img["id"])
    for ann in data["annotations"]:
        ann["image_id"] = str(ann["image_id"]) if ann["image_id"] else 0  # image "0": ints
    json.dump(data, open(path, "w"))
    wrong = sum(a["image_id"] == 0 for a in data["annotations"])
    assert wrong == 5
    proc = run_cli("eval", "--model-prefix", fp32_prefix, "--annotations", path, "--quiet")
    assert_clean_error(proc)
    assert proc.stderr.strip().splitlines()[-1] == (
        "ssdq: error: annotation file %s: 5 of %d annotations have an image_id that matches no "
        "image, and 5 of them are an image's id written as another type (image_id 0, an "
        "integer, for image \"0\", a string): mixed id types are a corrupt file, not a subset"
        % (path, len(data["annotations"])))


def test_orphan_annotations_are_counted_and_evaluation_runs(fp32_prefix, tiny_data, tmp_path):
    """Annotations of images the file does not list (another tool filtered the images, not the
    annotations): a warning with the count, the count in describe(), the score unchanged."""
    from ssdq.errors import SsdqWarning
    from ssdq.eval.evaluate import evaluate_checkpoint

    from helpers import write_labelme_export

    classes = open_dataset(tiny_data, "val").classes
    clean = write_labelme_export(str(tmp_path / "clean"), tiny_data, 4, classes)
    path = write_labelme_export(str(tmp_path / "filtered"), tiny_data, 4, classes)
    data = json.load(open(path))
    total = len(data["annotations"]) + 3
    data["annotations"] += [dict(a, image_id=999 + k, id=1000 + k)
                            for k, a in enumerate(data["annotations"][:3])]
    json.dump(data, open(path, "w"))
    with pytest.warns(SsdqWarning) as caught:
        ds = open_dataset(annotations=path)
    assert [str(w.message) for w in caught] == [
        "annotation file %s: 3 of %d annotations have an image_id that matches no image (e.g. "
        "999): left out (a file another tool filtered?)" % (path, total)]
    assert ds.describe()["orphan_annotations"] == 3
    assert open_dataset(annotations=clean).describe()["orphan_annotations"] == 0
    results = [evaluate_checkpoint(fp32_prefix, d, batch_size=4, progress=False, speed_repeats=0)
               for d in (open_dataset(annotations=clean), ds)]
    assert results[1]["dataset"]["orphan_annotations"] == 3 and results[1]["images"] == 4
    assert results[0]["map"] > 20 and results[1]["map"] == results[0]["map"]
    scored = sum(not a["iscrowd"] for a in data["annotations"][:total - 3])
    assert results[1]["ground_truths"] == results[0]["ground_truths"] == scored


def test_unknown_categories_and_degenerate_boxes_are_counted(tmp_path):
    from ssdq.errors import SsdqWarning

    def edit(data):
        data["annotations"] = _anns(5)
        data["annotations"][1]["category_id"] = 99
        data["annotations"][2]["bbox"] = [20, 30, 0, 50]
        data["annotations"][3]["bbox"] = [20, 30, 70, -1]

    path = _one_image_coco(tmp_path, edit)
    with pytest.warns(SsdqWarning) as caught:
        ds = open_dataset(annotations=path)
    assert [str(w.message) for w in caught] == [
        "annotation file %s: 1 of 5 annotations have a category_id that matches no category "
        "(e.g. 99): left out, not scored" % path,
        "annotation file %s: 2 of 5 annotations have a bbox of zero or negative width or height (e.g. "
        "annotation #3, bbox [20, 30, 0, 50]): left out of the records; COCO scoring keeps them, "
        "as pycocotools does, and no detection can match them" % path]
    assert len(ds[0].boxes) == 2
    assert {k: v for k, v in ds.describe().items() if k.endswith(("annotations", "boxes"))} == {
        "orphan_annotations": 0, "unknown_category_annotations": 1, "degenerate_boxes": 2}
