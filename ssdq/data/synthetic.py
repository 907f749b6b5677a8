"""Generate the embedded default: a seeded, COCO-format detection dataset of shapes on clutter.

Real COCO cannot be downloaded here, so ssdq carries a generator instead of a dataset. Every image
is drawn from its own seed (``seed * 1_000_003 + image index``), so a split is byte-identical
across runs and machines with the pinned OpenCV, and images are drawn in parallel.

What makes the task non-trivial: six shape classes in random colours (shape, not colour, tells
the class), textured and cluttered backgrounds, 1-10 objects an image over a wide scale range
(40 to 320 pixels), objects occluding each other and being occluded by distractors
(elongated ellipses, jagged blobs, lines) that belong to no class. Boxes and areas are those of
the visible part; an object less than a third visible is marked ``iscrowd=1``, which COCO
evaluation ignores rather than counting as a miss.

Layout (COCO's): ``ROOT/annotations/instances_{split}.json`` and ``ROOT/{split}/<id:012d>.jpg``.
"""
import datetime
import json
import multiprocessing
import os

import cv2
import numpy as np
from tqdm import tqdm

from ssdq.data.options import DEFAULT_ROOT, DEFAULT_SEED, DEFAULT_SPLITS
from ssdq.fileio import atomic_dir, write_json

# Non-contiguous ids, as in COCO, so that no code can confuse a category id with a class index.
CATEGORIES = [
    {"id": 1, "name": "circle", "supercategory": "shape"},
    {"id": 3, "name": "square", "supercategory": "shape"},
    {"id": 6, "name": "triangle", "supercategory": "shape"},
    {"id": 8, "name": "star", "supercategory": "shape"},
    {"id": 11, "name": "cross", "supercategory": "shape"},
    {"id": 13, "name": "ring", "supercategory": "shape"},
]
CLASSES = tuple(c["name"] for c in CATEGORIES)

# Image ids of different splits never collide.
SPLIT_ID_OFFSET = {"train": 1, "val": 1_000_000, "test": 2_000_000, "dev": 4_000_000}
MIN_VISIBLE_FRACTION = 1.0 / 3.0
MIN_SIDE, MAX_SIDE = 40, 320


def _polygon(name, rng):
    """Unit-size outline of a shape, centred on the origin, as an (N, 2) float array."""
    if name in ("circle", "ring"):
        t = np.linspace(0, 2 * np.pi, 48, endpoint=False)
        return np.stack([np.cos(t), np.sin(t)], 1)
    if name == "square":
        return np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]], float) / np.sqrt(2) * 1.2
    if name == "triangle":
        t = np.pi / 2 + np.arange(3) * 2 * np.pi / 3
        return np.stack([np.cos(t), -np.sin(t)], 1)
    if name == "star":
        t = -np.pi / 2 + np.arange(10) * np.pi / 5
        r = np.where(np.arange(10) % 2 == 0, 1.0, 0.42)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    if name == "cross":
        a, w = 1.0, 0.34
        return np.array([[-w, -a], [w, -a], [w, -w], [a, -w], [a, w], [w, w], [w, a], [-w, a],
                         [-w, w], [-a, w], [-a, -w], [-w, -w]], float)
    if name == "blob":
        t = np.sort(rng.uniform(0, 2 * np.pi, 9))
        r = rng.uniform(0.35, 1.0, 9)
        return np.stack([r * np.cos(t), r * np.sin(t)], 1)
    raise ValueError(name)


def _place(points, center, size, angle, aspect):
    rot = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    scaled = points * np.array([aspect, 1.0 / aspect]) * (size / 2.0)
    return (scaled @ rot.T + center).round().astype(np.int32)


def _background(rng, h, w):
    """Low-frequency colour field + fine grain + a random pattern: texture and clutter."""
    coarse = rng.uniform(0, 255, (rng.integers(2, 7), rng.integers(2, 7), 3)).astype(np.float32)
    img = cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    grain_scale = int(rng.integers(2, 9))
    grain = rng.standard_normal((h // grain_scale + 1, w // grain_scale + 1, 3), dtype=np.float32)
    grain *= rng.uniform(3, 12)
    img += cv2.resize(grain, (w, h), interpolation=cv2.INTER_LINEAR)
    pattern = rng.integers(0, 3)
    if pattern == 1:  # stripes
        period = rng.uniform(6, 40)
        angle = rng.uniform(0, np.pi)
        yy, xx = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None]
        phase = (xx * np.cos(angle) + yy * np.sin(angle)) * (2 * np.pi / period)
        img += (np.sin(phase) * rng.uniform(5, 18))[..., None]
    elif pattern == 2:  # checker
        cell = int(rng.integers(8, 48))
        yy, xx = np.arange(h)[:, None], np.arange(w)[None]
        img += (((yy // cell + xx // cell) % 2) * rng.uniform(6, 20) - 10)[..., None]
    return img


def _contrasting_colour(rng, under):
    for _ in range(8):
        colour = rng.uniform(0, 255, 3)
        if np.abs(colour - under).sum() > 120:
            break
    return colour


def _roi(points, h, w, pad=4):
    """Clipped bounding box (x0, y0, x1, y1) of points: masks are drawn only there, for speed."""
    x0, y0 = np.maximum(points.min(0) - pad, 0)
    x1, y1 = np.minimum(points.max(0) + pad + 1, [w, h])
    return int(x0), int(y0), int(max(x1, x0 + 1)), int(max(y1, y0 + 1))


def _draw_distractor(rng, img, inst):
    """Paint a no-class shape; it hides whatever object pixels it covers."""
    h, w = img.shape[:2]
    kind = rng.integers(0, 3)
    size = float(np.exp(rng.uniform(np.log(MIN_SIDE), np.log(MAX_SIDE * 0.8))))
    center = rng.uniform([0, 0], [w, h])
    thickness = -1
    if kind == 0:  # elongated ellipse: never round enough to pass for a circle
        axes = (int(size / 2), max(1, int(size / 2 / rng.uniform(2.6, 5.0))))
        pts = cv2.ellipse2Poly(tuple(int(c) for c in center), axes, int(rng.uniform(0, 180)),
                               0, 360, 8)
    elif kind == 1:
        pts = _place(_polygon("blob", rng), center, size, rng.uniform(0, 2 * np.pi), 1.0)
    else:
        pts = np.array([center, center + rng.normal(0, size, 2)]).round().astype(np.int32)
        thickness = int(rng.integers(2, 7))
    x0, y0, x1, y1 = _roi(pts, h, w, pad=8)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    local = pts - [x0, y0]
    if thickness > 0:
        cv2.line(mask, tuple(int(c) for c in local[0]), tuple(int(c) for c in local[1]), 1, thickness)
    else:
        cv2.fillPoly(mask, [local.astype(np.int32)], 1)
    on = mask.astype(bool)
    if on.any():
        region = img[y0:y1, x0:x1]
        region[on] = _contrasting_colour(rng, region[on].mean(0))
        inst[y0:y1, x0:x1][on] = 0


def _draw_object(rng, img, inst, label, name):
    """Paint one object with instance id ``label``; return (full area, outline, roi) or None."""
    h, w = img.shape[:2]
    size = float(np.exp(rng.uniform(np.log(MIN_SIDE), np.log(MAX_SIDE))))
    size = min(size, 0.9 * min(h, w))
    center = rng.uniform([size / 2, size / 2], [w - size / 2, h - size / 2])
    aspect = float(np.sqrt(rng.uniform(0.7, 1.45)))
    pts = _place(_polygon(name, rng), center, size, rng.uniform(0, 2 * np.pi), aspect)
    x0, y0, x1, y1 = _roi(pts, h, w)
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    cv2.fillPoly(mask, [pts - [x0, y0]], 1)
    if name == "ring":
        inner = _place(_polygon("circle", rng), center, size * rng.uniform(0.45, 0.62),
                       0.0, aspect)
        cv2.fillPoly(mask, [inner - [x0, y0]], 0)
    on = mask.astype(bool)
    if not on.any():
        return None
    region = img[y0:y1, x0:x1]
    colour = _contrasting_colour(rng, region[on].mean(0))
    # A shading gradient across the object, so flat colour is not a shortcut.
    ramp = np.linspace(-1, 1, x1 - x0)[None, :, None] * rng.uniform(0, 25)
    shaded = np.broadcast_to(np.clip(colour + ramp, 0, 255), region.shape)
    region[on] = shaded[on]
    inst[y0:y1, x0:x1][on] = label
    return int(on.sum()), pts, (x0, y0, x1, y1)


def draw_image(seed, index, width=None, height=None):
    """Draw image ``index`` of a split; return (BGR uint8 image, list of annotation dicts)."""
    rng = np.random.default_rng(seed * 1_000_003 + index)
    if width is None:
        long_side = int(rng.choice([640, 640, 640, 612, 600, 500]))
        short_side = int(rng.integers(360, 481))
        width, height = (long_side, short_side) if rng.random() < 0.7 else (short_side, long_side)
    img = _background(rng, height, width)
    inst = np.zeros((height, width), np.int32)
    for _ in range(rng.integers(0, 3)):
        _draw_distractor(rng, img, inst)
    objects = []
    for k in range(1, int(rng.integers(1, 11)) + 1):
        cat = CATEGORIES[int(rng.integers(0, len(CATEGORIES)))]
        drawn = _draw_object(rng, img, inst, k, cat["name"])
        if drawn is not None:
            objects.append((k, cat) + drawn)
        if rng.random() < 0.1:
            _draw_distractor(rng, img, inst)
    img = cv2.GaussianBlur(np.clip(img, 0, 255), (0, 0), rng.uniform(0.3, 0.9))
    img += rng.standard_normal(img.shape, dtype=np.float32) * 3.0  # sensor noise
    img = np.clip(img, 0, 255).astype(np.uint8)

    anns = []
    for k, cat, full_area, pts, (x0, y0, x1, y1) in objects:
        ys, xs = np.nonzero(inst[y0:y1, x0:x1] == k)
        if len(xs) == 0:
            continue
        bx, by = x0 + int(xs.min()), y0 + int(ys.min())
        bw, bh = int(xs.max()) - int(xs.min()) + 1, int(ys.max()) - int(ys.min()) + 1
        anns.append({
            "category_id": cat["id"],
            "bbox": [float(bx), float(by), float(bw), float(bh)],
            "area": float(len(xs)),
            "iscrowd": int(len(xs) < MIN_VISIBLE_FRACTION * full_area),
            "segmentation": [np.clip(pts, 0, [width - 1, height - 1]).astype(float).ravel().tolist()],
        })
    return img, anns


def _draw_and_save(job):
    seed, index, image_id, path = job
    img, anns = draw_image(seed, index)
    if not cv2.imwrite(path, img, [cv2.IMWRITE_JPEG_QUALITY, 92]):
        raise OSError("could not write %s" % path)
    return image_id, img.shape[1], img.shape[0], anns


def generate_split(root, split, num_images, seed=DEFAULT_SEED, workers=None, progress=True):
    """Write ``num_images`` images and their annotation JSON; return the annotation path.

    The image folder is built under a temporary name and renamed, and the JSON written last, so
    an interrupted run never leaves a split that looks complete.
    """
    if num_images < 1:
        raise ValueError("a split needs at least one image")
    ann_path = os.path.join(root, "annotations", "instances_%s.json" % split)
    offset = SPLIT_ID_OFFSET.get(split, 3_000_000)
    file_names = {offset + i: "%012d.jpg" % (offset + i) for i in range(num_images)}
    with atomic_dir(os.path.join(root, split)) as image_dir:
        jobs = [(seed + hash_split(split), i, offset + i, os.path.join(image_dir, file_names[offset + i]))
                for i in range(num_images)]
        workers = workers or len(os.sched_getaffinity(0))
        with multiprocessing.get_context("fork").Pool(workers) as pool:
            results = list(tqdm(pool.imap(_draw_and_save, jobs, chunksize=8), total=num_images,
                                desc="drawing %s" % split, disable=not progress, unit="img"))
    images, annotations = [], []
    for image_id, width, height, anns in results:
        images.append({"id": image_id, "file_name": file_names[image_id], "width": width,
                       "height": height, "license": 1, "date_captured": "2026-01-01 00:00:00"})
        for ann in anns:
            ann.update(id=len(annotations) + 1, image_id=image_id)
            annotations.append(ann)
    write_json(ann_path, {
        "info": {"description": "ssdq synthetic shapes (embedded default)", "version": "1",
                 "year": 2026, "seed": seed, "split": split, "num_images": num_images,
                 "date_created": datetime.date(2026, 1, 1).isoformat()},
        "licenses": [{"id": 1, "name": "CC0", "url": ""}],
        "images": images,
        "annotations": annotations,
        "categories": CATEGORIES,
    })
    return ann_path


def hash_split(split):
    """A stable per-split seed offset (Python's hash() is salted per process)."""
    return sum((i + 1) * ord(c) for i, c in enumerate(split)) * 7919


def split_is_current(root, split, num_images, seed):
    """True if ``root`` already holds this exact split (same seed and size), images included."""
    ann_path = os.path.join(root, "annotations", "instances_%s.json" % split)
    try:
        with open(ann_path) as f:
            info = json.load(f).get("info", {})
    except (OSError, ValueError):
        return False
    if info.get("seed") != seed or info.get("num_images") != num_images:
        return False
    image_dir = os.path.join(root, split)
    return os.path.isdir(image_dir) and len(os.listdir(image_dir)) == num_images


def ensure_synthetic(root=DEFAULT_ROOT, splits=None, seed=DEFAULT_SEED, progress=True):
    """Generate the splits that are missing or stale; return {split: annotation path}."""
    splits = splits or DEFAULT_SPLITS
    paths = {}
    for split, n in splits.items():
        if not split_is_current(root, split, n, seed):
            generate_split(root, split, n, seed=seed, progress=progress)
        paths[split] = os.path.join(root, "annotations", "instances_%s.json" % split)
    return paths
