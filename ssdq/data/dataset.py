"""Read COCO-format and VOC-format detection datasets into one record list, checking them first.

Every check that can fail on a user's data fails here, with a one-line ``SsdqError`` that names
the file: a missing or corrupt annotation file, an empty split, a listed image that is not on
disk, a JPEG that does not decode, an image whose decoded size is not the one its annotation
records, a malformed entry (the message names the entry and the field, and what was expected,
never a Python exception's repr). Other tools' exports are read as they write them (labelme2voc's
empty ``<difficult/>``, float coordinates, no ``<size>``; string COCO ids), and ground truth left
out (annotations of no image or no category) is counted, in a warning and in ``describe()``,
never dropped silently. Images are only decoded when read, so opening COCO val2017 is fast;
``read_image`` refuses truncated JPEGs that OpenCV would silently half-decode and, like
``mx.image.imdecode`` (GluonCV's and the recipe's decoder), does not apply a JPEG's EXIF
orientation: COCO's boxes and ``width``/``height`` describe the stored pixels.

A COCO file may sit anywhere (``annotations=FILE``, images under ``images=DIR``, ``file_name``
may hold sub-folders) or in the ``ROOT/annotations/instances_SPLIT.json`` layout. A dataset's class
index is its own: COCO categories sorted by id (as gluoncv does), VOC names as the caller gives them
or, if not given, sorted as found. ``data.classmap.match_classes`` maps them onto a model's classes
by name.
"""
import contextlib
import dataclasses
import glob
import io
import json
import os
import warnings
import xml.etree.ElementTree as ET
from dataclasses import dataclass

import cv2
import numpy as np
from pycocotools.coco import COCO

from ssdq.data.classmap import load_class_map
from ssdq.errors import SsdqError, SsdqNote, SsdqWarning
from ssdq.fileio import read_json


@dataclass
class ImageRecord:
    image_id: object  # COCO: the file's own id, int or str, as written; VOC: the image's index
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
        self.class_map = {}  # dataset class name -> model class name (--class-map)
        self.allow_size_mismatch = False
        self.source = {}  # how the split was found, for describe()
        self.counts = {}  # what the reader counted and worked around (orphan annotations, ...)

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

    def annotation_counts(self):
        """Annotations per class (crowd/difficult included) over the whole split."""
        counts = np.zeros(len(self.classes), np.int64)
        for rec in self.records:
            np.add.at(counts, rec.labels, 1)
        return dict(zip(self.classes, counts.tolist()))

    def describe(self):
        out = {"format": self.fmt, "root": os.path.abspath(self.root), "split": self.split,
               "images": len(self), "classes": list(self.classes), **self.source, **self.counts}
        if self.class_map:
            out["class_map"] = dict(self.class_map)
        return out


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
    if glob.glob(os.path.join(root, "Annotations", "*.xml")):
        return "voc"  # no split list (labelme's VOC export): every Annotations/*.xml
    raise SsdqError("no split %r in %s: expected annotations/instances_%s.json (COCO), "
                    "ImageSets/Main/%s.txt or Annotations/*.xml (VOC), or pass --annotations FILE "
                    "--images DIR" % (split, root, split, split))


def open_dataset(root=None, split=None, fmt="auto", classes=None, annotations=None, images=None,
                 class_map=None, allow_size_mismatch=False, require_images=True):
    """Open a detection dataset: every way ssdq reads a user's data goes through here.

    Either a split of a dataset folder (``root``, ``split``; ``fmt="auto"`` looks at the layout),
    or a COCO file anywhere (``annotations``) with its images under ``images`` (default: the
    file's folder). ``class_map``: a dict (or JSON file) renaming dataset classes to the model's;
    ``allow_size_mismatch``: a decoded size other than the annotated one is a warning, not an
    error, and the decoded size is used. ``require_images=False``: the ground truth alone (for
    scoring detections made elsewhere), so missing image files are no error.
    """
    if annotations is not None:
        if fmt not in ("auto", "coco"):
            raise SsdqError("--annotations takes a COCO file; a VOC dataset is a folder "
                            "(--data-root)")
        image_dir = images if images is not None else os.path.dirname(os.path.abspath(annotations))
        if not os.path.isdir(image_dir):
            raise SsdqError("image folder not found: %s" % image_dir)
        dataset = load_coco_file(annotations, image_dir, os.path.splitext(
            os.path.basename(annotations))[0], require_images=require_images)
    elif images is not None:
        raise SsdqError("--images DIR needs --annotations FILE (the COCO file describing them)")
    else:
        if fmt == "auto":
            fmt = detect_format(root, split)
        if fmt == "coco":
            dataset = load_coco(root, split, require_images)
        elif fmt == "voc":
            dataset = load_voc(root, split, classes, require_images)
        else:
            raise SsdqError("unknown dataset format %r (coco, voc or auto)" % fmt)
    if class_map:
        dataset.class_map = load_class_map(class_map) if isinstance(class_map, str) else dict(class_map)
    dataset.allow_size_mismatch = allow_size_mismatch
    return dataset


def load_coco(root, split, require_images=True):
    """A split of the COCO layout: ``ROOT/annotations/instances_SPLIT.json``, images in ``ROOT/SPLIT/``."""
    return load_coco_file(coco_annotation_path(root, split), os.path.join(root, split), split,
                          root=root, require_images=require_images)


def load_coco_file(ann_file, image_dir, split, root=None, require_images=True):
    """Any COCO instances file, its images' ``file_name`` relative to ``image_dir``.

    Every entry is checked before pycocotools indexes the file: a malformed one is a one-line
    error naming the file, the entry (``image 2299``, ``annotation #5``: its place in the
    ``annotations`` list) and the field, and saying what was expected. Image and category ids
    are integers or strings, one type per list, each id once; records keep them as written, so
    detections reach pycocotools under the file's own ids.

    No ground truth is left out silently. An annotation whose ``image_id`` (``category_id``) is
    an image's (category's) id written as the other type, ``2299`` for ``"2299"``, makes the
    file corrupt: an error. One whose ``image_id`` matches no image at all (a file another tool
    filtered by image) or whose ``category_id`` matches no category (filtered by category: the
    user expects the remaining classes scored) is left out with a warning giving the count,
    recorded in ``describe()`` as ``orphan_annotations`` / ``unknown_category_annotations``.
    A box of zero or negative width or height is left out of the records with a warning
    (``degenerate_boxes``); COCO scoring keeps it, as pycocotools does: no detection matches it."""
    data = read_json(ann_file, "annotation file")
    if not isinstance(data, dict):
        raise SsdqError("annotation file %s is not a COCO instances file" % ann_file)
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise SsdqError("annotation file %s has no %r list: not a COCO instances file"
                            % (ann_file, key))
    if not data["images"]:
        raise SsdqError("%s holds no images" % ann_file)
    if not data["categories"]:
        raise SsdqError("annotation file %s lists no categories" % ann_file)
    image_ids = _check_ids(data["images"], ("image", "images"), ann_file)
    for image in data["images"]:
        _check_image(image, ann_file)
    known_categories = _check_ids(data["categories"], ("category", "categories"), ann_file)
    for cat in data["categories"]:
        if not isinstance(cat.get("name"), str) or not cat["name"].strip():
            raise SsdqError("annotation file %s: category %s has %s: expected its name (a string)"
                            % (ann_file, _show(cat["id"]), "name %s" % _show(cat["name"])
                               if "name" in cat else "no 'name'"))
    _complete_annotations(data, ann_file)
    counts = {"orphan_annotations": _unmatched(data["annotations"], "image_id", image_ids,
                                               ("image", "an"), ann_file),
              "unknown_category_annotations": _unmatched(data["annotations"], "category_id",
                                                         known_categories, ("category", "a"),
                                                         ann_file)}
    degenerate = [(k, ann) for k, ann in enumerate(data["annotations"], 1)
                  if (ann["bbox"][2] <= 0 or ann["bbox"][3] <= 0) and ann["image_id"] in image_ids
                  and ann["category_id"] in known_categories]
    if degenerate:
        k, ann = degenerate[0]
        warnings.warn("annotation file %s: %d of %d annotations have a bbox of zero or negative "
                      "width or height (e.g. annotation #%d, bbox %s): left out of the records; "
                      "COCO scoring keeps them, as pycocotools does, and no detection can match "
                      "them" % (ann_file, len(degenerate), len(data["annotations"]), k,
                                _show(ann["bbox"])), SsdqWarning)
    counts["degenerate_boxes"] = len(degenerate)
    coco = COCO()
    coco.dataset = data
    with contextlib.redirect_stdout(io.StringIO()):  # pycocotools prints progress
        coco.createIndex()
    category_ids = sorted(coco.cats)
    index_of = {cat: i for i, cat in enumerate(category_ids)}
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
            ignore.append(bool(ann["iscrowd"]))
        records.append(ImageRecord(
            image_id=image_id, path=os.path.join(image_dir, info["file_name"]),
            width=int(info["width"]), height=int(info["height"]),
            boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
            labels=np.asarray(labels, np.int64), ignore=np.asarray(ignore, bool)))
    if require_images:
        _check_files(records, ann_file)
    dataset = CocoDataset(root if root is not None else image_dir, split, ann_file, coco,
                          category_ids, records)
    dataset.source = {"annotation_file": os.path.abspath(ann_file),
                      "image_dir": os.path.abspath(image_dir)}
    dataset.counts = counts
    return dataset


def _show(value, limit=60):
    """A value from a JSON file as the file writes it (``"2299"``, ``null``), cut to ``limit``."""
    text = json.dumps(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def _is_id(value):
    return (isinstance(value, int) and not isinstance(value, bool)) or (
        isinstance(value, str) and bool(value.strip()))


def _is_number(value):
    return (isinstance(value, (int, float)) and not isinstance(value, bool)
            and bool(np.isfinite(value)))


def _check_ids(entries, kind, ann_file):
    """``entries`` (the images or the categories) are objects whose ids are integers or strings,
    all of one type, none twice; returns the set of ids. ``kind``: (singular, plural) for the
    messages."""
    seen, types = {}, {}
    for k, entry in enumerate(entries, 1):
        if not isinstance(entry, dict):
            raise SsdqError("annotation file %s: %s #%d is %s, not an object"
                            % (ann_file, kind[0], k, _show(entry)))
        if "id" not in entry:
            raise SsdqError("annotation file %s: %s #%d has no 'id'" % (ann_file, kind[0], k))
        value = entry["id"]
        if not _is_id(value):
            raise SsdqError("annotation file %s: %s #%d has id %s: expected an integer or a "
                            "string" % (ann_file, kind[0], k, _show(value)))
        if value in seen:
            raise SsdqError("annotation file %s: %s #%d and #%d have the same id %s: each %s "
                            "needs its own" % (ann_file, kind[1], seen[value], k, _show(value),
                                               kind[0]))
        seen[value] = k
        types.setdefault(type(value), value)
    if len(types) > 1:
        raise SsdqError("annotation file %s: %s ids mix integers (e.g. %s) and strings (e.g. %s): "
                        "mixed id types are a corrupt file; write every id as the same type"
                        % (ann_file, kind[0], _show(types[int]), _show(types[str])))
    return set(seen)


def _unmatched(anns, key, ids, kind, ann_file):
    """How many annotations' ``key`` (``image_id``, ``category_id``) is none of ``ids``, warned
    about; an error if one of them is an id written as the other type (2299 for "2299").
    ``kind``: (what the ids name, the article of ``key``) for the messages."""
    missing = [ann[key] for ann in anns if ann[key] not in ids]
    if not missing:
        return 0
    as_text = {str(i): i for i in ids}
    mixed = [value for value in missing if str(value) in as_text]
    if mixed:
        value = mixed[0]
        raise SsdqError(
            "annotation file %s: %d of %d annotations have %s %s that matches no %s, and %d of "
            "them are %s id written as another type (%s %s, %s, for %s %s, %s): mixed id types "
            "are a corrupt file, not a subset"
            % (ann_file, len(missing), len(anns), kind[1], key, kind[0], len(mixed),
               "an image's" if kind[0] == "image" else "a category's", key, _show(value),
               _type_name(value), kind[0], _show(as_text[str(value)]),
               _type_name(as_text[str(value)])))
    warnings.warn("annotation file %s: %d of %d annotations have %s %s that matches no %s (e.g. "
                  "%s): left out%s" % (ann_file, len(missing), len(anns), kind[1], key, kind[0],
                                       _show(missing[0]), " (a file another tool filtered?)"
                                       if kind[0] == "image" else ", not scored"), SsdqWarning)
    return len(missing)


def _type_name(value):
    return "a string" if isinstance(value, str) else "an integer"


def _check_image(image, ann_file):
    where = "annotation file %s: image %s" % (ann_file, _show(image["id"]))
    name = image.get("file_name")
    if not isinstance(name, str) or not name.strip():
        raise SsdqError("%s has %s: expected its path under the image folder (a string)"
                        % (where, "file_name %s" % _show(name) if "file_name" in image
                           else "no 'file_name'"))
    for key in ("width", "height"):
        if key not in image:
            raise SsdqError("%s has no %r (its %s in pixels)" % (where, key, key))
        value = image[key]
        if not (_is_number(value) and value == int(value) and value > 0):
            raise SsdqError("%s has %s %s: expected a whole number of pixels"
                            % (where, key, _show(value)))


def _complete_annotations(data, ann_file):
    """Check every annotation, and fill what pycocotools' evaluation needs but other tools'
    exports may lack.

    An annotation is an object with an ``image_id`` and a ``category_id`` (integers or strings)
    and a ``bbox`` of 4 numbers; ``iscrowd`` (default 0) is 0 or 1; ``area`` (default the box's)
    a number; ``segmentation`` (polygons or RLE) is not read. COCOeval reads every ground truth's
    ``area`` and ``iscrowd``, and takes an annotation id of 0 for "unmatched", so a match to it
    would count as a false positive (labelme numbers its annotations from 0): such ids, and
    duplicated or non-integer ones, are renumbered from 1 in memory; the file is not touched.
    """
    anns = data["annotations"]
    for k, ann in enumerate(anns, 1):
        if not isinstance(ann, dict):
            raise SsdqError("annotation file %s: annotation #%d is %s, not an object"
                            % (ann_file, k, _show(ann)))
        where = "annotation file %s: annotation #%d%s" % (
            ann_file, k, " (id %s)" % _show(ann["id"]) if "id" in ann else "")
        for key, what in (("image_id", "image"), ("category_id", "category")):
            if key not in ann:
                raise SsdqError("%s has no %r (the id of its %s)" % (where, key, what))
            if not _is_id(ann[key]):
                raise SsdqError("%s has %s %s: expected an integer or a string"
                                % (where, key, _show(ann[key])))
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
            raise SsdqError("%s has %s: expected 4 numbers [x, y, width, height] in pixels"
                            % (where, "bbox %s" % _show(bbox) if "bbox" in ann else "no 'bbox'"))
        iscrowd = ann.setdefault("iscrowd", 0)
        if not (isinstance(iscrowd, bool) or _is_number(iscrowd) and iscrowd in (0, 1)):
            raise SsdqError("%s has iscrowd %s: expected 0 or 1" % (where, _show(iscrowd)))
        if "area" not in ann:
            ann["area"] = float(bbox[2]) * float(bbox[3])
        elif not _is_number(ann["area"]):
            raise SsdqError("%s has area %s: expected a number (pixels)"
                            % (where, _show(ann["area"])))
    ids = [ann.get("id") for ann in anns]
    if any(not isinstance(i, int) or i < 1 for i in ids) or len(set(ids)) != len(ids):
        for number, ann in enumerate(anns, 1):
            ann["id"] = number


def load_voc(root, split, classes=None, require_images=True):
    """A VOC split (``ImageSets/Main/SPLIT.txt``, or every ``Annotations/*.xml`` if there is no
    list). ``classes``: the class index to use; by default the names found, sorted.

    Other tools' VOC exports are read as they are written: labelme2voc's empty ``<difficult/>``
    (0), float coordinates, no split list. A file without ``<size>`` gets its image's decoded
    size (one note says how many); if that image cannot be read, it is an error naming both."""
    list_file = os.path.join(root, "ImageSets", "Main", split + ".txt")
    if os.path.isfile(list_file):
        with open(list_file) as f:
            names = [line.strip().split()[0] for line in f if line.strip()]
        listed_in = list_file
    else:
        names = sorted(os.path.splitext(os.path.basename(p))[0]
                       for p in glob.glob(os.path.join(root, "Annotations", "*.xml")))
        listed_in = os.path.join(root, "Annotations")
        if names:
            warnings.warn("%s has no ImageSets/Main/%s.txt: using every Annotations/*.xml "
                          "(%d files, sorted)" % (root, split, len(names)), SsdqNote)
    if not names:
        raise SsdqError("split %r of %s holds no images" % (split, root))
    parsed = [_parse_voc_xml(root, name, listed_in) for name in names]
    unsized = [k for k, (_, width, height, _) in enumerate(parsed)
               if width is None or height is None]
    for k in unsized:
        path, _, _, objects = parsed[k]
        height, width = _size_from_image(_voc_xml_path(root, names[k]), path)
        parsed[k] = (path, width, height, objects)
    if unsized:
        warnings.warn("%d of %d annotation files in %s have no <size> (width, height): using "
                      "their images' decoded size (e.g. %s)"
                      % (len(unsized), len(names), listed_in,
                         os.path.basename(_voc_xml_path(root, names[unsized[0]]))), SsdqNote)
    if classes is None:
        classes = sorted({cls for _, _, _, objects in parsed for cls, _, _ in objects})
    index_of = {name: i for i, name in enumerate(classes)}
    records = []
    for image_id, (path, width, height, objects) in enumerate(parsed):
        for cls, _, _ in objects:
            if cls not in index_of:
                raise SsdqError("%s names class %r, which the model does not know (%s)"
                                % (_voc_xml_path(root, names[image_id]), cls, ", ".join(classes)))
        records.append(ImageRecord(
            image_id=image_id, path=path, width=width, height=height,
            boxes=np.asarray([b for _, b, _ in objects], np.float32).reshape(-1, 4),
            labels=np.asarray([index_of[c] for c, _, _ in objects], np.int64),
            ignore=np.asarray([d for _, _, d in objects], bool)))
    if require_images:
        _check_files(records, listed_in)
    dataset = VocDataset(root, split, classes, records)
    dataset.source = {"image_list": os.path.abspath(listed_in)}
    dataset.counts = {"sizes_read_from_images": len(unsized)}
    return dataset


def _voc_xml_path(root, name):
    return os.path.join(root, "Annotations", name + ".xml")


def _size_from_image(xml_path, image_path):
    """(height, width) of the image a ``<size>``-less annotation file describes."""
    if not os.path.isfile(image_path):
        raise SsdqError("annotation file %s has no <size> (width, height), and its image %s, "
                        "which would give it, is not on disk" % (xml_path, image_path))
    try:
        return read_image(image_path).shape[:2]
    except SsdqError as exc:
        raise SsdqError("annotation file %s has no <size> (width, height), and its image cannot "
                        "give it: %s" % (xml_path, exc)) from None


def _parse_voc_xml(root, name, listed_in):
    """-> (image path, width, height, [(class name, x1y1x2y2 box, difficult)]); width and height
    are None if the file has no ``<size>``. Every malformed element is a one-line error naming
    the file, the object and the element."""
    xml_path = _voc_xml_path(root, name)
    if not os.path.isfile(xml_path):
        raise SsdqError("annotation file not found: %s (listed in %s)" % (xml_path, listed_in))
    try:
        tree = ET.parse(xml_path).getroot()
    except ET.ParseError as exc:  # says where: "not well-formed (invalid token): line 3, column 4"
        raise SsdqError("annotation file %s is not valid XML (%s)" % (xml_path, exc)) from None
    width = _voc_size(tree, "width", xml_path)
    height = _voc_size(tree, "height", xml_path)
    objects = []
    for k, obj in enumerate(tree.iter("object"), 1):
        cls = (obj.findtext("name") or "").strip()
        if not cls:
            raise SsdqError("annotation file %s: object %d has no <name> (its class)"
                            % (xml_path, k))
        where = "annotation file %s: object %d (%s)" % (xml_path, k, cls)
        bb = obj.find("bndbox")
        if bb is None:
            raise SsdqError("%s has no <bndbox>" % where)
        # VOC boxes are 1-based inclusive pixel indices.
        box = [_voc_number(bb, tag, where) - 1 for tag in ("xmin", "ymin", "xmax", "ymax")]
        # labelme2voc writes <difficult/> (and <truncated/>, <pose/>, unread) empty: 0
        difficult = (obj.findtext("difficult") or "").strip()
        if difficult not in ("", "0", "1"):
            raise SsdqError("%s has <difficult>%s</difficult>: expected 0 or 1 (or empty, 0)"
                            % (where, difficult))
        objects.append((cls, box, difficult == "1"))
    path = os.path.join(root, "JPEGImages", name + ".jpg")
    filename = tree.findtext("filename")
    if not os.path.isfile(path) and filename and filename.strip():
        path = os.path.join(root, "JPEGImages", filename.strip())
    return path, width, height, objects


def _voc_number(bndbox, tag, where):
    text = (bndbox.findtext(tag) or "").strip()
    if not text:
        raise SsdqError("%s has no <bndbox><%s>" % (where, tag))
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not np.isfinite(value):
        raise SsdqError("%s has <%s>%s</%s>: expected a number (pixels)" % (where, tag, text, tag))
    return value


def _voc_size(tree, tag, xml_path):
    """``<size><width>`` or ``<height>`` as an int; None if the element is missing or empty."""
    text = (tree.findtext("size/" + tag) or "").strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (np.isfinite(value) and value == int(value) and value > 0):
        raise SsdqError("annotation file %s has <size><%s>%s</%s>: expected a whole number of "
                        "pixels" % (xml_path, tag, text, tag))
    return int(value)


def _check_files(records, listed_in):
    for rec in records:
        if not os.path.isfile(rec.path):
            raise SsdqError("image file not found: %s (listed in %s)" % (rec.path, listed_in))


def read_image(path):
    """Decode an image file (JPEG, PNG, ...; grayscale too) to RGB uint8, refusing truncated or
    corrupt files. EXIF orientation is not applied, as in ``mx.image.imdecode``."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        raise SsdqError("cannot read image %s (%s)" % (path, exc.strerror)) from None
    if data[:2] == b"\xff\xd8" and b"\xff\xd9" not in data[-64:]:
        raise SsdqError("corrupt JPEG %s: the file is truncated" % path)
    img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if img is None:
        raise SsdqError("corrupt image %s: it does not decode" % path)
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)


def read_record_image(record, allow_size_mismatch=False):
    """Decode a record's image and check its size against the annotation's width/height.

    Returns (RGB image, record): with ``allow_size_mismatch`` a mismatch is a warning and the
    record returned carries the decoded size (the boxes are then mapped to it)."""
    img = read_image(record.path)
    height, width = img.shape[:2]
    if (width, height) == (record.width, record.height):
        return img, record
    message = ("%s decodes as %dx%d but its annotation says %dx%d (width x height)"
               % (record.path, width, height, record.width, record.height))
    if not allow_size_mismatch:
        raise SsdqError(message + "; fix the annotation, or pass --allow-size-mismatch to use "
                        "the decoded size")
    warnings.warn(message + ": using the decoded size", SsdqWarning)
    return img, dataclasses.replace(record, width=width, height=height)
