"""Helpers the tests share (``from helpers import run_cli``): real processes, files other tools
write, clean-error checks. Fixtures live in conftest.py."""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# a test that tells one core from two (pinning, waves of two trials) cannot run on one
needs_two_cpus = pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2,
                                    reason="needs two CPUs this process may use")


def run_cli(*args, cwd=None, env=None):
    """Run ``python -m ssdq ARGS`` in a fresh process; return CompletedProcess (text)."""
    full_env = dict(os.environ, PYTHONPATH=REPO, MXNET_SUBGRAPH_VERBOSE="0")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "ssdq", *args], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=600)


def assert_clean_error(proc, *fragments):
    """Exit status 2, one line on stderr starting 'ssdq: error:', no traceback (notes about the
    data that came before the error, one line each, may precede it)."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip() and not l.startswith("ssdq: note: ")]
    assert len(lines) == 1 and lines[0].startswith("ssdq: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def assert_rates_are_the_runs(timing, runs=2):
    """A speed record (``timing.summarize``'s fields) of ``runs`` timed runs of ``batch_size``
    images each is what those runs say: the fastest run's img/s is the batch over the shortest
    latency, the slowest's over the longest, and the median img/s the median of the runs' (of
    two runs, the mean of the two)."""
    assert timing["repeats"] == runs == 2, timing
    per_ms = timing["batch_size"] * 1000.0
    assert timing["images_per_sec_max"] == pytest.approx(per_ms / timing["latency_ms_min"])
    assert timing["images_per_sec_min"] == pytest.approx(per_ms / timing["latency_ms_max"])
    assert timing["images_per_sec"] == pytest.approx(
        (timing["images_per_sec_min"] + timing["images_per_sec_max"]) / 2)


VOC_IMAGES = (("000001", [("dog", 40, 60, 300, 330), ("person", 320, 30, 470, 360)]),
              ("000002", [("car", 20, 120, 420, 300)]),
              ("000003", [("cat", 100, 80, 260, 250), ("bottle", 300, 40, 360, 200)]))


def make_voc_folder(root, images=VOC_IMAGES, split="val"):
    """A tiny VOC-format folder: JPEGs with coloured boxes where the annotations say."""
    import cv2
    import numpy as np

    for sub in ("JPEGImages", "Annotations", os.path.join("ImageSets", "Main")):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    rng = np.random.RandomState(14)
    for name, objects in images:
        img = rng.randint(0, 80, (400, 500, 3)).astype(np.uint8)
        xml = ["<annotation><size><width>500</width><height>400</height><depth>3</depth></size>"]
        for cls, x1, y1, x2, y2 in objects:
            cv2.rectangle(img, (x1, y1), (x2, y2), [int(c) for c in rng.randint(100, 255, 3)], -1)
            xml.append("<object><name>%s</name><difficult>0</difficult><bndbox><xmin>%d</xmin>"
                       "<ymin>%d</ymin><xmax>%d</xmax><ymax>%d</ymax></bndbox></object>"
                       % (cls, x1 + 1, y1 + 1, x2 + 1, y2 + 1))
        cv2.imwrite(os.path.join(root, "JPEGImages", name + ".jpg"), img)
        with open(os.path.join(root, "Annotations", name + ".xml"), "w") as f:
            f.write("".join(xml) + "</annotation>")
    with open(os.path.join(root, "ImageSets", "Main", split + ".txt"), "w") as f:
        f.write("".join(name + "\n" for name, _ in images))
    return root


def add_exif_orientation(jpeg, orientation):
    """The JPEG bytes with an EXIF APP1 segment holding just an Orientation tag (0x0112)."""
    import struct

    tiff = (b"MM\x00\x2a" + struct.pack(">I", 8) + struct.pack(">H", 1)
            + struct.pack(">HHIHH", 0x0112, 3, 1, orientation, 0) + struct.pack(">I", 0))
    payload = b"Exif\x00\x00" + tiff
    return jpeg[:2] + b"\xff\xe1" + struct.pack(">H", len(payload) + 2) + payload + jpeg[2:]


def write_labelme_export(out_dir, source_root, count, names, split="val"):
    """A COCO file as labelme's labelme2coco writes it, from the first ``count`` images of a
    COCO-layout split: ``annotations.json`` beside ``JPEGImages/``, image and annotation ids from
    0, a ``_background_`` category (id 0, no annotations), the source categories renamed to
    ``names`` (in id order). Returns the annotation file's path."""
    import json
    import shutil

    with open(os.path.join(source_root, "annotations", "instances_%s.json" % split)) as f:
        source = json.load(f)
    os.makedirs(os.path.join(out_dir, "JPEGImages"), exist_ok=True)
    images = sorted(source["images"], key=lambda i: i["id"])[:count]
    new_image_id = {img["id"]: i for i, img in enumerate(images)}
    cats = sorted(source["categories"], key=lambda c: c["id"])
    new_cat_id = {c["id"]: i + 1 for i, c in enumerate(cats)}
    out = {"info": {"description": "labelme-style export"}, "licenses": [],
           "images": [], "annotations": [],
           "categories": [{"supercategory": None, "id": 0, "name": "_background_"}]
           + [{"supercategory": None, "id": new_cat_id[c["id"]], "name": n} for c, n in zip(cats, names)]}
    for img in images:
        file_name = "JPEGImages/%s" % os.path.basename(img["file_name"])
        shutil.copy(os.path.join(source_root, split, img["file_name"]), os.path.join(out_dir, file_name))
        out["images"].append({"license": 0, "url": None, "file_name": file_name, "height": img["height"],
                              "width": img["width"], "date_captured": None, "id": new_image_id[img["id"]]})
    for ann in source["annotations"]:
        if ann["image_id"] in new_image_id:
            out["annotations"].append({
                "id": len(out["annotations"]), "image_id": new_image_id[ann["image_id"]],
                "category_id": new_cat_id[ann["category_id"]], "segmentation": [],
                "area": ann["area"], "bbox": ann["bbox"], "iscrowd": ann.get("iscrowd", 0)})
    path = os.path.join(out_dir, "annotations.json")
    with open(path, "w") as f:
        json.dump(out, f)
    return path


def write_labelme_voc_export(out_dir, source_root, count, split="val", size=True):
    """A VOC folder as labelme's labelme2voc writes it, from the first ``count`` images of a
    COCO-layout split: ``JPEGImages/`` and ``Annotations/`` only (no ``ImageSets/``), empty
    ``<folder/>``, ``<database/>``, ``<annotation/>``, ``<pose/>``, ``<truncated/>`` and
    ``<difficult/>`` tags, and float coordinates (each COCO box edge + 0.5, so a VOC reader's box
    is the COCO box - 0.5). ``size=False`` leaves ``<size>`` out. Returns ``out_dir``."""
    import json
    import shutil

    with open(os.path.join(source_root, "annotations", "instances_%s.json" % split)) as f:
        source = json.load(f)
    for sub in ("JPEGImages", "Annotations"):
        os.makedirs(os.path.join(out_dir, sub), exist_ok=True)
    names = {c["id"]: c["name"] for c in source["categories"]}
    with open(os.path.join(out_dir, "class_names.txt"), "w") as f:
        f.write("_background_\n" + "".join(n + "\n" for _, n in sorted(names.items())))
    for img in sorted(source["images"], key=lambda i: i["id"])[:count]:
        base = os.path.splitext(os.path.basename(img["file_name"]))[0]
        shutil.copy(os.path.join(source_root, split, img["file_name"]),
                    os.path.join(out_dir, "JPEGImages", base + ".jpg"))
        xml = ["<annotation>", "  <folder/>", "  <filename>%s.jpg</filename>" % base,
               "  <database/>", "  <annotation/>", "  <image/>"]
        if size:
            xml.append("  <size><height>%d</height><width>%d</width><depth>3</depth></size>"
                       % (img["height"], img["width"]))
        xml.append("  <segmented/>")
        for ann in source["annotations"]:
            if ann["image_id"] != img["id"]:
                continue
            x, y, w, h = ann["bbox"]
            xml += ["  <object>", "    <name>%s</name>" % names[ann["category_id"]],
                    "    <pose/>", "    <truncated/>", "    <difficult/>", "    <bndbox>",
                    "      <xmin>%r</xmin>" % (x + 0.5), "      <ymin>%r</ymin>" % (y + 0.5),
                    "      <xmax>%r</xmax>" % (x + w + 0.5), "      <ymax>%r</ymax>" % (y + h + 0.5),
                    "    </bndbox>", "  </object>"]
        xml.append("</annotation>")
        with open(os.path.join(out_dir, "Annotations", base + ".xml"), "w") as f:
            f.write("\n".join(xml) + "\n")
    return out_dir
