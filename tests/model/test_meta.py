"""Checkpoints ssdq did not write: a zoo VOC SSD exported by ``net.export`` and by
``export_block(preprocess=True)``, and GluonCV's shipped int8 graph bound to those weights."""
import json
import os

import numpy as np
import pytest

from ssdq.data.dataset import load_voc
from ssdq.data.loader import iterate_batches
from ssdq.errors import SsdqError
from ssdq.model.checkpoint import gluoncv_shipped_dir, load_checkpoint
from ssdq.model.graph import deployed_weights_mb, quantized_conv_nodes
from ssdq.model.meta import class_list, graph_precision, head_classes
from ssdq.model.predictor import Predictor

from helpers import assert_clean_error, run_cli

SHIPPED = "ssd_300_vgg16_atrous_voc_int8"


def shipped_prefix():
    folder = gluoncv_shipped_dir()
    path = os.path.join(folder or "", SHIPPED)
    if not os.path.isfile(path + "-symbol.json"):
        pytest.skip("gluoncv's wheel has no %s-symbol.json here" % SHIPPED)
    return path


def detections(ckpt, voc_root, tail="fast"):
    """Per image: the detections scoring over 0.05 as rows (class, score, box), sorted."""
    predictor = Predictor(ckpt, 2, tail=tail)
    dataset = load_voc(voc_root, "val", class_list("voc"))
    found = []
    for batch, _ in iterate_batches(dataset, 2, transform=predictor.input_format):
        ids, scores, boxes = predictor(batch)
        for n in range(len(ids)):
            rows = np.concatenate([ids[n], scores[n], boxes[n]], axis=1)
            rows = rows[rows[:, 1] > 0.05]
            found.append(rows[np.lexsort((rows[:, 2], rows[:, 1].round(4), rows[:, 0]))])
    return found


def assert_same_detections(a, b):
    """Same classes and scores; boxes to 0.1% (random box heads decode to huge boxes)."""
    assert len(a) == len(b)
    for x, y in zip(a, b):
        assert x.shape == y.shape
        assert (x[:, 0] == y[:, 0]).all()
        assert np.allclose(x[:, 1], y[:, 1], atol=1e-4)
        assert np.allclose(x[:, 2:], y[:, 2:], rtol=1e-3, atol=0.5)


def test_meta_is_read_from_the_graph_of_both_exports(voc_exports):
    plain = load_checkpoint(voc_exports["plain"], classes="voc")
    baked = load_checkpoint(voc_exports["baked"], classes="voc")
    for ckpt in (plain, baked):
        assert ckpt.inferred and ckpt.meta_inferred is ckpt.meta
        assert ckpt.precision == "fp32" and ckpt.meta["num_classes"] == 20
        assert ckpt.classes[:3] == ("aeroplane", "bicycle", "bird") and len(ckpt.classes) == 20
        assert ckpt.meta["nms"] == {"threshold": 0.45, "topk": 400, "post_nms": 100,
                                    "score_threshold": 0.01}
    assert plain.meta["input"]["layout"] == "NCHW"
    assert not plain.meta["input"]["preprocessing_in_graph"]
    baked_input = baked.meta["input"]
    assert baked_input["layout"] == "NHWC" and baked_input["preprocessing_in_graph"]
    assert np.allclose(baked_input["mean"], [123.675, 116.28, 103.53])
    assert np.allclose(baked_input["std"], [58.395, 57.12, 57.375])
    assert baked.input_format.shape(4) == (4, 300, 300, 3)
    assert plain.input_format.shape(4) == (4, 3, 300, 300)
    assert not [f for f in os.listdir(os.path.dirname(voc_exports["plain"])) if "meta" in f]


def test_both_exports_give_the_same_detections(voc_exports):
    plain = detections(load_checkpoint(voc_exports["plain"], classes="voc"), voc_exports["voc"])
    baked = detections(load_checkpoint(voc_exports["baked"], classes="voc"), voc_exports["voc"])
    assert len(plain) == 3 and all(len(rows) for rows in plain)
    assert_same_detections(plain, baked)


def test_eval_runs_both_exports_with_classes_voc(voc_exports, tmp_path):
    from ssdq.eval.evaluate import evaluate_checkpoint

    out = tmp_path / "baked.json"
    proc = run_cli("eval", "--model-prefix", voc_exports["baked"], "--classes", "voc",
                   "--data-root", voc_exports["voc"], "--batch-size", "2", "--quiet",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "VOC07 mAP" in proc.stdout
    baked = json.loads(out.read_text())
    plain = evaluate_checkpoint(load_checkpoint(voc_exports["plain"], classes="voc"),
                                load_voc(voc_exports["voc"], "val", class_list("voc")),
                                batch_size=2, progress=False, speed_repeats=1)
    assert baked["metric"] == "voc07" and baked["eval_loop"]["images"] == 3
    assert abs(plain["map"] - baked["map"]) < 0.5
    assert baked["meta_inferred"]["input"]["preprocessing_in_graph"] is True
    assert plain["meta_inferred"]["classes"] == list(class_list("voc"))
    assert "0..255" in baked["input"] and "ImageNet" in plain["input"]


def test_shipped_int8_graph_binds_to_the_exported_weights(voc_exports):
    shipped = load_checkpoint(shipped_prefix(), classes="voc",
                              params_file=voc_exports["plain"] + "-0000.params")
    assert shipped.precision == "int8" and graph_precision(shipped.symbol) == "int8"
    assert len(quantized_conv_nodes(shipped.symbol)) == 35
    fp32 = load_checkpoint(voc_exports["plain"], classes="voc")
    assert deployed_weights_mb(shipped.symbol, shipped.arg_params) < \
        0.3 * deployed_weights_mb(fp32.symbol, fp32.arg_params)
    assert shipped.meta["nms"]["topk"] == 200  # GluonCV's quantized SSDs: nms_topk 200
    fast = Predictor(shipped, 2, tail="fast")
    assert fast.tail == "fast"  # its pre-box_decode decoder is recognised
    fast_found = detections(shipped, voc_exports["voc"], "fast")
    graph_found = detections(shipped, voc_exports["voc"], "graph")
    assert_same_detections(fast_found, graph_found)


def test_eval_shipped_int8_with_params(voc_exports, tmp_path):
    shipped_prefix()
    out = tmp_path / "shipped.json"
    proc = run_cli("eval", "--model-prefix", SHIPPED, "--params",
                   voc_exports["plain"] + "-0000.params", "--classes", "voc",
                   "--data-root", voc_exports["voc"], "--batch-size", "2", "--quiet",
                   "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    result = json.loads(out.read_text())
    assert result["precision"] == "int8" and result["params_file"].endswith("exported-0000.params")
    assert result["meta_inferred"]["precision"] == "int8"
    proc = run_cli("eval", "--model-prefix", SHIPPED, "--classes", "voc",
                   "--data-root", voc_exports["voc"], "--quiet")
    assert_clean_error(proc, "--params FILE")


def test_class_list_must_match_the_class_head(voc_exports, tmp_path):
    with pytest.raises(SsdqError, match="lists 80 classes but the graph's class head predicts 20"):
        load_checkpoint(voc_exports["plain"], classes="coco")
    names = tmp_path / "names.txt"
    names.write_text("\n".join("c%d" % i for i in range(20)) + "\n")
    assert load_checkpoint(voc_exports["plain"], classes=str(names)).classes[-1] == "c19"
    with pytest.raises(SsdqError, match="not coco, voc or a file"):
        class_list(str(tmp_path / "missing.txt"))
    ckpt = load_checkpoint(voc_exports["plain"])  # no classes: bench needs none, eval does
    assert ckpt.classes == () and head_classes(ckpt.symbol, (1, 3, 300, 300)) == 20
    with pytest.raises(SsdqError, match="pass --classes"):
        ckpt.require_classes()


def test_a_graph_that_is_no_ssd_is_a_one_line_error(tmp_path):
    import mxnet as mx

    net = mx.gluon.nn.HybridSequential()
    net.add(mx.gluon.nn.Conv2D(4, 3), mx.gluon.nn.Activation("relu"))
    net.initialize()
    net.hybridize()
    net(mx.nd.zeros((1, 3, 32, 32)))
    net.export(str(tmp_path / "convnet"))
    proc = run_cli("eval", "--model-prefix", str(tmp_path / "convnet"), "--classes", "voc",
                   "--quiet")
    assert_clean_error(proc, "not a GluonCV SSD graph", "class softmax", "box_nms")


def test_precision_of_ssdq_graphs(fp32_prefix, int8_prefix):
    assert graph_precision(load_checkpoint(fp32_prefix).symbol) == "fp32"
    assert graph_precision(load_checkpoint(int8_prefix).symbol) == "int8"
