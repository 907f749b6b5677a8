"""Score detections made anywhere (``ssdq score``) against any ground truth ssdq reads, with the
evaluation's own scoring code (``eval.metrics``): what ``ssdq eval`` reports for its own
detections, the same numbers for OpenVINO's, a colleague's detectron2 run or an older ssdq run.

A detections file is JSON, one of:

- a COCO results list: ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}, ...]``
  (what pycocotools' ``loadRes``, detectron2's ``coco_instances_results.json`` and
  ``ssdq eval --save-detections`` hold); ``category_id`` may be a class name;
- a dataset-shaped file (a COCO instances file) whose annotations carry a ``score``; its
  ``images`` (``id``, ``file_name``) and ``categories`` (``id``, ``name``) say what its ids mean.

Images are matched by id when the file's ids are the ground truth's, by file name (or its stem)
when they are not: the files of two tools rarely share ids, and a dataset-shaped file whose ids
match but whose file names say otherwise is matched by name. Classes are matched by id against
a COCO ground truth's category ids, or by name (after ``--class-map``) when the file names its
categories. A detection that matches no image or no class is counted and said, as is an entry
that is not a detection (no box, no score): nothing is dropped silently.
"""
import os
import warnings
from dataclasses import dataclass, field

import numpy as np

from ssdq.data.classmap import ClassMatch
from ssdq.errors import SsdqError, SsdqNote
from ssdq.eval.metrics import VOC07Evaluator, coco_metrics
from ssdq.fileio import read_json


@dataclass
class Detections:
    """What a detections file holds, as read."""

    path: str
    kind: str  # "results list" or "dataset"
    image_ids: list  # per detection, as written
    categories: list  # per detection: category id or name, as written
    boxes: np.ndarray  # (N, 4) x, y, w, h in image pixels
    scores: np.ndarray  # (N,)
    file_names: dict = field(default_factory=dict)  # image id -> file name (dataset-shaped)
    category_names: dict = field(default_factory=dict)  # category id -> name (dataset-shaped)
    malformed: int = 0  # entries that are not a detection
    malformed_example: str = None


def _is_id(value):
    return isinstance(value, str) or isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool) and np.isfinite(value)


def _problem(entry):
    """Why a list entry is not a detection, or None."""
    if not isinstance(entry, dict):
        return "not an object"
    for key in ("image_id", "category_id"):
        if key not in entry:
            return "no %r" % key
        if not _is_id(entry[key]):
            return "%s %r is not an integer or a string" % (key, entry[key])
    bbox = entry.get("bbox")
    if not (isinstance(bbox, list) and len(bbox) == 4 and all(map(_is_number, bbox))):
        return "bbox %r is not 4 numbers [x, y, width, height]" % (bbox,) if "bbox" in entry \
            else "no 'bbox'"
    if not _is_number(entry.get("score")):
        return "score %r is not a number" % (entry.get("score"),) if "score" in entry \
            else "no 'score'"
    return None


def read_detections(path):
    """Read a detections file (see the module docstring) -> ``Detections``."""
    data = read_json(path, "detections file")
    file_names, category_names = {}, {}
    if isinstance(data, list):
        kind, entries = "results list", data
    elif isinstance(data, dict) and isinstance(data.get("annotations"), list):
        kind, entries = "dataset", data["annotations"]
        if entries and not any(isinstance(a, dict) and "score" in a for a in entries):
            raise SsdqError("%s is a dataset file whose annotations carry no 'score': ground "
                            "truth, not detections" % path)
        for image in data.get("images") or ():
            if isinstance(image, dict) and _is_id(image.get("id")) and \
                    isinstance(image.get("file_name"), str):
                file_names[image["id"]] = image["file_name"]
        for cat in data.get("categories") or ():
            if isinstance(cat, dict) and _is_id(cat.get("id")) and isinstance(cat.get("name"), str):
                category_names[cat["id"]] = cat["name"]
    else:
        raise SsdqError("%s is neither a COCO results list ([{image_id, category_id, bbox, "
                        "score}, ...]) nor a dataset file whose annotations carry scores" % path)
    good, malformed, example = [], 0, None
    for k, entry in enumerate(entries, 1):
        problem = _problem(entry)
        if problem:
            malformed += 1
            example = example or "entry #%d: %s" % (k, problem)
        else:
            good.append(entry)
    if entries and not good:
        raise SsdqError("%s: none of its %d entries is a detection (%s)" % (path, len(entries),
                                                                           example))
    return Detections(path, kind, [d["image_id"] for d in good], [d["category_id"] for d in good],
                      np.asarray([d["bbox"] for d in good], np.float64).reshape(-1, 4),
                      np.asarray([d["score"] for d in good], np.float64), file_names,
                      category_names, malformed, example)


def _same_id(value):
    """An id as a key under which "42" and 42 meet (tools differ on the type, not the number)."""
    if isinstance(value, str) and value.strip().isdigit():
        return int(value)
    return value


def _name_keys(name):
    """The keys a file name is known by: its base name and its stem."""
    base = os.path.basename(str(name))
    return {base, os.path.splitext(base)[0]}


def match_images(dets, dataset):
    """{detection image id: ground-truth image id} and how they were matched ("id" or
    "file_name")."""
    by_id = {_same_id(rec.image_id): rec.image_id for rec in dataset.records}
    by_name, clashes = {}, set()
    for rec in dataset.records:
        for key in _name_keys(rec.path):
            if key in by_name and by_name[key] != rec.image_id:
                clashes.add(key)
            by_name[key] = rec.image_id
    for key in clashes:  # two images share a stem (a.jpg, a.png): neither is matched by it
        by_name.pop(key)
    wanted = set(dets.image_ids)
    via_id = {d: by_id[_same_id(d)] for d in wanted if _same_id(d) in by_id}
    names = {d: dets.file_names.get(d, d if isinstance(d, str) else None) for d in wanted}
    via_name = {}
    for d, name in names.items():
        hits = {by_name[k] for k in _name_keys(name) if k in by_name} if name else set()
        if len(hits) == 1:
            via_name[d] = hits.pop()
    contradicted = dets.file_names and any(
        d in via_name and via_name[d] != gt for d, gt in via_id.items())
    if len(via_name) > len(via_id) or contradicted:
        return via_name, "file_name"
    return via_id, "id"


def match_categories(dets, dataset):
    """{detection category: ground-truth class index} and how ("id" or "name"). Names go
    through the dataset's ``--class-map`` renames."""
    renamed = {v: k for k, v in (getattr(dataset, "class_map", {}) or {}).items()}
    index_of_name = {}
    for i, name in enumerate(dataset.classes):
        index_of_name[name] = i
        index_of_name.setdefault(_plain(name), i)
    for model_name, dataset_name in renamed.items():
        if dataset_name in dataset.classes:
            index_of_name[model_name] = dataset.classes.index(dataset_name)
    wanted = set(dets.categories)
    named = {c: dets.category_names.get(c, c if isinstance(c, str) else None) for c in wanted}
    via_name = {}
    for c, name in named.items():
        if name is not None:
            hit = index_of_name.get(name, index_of_name.get(_plain(name)))
            if hit is not None:
                via_name[c] = hit
    via_id = {}
    if getattr(dataset, "category_ids", None):
        index_of_id = {_same_id(cat): i for i, cat in enumerate(dataset.category_ids)}
        via_id = {c: index_of_id[_same_id(c)] for c in wanted if _same_id(c) in index_of_id}
    contradicted = any(c in via_name and via_name[c] != i for c, i in via_id.items())
    if len(via_name) > len(via_id) or (contradicted and dets.category_names):
        return via_name, "name"
    return via_id, "id"


def _plain(name):
    return "".join(ch for ch in str(name).lower() if ch.isalnum())


def score_detections(dets, dataset):
    """Score ``dets`` (``Detections``) against ``dataset``: the result dict ``ssdq score``
    writes (metrics as ``ssdq eval`` reports them, plus what was matched and what was not)."""
    images, images_by = match_images(dets, dataset)
    classes, classes_by = match_categories(dets, dataset)
    image_ok = np.array([d in images for d in dets.image_ids], bool)
    class_ok = np.array([c in classes for c in dets.categories], bool)
    keep = image_ok & class_ok
    unmatched = {"image": int((~image_ok).sum()), "class": int((image_ok & ~class_ok).sum())}
    if len(dets.scores) and not keep.any():
        raise SsdqError("none of the %d detections in %s matches an image and a class of %s "
                        "(%d match no image by id or file name, %d no class by id or name)"
                        % (len(dets.scores), dets.path, _what(dataset), unmatched["image"],
                           unmatched["class"]))
    gt_images = [images[d] for d, k in zip(dets.image_ids, keep) if k]
    labels = np.array([classes[c] for c, k in zip(dets.categories, keep) if k], np.int64)
    boxes, scores = dets.boxes[keep], dets.scores[keep]
    if dataset.fmt == "coco":
        metrics = _score_coco(dataset, gt_images, labels, boxes, scores)
    else:
        metrics = _score_voc(dataset, gt_images, labels, boxes, scores)
    said = []
    if unmatched["image"]:
        said.append("%d detections match no image of %s" % (unmatched["image"], _what(dataset)))
    if unmatched["class"]:
        said.append("%d detections match no class of it" % unmatched["class"])
    if dets.malformed:
        said.append("%d entries of %s are not detections (e.g. %s)"
                    % (dets.malformed, dets.path, dets.malformed_example))
    for line in said:
        warnings.warn(line + ": not scored", SsdqNote)
    return dict(metrics, detections_file=os.path.abspath(dets.path), detections_kind=dets.kind,
                detections=int(keep.sum()), detections_unmatched=unmatched,
                detections_malformed=dets.malformed, images_matched_by=images_by,
                classes_matched_by=classes_by, dataset=dataset.describe(),
                metric="coco" if dataset.fmt == "coco" else "voc07")


def _what(dataset):
    return "the ground truth (%s, %d images)" % (dataset.split, len(dataset))


def _score_coco(dataset, gt_images, labels, boxes, scores):
    cats = [dataset.category_ids[i] for i in labels]
    results = [{"image_id": i, "category_id": c, "bbox": [float(v) for v in b],
                "score": float(s)} for i, c, b, s in zip(gt_images, cats, boxes, scores)]
    # GluonCV's convention counts a box's last pixel: w + 1, h + 1 (``metrics.gluoncv_coco_boxes``)
    gluoncv = [dict(r, bbox=r["bbox"][:2] + [r["bbox"][2] + 1, r["bbox"][3] + 1])
               for r in results]
    image_ids = [rec.image_id for rec in dataset.records]
    return coco_metrics(dataset, results, gluoncv, image_ids, list(dataset.category_ids))


def _score_voc(dataset, gt_images, labels, boxes, scores):
    identity = ClassMatch(tuple(dataset.classes), tuple(dataset.classes),
                          {i: i for i in range(len(dataset.classes))}, ())
    evaluator = VOC07Evaluator(dataset, identity)
    per_image = {}
    for image, label, box, score in zip(gt_images, labels, boxes, scores):
        per_image.setdefault(image, []).append((label, box, score))
    for rec in dataset.records:
        found = per_image.get(rec.image_id, [])
        lab = np.array([f[0] for f in found], np.int64)
        box = np.array([f[1] for f in found], np.float64).reshape(-1, 4)
        box[:, 2:] += box[:, :2]  # x, y, w, h -> x1, y1, x2, y2
        evaluator.process([rec.image_id], [lab], [np.array([f[2] for f in found])], [box])
    return evaluator.evaluate()
