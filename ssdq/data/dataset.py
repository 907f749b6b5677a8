"""Read COCO-format and VOC-format detection datasets into one record list, checking them first.

Every check that can fail on a user's data fails here, with a one-line ``SsdqError`` that names
the file: a missing or corrupt annotation file, an empty split, a listed image that is not on
disk, a JPEG that does not decode. Images are only decoded when read, so opening COCO val2017 is
fast; ``read_image`` refuses truncated JPEGs that OpenCV would silently half-decode.

Class order is the model's contiguous index: COCO categories sorted by id (as gluoncv does), VOC
classes as the caller gives them.
"""
import contextlib
import io
import json
import os
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import cv2
import numpy as np

from ..errors import SsdqError


@dataclass
class ImageRecord:
    image_id: int
    path: str
    width: int
    height: int
    boxes: np.ndarray  # (N, 4) float32, x1 y1 x2 y2 in pixels
    labels: np.ndarray  # (N,) int64, contiguous class index
    ignore: np.ndarray  # (N,) bool: COCO iscrowd / VOC difficult


class DetectionDataset:
    """A split as a list of ``ImageRecord``; ``fmt`` is ``"coco"`` or ``"voc"``."""

    fmt = None

    def __init__(self, root, split, classes, records):
        self.root, self.split = root, split
        self.classes = tuple(classes)
        self.records = records

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return self.records[i]

    def subset(self, count):
        """The first ``count`` images (a deterministic prefix), as a dataset of the same kind."""
        clone = object.__new__(type(self))
        clone.__dict__.update(self.__dict__)
        clone.records = self.records[:count]
        return clone

    def shard(self, start, stop):
        """Images [start, stop) as a dataset of the same kind (a shard of a sharded evaluation)."""
        clone = self.subset(len(self))
        clone.records = self.records[start:stop]
        return clone

    def describe(self):
        return {"format": self.fmt, "root": os.path.abspath(self.root), "split": self.split,
                "images": len(self), "classes": list(self.classes)}


class CocoDataset(DetectionDataset):
    fmt = "coco"

    def __init__(self, root, split, annotation_file, coco, category_ids, records):
        names = [coco.cats[c]["name"] for c in category_ids]
        super().__init__(root, split, names, records)
        self.annotation_file = annotation_file
        self.coco = coco
        self.category_ids = category_ids  # contiguous index -> COCO category id


class VocDataset(DetectionDataset):
    fmt = "voc"


def coco_annotation_path(root, split):
    return os.path.join(root, "annotations", "instances_%s.json" % split)


def detect_format(root, split):
    if os.path.isfile(coco_annotation_path(root, split)):
        return "coco"
    if os.path.isfile(os.path.join(root, "ImageSets", "Main", split + ".txt")):
        return "voc"
    if not os.path.isdir(root):
        raise SsdqError("dataset folder not found: %s" % root)
    raise SsdqError("no split %r in %s: expected annotations/instances_%s.json (COCO) or "
                    "ImageSets/Main/%s.txt (VOC)" % (split, root, split, split))


def open_dataset(root, split, fmt="auto", classes=None):
    """Open a split of a COCO- or VOC-format dataset (``fmt="auto"`` looks at the layout)."""
    if fmt == "auto":
        fmt = detect_format(root, split)
    if fmt == "coco":
        return load_coco(root, split)
    if fmt == "voc":
        if classes is None:
            raise SsdqError("a VOC-format dataset needs the class list (taken from the model)")
        return load_voc(root, split, classes)
    raise SsdqError("unknown dataset format %r (coco, voc or auto)" % fmt)


def _load_json(path):
    if not os.path.isfile(path):
        raise SsdqError("annotation file not found: %s" % path)
    try:
        with open(path) as f:
            return json.load(f)
    except (ValueError, UnicodeDecodeError) as exc:
        raise SsdqError("annotation file %s is not valid JSON (%s)" % (path, exc)) from None


def load_coco(root, split):
    from pycocotools.coco import COCO

    ann_file = coco_annotation_path(root, split)
    data = _load_json(ann_file)
    if not isinstance(data, dict):
        raise SsdqError("annotation file %s is not a COCO instances file" % ann_file)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise SsdqError("annotation file %s has no %r list: not a COCO instances file"
                            % (ann_file, key))
    if not data["images"]:
        raise SsdqError("split %r of %s holds no images" % (split, root))
    if not data["categories"]:
        raise SsdqError("annotation file %s lists no categories" % ann_file)
    coco = COCO()
    coco.dataset = data
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
            coco.createIndex()
    except (KeyError, TypeError) as exc:
        raise SsdqError("annotation file %s is malformed (missing field %s)" % (ann_file, exc)) from None
    category_ids = sorted(coco.cats)
    index_of = {cat: i for i, cat in enumerate(category_ids)}
    image_dir = os.path.join(root, split)
    records = []
    for image_id in sorted(coco.imgs):
        info = coco.imgs[image_id]
        boxes, labels, ignore = [], [], []
        for ann in coco.imgToAnns.get(image_id, []):
            x, y, w, h = ann["bbox"]
            if w <= 0 or h <= 0 or ann["category_id"] not in index_of:
                continue
            boxes.append([x, y, x + w, y + h])
            labels.append(index_of[ann["category_id"]])
            ignore.append(bool(ann.get("iscrowd", 0)))
        records.append(ImageRecord(
            image_id=int(image_id), path=os.path.join(image_dir, info["file_name"]),
            width=int(info["width"]), height=int(info["height"]),
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(labels, np.int64), ignore=np.asarray(ignore, bool)))
    _check_files(records, ann_file)
    return CocoDataset(root, split, ann_file, coco, category_ids, records)


def load_voc(root, split, classes):
    list_file = os.path.join(root, "ImageSets", "Main", split + ".txt")
    if not os.path.isfile(list_file):
        raise SsdqError("VOC split list not found: %s" % list_file)
    with open(list_file) as f:
        names = [line.strip().split()[0] for line in f if line.strip()]
    if not names:
        raise SsdqError("split %r of %s holds no images" % (split, root))
    index_of = {name: i for i, name in enumerate(classes)}
    records = []
    for image_id, name in enumerate(names):
        xml_path = os.path.join(root, "Annotations", name + ".xml")
        if not os.path.isfile(xml_path):
            raise SsdqError("annotation file not found: %s" % xml_path)
        try:
            tree = ET.parse(xml_path).getroot()
            width = int(tree.find("size/width").text)
            height = int(tree.find("size/height").text)
            boxes, labels, ignore = [], [], []
            for obj in tree.iter("object"):
                cls = obj.find("name").text.strip()
                if cls not in index_of:
                    raise SsdqError("%s names class %r, which the model does not know (%s)"
                                    % (xml_path, cls, ", ".join(classes)))
                bb = obj.find("bndbox")
                # VOC boxes are 1-based inclusive pixel indices.
                boxes.append([float(bb.find(t).text) - 1 for t in ("xmin", "ymin", "xmax", "ymax")])
                labels.append(index_of[cls])
                difficult = obj.find("difficult")
                ignore.append(difficult is not None and difficult.text.strip() == "1")
        except (ET.ParseError, AttributeError, ValueError) as exc:
            raise SsdqError("annotation file %s is malformed (%s)" % (xml_path, exc)) from None
        records.append(ImageRecord(
            image_id=image_id, path=os.path.join(root, "JPEGImages", name + ".jpg"),
            width=width, height=height, boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(labels, np.int64), ignore=np.asarray(ignore, bool)))
    _check_files(records, list_file)
    return VocDataset(root, split, classes, records)


def _check_files(records, listed_in):
    for rec in records:
        if not os.path.isfile(rec.path):
            raise SsdqError("image file not found: %s (listed in %s)" % (rec.path, listed_in))


def read_image(path):
    """Decode an image file to RGB uint8, refusing truncated or corrupt files."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SsdqError("cannot read image %s (%s)" % (path, exc.strerror)) from None
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise SsdqError("corrupt JPEG %s: the file is truncated" % path)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    if img is None:
        raise SsdqError("corrupt image %s: it does not decode" % path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def check_classes(dataset, model_classes):
    """Refuse to evaluate or calibrate a model on data whose classes differ from its own."""
    if tuple(dataset.classes) == tuple(model_classes):
        return
    missing = [c for c in dataset.classes if c not in model_classes]
    extra = [c for c in model_classes if c not in dataset.classes]
    detail = []
    if missing:
        detail.append("dataset-only: %s" % ", ".join(missing[:5]))
    if extra:
        detail.append("model-only: %s" % ", ".join(extra[:5]))
    if not detail:
        detail.append("same names in a different order")
    raise SsdqError("dataset classes (%d) do not match the model's (%d): %s"
                    % (len(dataset.classes), len(model_classes), "; ".join(detail)))
