"""Shared fixtures: a small slice of the embedded dataset and checkpoints made from it.

The slices use the default seed, so ``tiny_data``'s val images are the first images of the real
default val split: the trained reference model is scored on data it has never seen.
"""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SPLITS = {"train": 32, "val": 64}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from ssdq.data.synthetic import ensure_synthetic

    root = str(tmp_path_factory.mktemp("data") / "synthetic")
    ensure_synthetic(root, TINY_SPLITS, progress=False)
    return root


@pytest.fixture(scope="session")
def fp32_prefix(tmp_path_factory):
    from ssdq.model.convert import convert

    return convert(str(tmp_path_factory.mktemp("ckpt") / "converted"), model="reference")


@pytest.fixture(scope="session")
def int8_prefix(fp32_prefix, tiny_data):
    from ssdq.data.dataset import open_dataset
    from ssdq.quant.quantize import quantize

    out = os.path.join(os.path.dirname(fp32_prefix), "quantized")
    return quantize(fp32_prefix, out, open_dataset(tiny_data, "train"), num_calib_batches=2,
                    batch_size=16, progress=False)


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


@pytest.fixture(scope="session")
def voc_exports(tmp_path_factory):
    """A full-size zoo VOC SSD (ssd_300_vgg16_atrous_voc) with random, seeded weights, saved
    the two ways users do -- ``net.export`` and ``export_block(preprocess=True)`` -- beside a
    3-image VOC folder: {"plain": prefix, "baked": prefix, "voc": root}. No meta files."""
    import mxnet as mx
    from gluoncv.utils.export_helper import export_block

    from ssdq.data.dataset import load_voc
    from ssdq.data.loader import iterate_batches
    from ssdq.model.ssd import random_zoo_ssd

    folder = tmp_path_factory.mktemp("plain_exports")
    voc = make_voc_folder(str(folder / "voc"))
    from gluoncv.data import VOCDetection

    sample, _ = next(iterate_batches(load_voc(voc, "val", VOCDetection.CLASSES), 3))
    net, _ = random_zoo_ssd("ssd_300_vgg16_atrous_voc", sample)
    net.hybridize()
    net(mx.nd.zeros((1, 3, 300, 300)))
    net.export(str(folder / "exported"), epoch=0)
    export_block(str(folder / "baked"), net, data_shape=(300, 300, 3), preprocess=True,
                 layout="HWC")
    return {"plain": str(folder / "exported"), "baked": str(folder / "baked"), "voc": voc}


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


@pytest.fixture
def fake_host(tmp_path):
    """Build a fake host as a real sysfs tree: ``fake_host(nodes={0: "0-3,8-11"}, siblings=...)``.

    ``siblings``: a list (index = CPU) of thread_siblings_list strings, a function cpu -> string,
    or None (no topology files). ``has_memory``: node numbers with memory (default: every node).
    ``cpus_allowed`` / ``mems_allowed``: the process status file written at ROOT/status.
    Returns ROOT (a str) for ``sysfs_root``.
    """
    count = [0]

    def build(nodes, siblings=None, has_memory=None, cpus_allowed=None, mems_allowed=None,
              distances=None):
        from ssdq.host.topology import parse_cpu_list

        count[0] += 1
        root = tmp_path / ("sys%d" % count[0])
        node_dir = root / "devices" / "system" / "node"
        cpu_dir = root / "devices" / "system" / "cpu"
        node_dir.mkdir(parents=True)
        all_cpus = sorted(c for text in nodes.values() for c in parse_cpu_list(text))
        for n, text in nodes.items():
            (node_dir / ("node%d" % n)).mkdir()
            (node_dir / ("node%d" % n) / "cpulist").write_text(text + "\n")
            if distances:
                (node_dir / ("node%d" % n) / "distance").write_text(
                    " ".join(str(d) for d in distances[n]) + "\n")
        memory = sorted(nodes) if has_memory is None else has_memory
        (node_dir / "has_cpu").write_text(
            ",".join(str(n) for n in sorted(nodes) if nodes[n]) + "\n")
        (node_dir / "has_memory").write_text(",".join(map(str, memory)) + "\n")
        for cpu in all_cpus:
            topo = cpu_dir / ("cpu%d" % cpu) / "topology"
            topo.mkdir(parents=True)
            if siblings is not None:
                text = siblings(cpu) if callable(siblings) else siblings[cpu]
                (topo / "thread_siblings_list").write_text(text + "\n")
        (root / "status").write_text(
            "Name:\tpython\nCpus_allowed_list:\t%s\nMems_allowed_list:\t%s\n" % (
                cpus_allowed or "%d-%d" % (all_cpus[0], all_cpus[-1]),
                mems_allowed or ",".join(map(str, memory))))
        return str(root)

    return build


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
