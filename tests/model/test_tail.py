"""The vectorised SSD tail gives GluonCV's detections, and the cut at the raw predictions is right."""
import json
import os

import numpy as np
import pytest

from ssdq.data.dataset import open_dataset
from ssdq.data.loader import iterate_batches
from ssdq.eval.loop import detect
from ssdq.eval.metrics import evaluator_for
from ssdq.model.checkpoint import load_checkpoint
from ssdq.model.predictor import Predictor
from ssdq.model.tail import fast_detection_symbol, graph_tail


def _detections(outputs):
    """Per image: the set of (class, rounded score, rounded box) kept, order ignored (ties)."""
    ids, scores, boxes = outputs
    return [{(int(i), round(float(s), 5), tuple(np.round(b, 3)))
             for i, s, b in zip(ids[n, :, 0], scores[n, :, 0], boxes[n]) if s > 0}
            for n in range(len(ids))]


def test_tail_settings_are_read_from_the_graph(fp32_prefix):
    tail = graph_tail(load_checkpoint(fp32_prefix).symbol)
    assert tail["nms"] == {"overlap_thresh": 0.45, "topk": 400, "valid_thresh": 0.01,
                           "force_suppress": False}
    assert tail["score_thresh"] == 0.01 and tail["post_nms"] == 100
    assert tail["stds"] == (0.1, 0.1, 0.2, 0.2)


def test_fast_tail_is_two_topks_not_a_slice_per_class(fp32_prefix):
    fast = fast_detection_symbol(load_checkpoint(fp32_prefix).symbol, (2, 3, 300, 300))
    ops = [n["op"] for n in json.loads(fast.tojson())["nodes"]]
    assert ops.count("topk") == 2 and ops.count("_contrib_box_nms") == 1
    original = [n["op"] for n in json.loads(load_checkpoint(fp32_prefix).symbol.tojson())["nodes"]]
    assert ops.count("slice_axis") < original.count("slice_axis")


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_fast_tail_keeps_the_detections_and_the_map(which, fp32_prefix, int8_prefix, tiny_data):
    ckpt = load_checkpoint(fp32_prefix if which == "fp32" else int8_prefix)
    val = open_dataset(tiny_data, "val")
    graph, fast = Predictor(ckpt, 16, tail="graph"), Predictor(ckpt, 16, tail="fast")
    batch, _ = next(iterate_batches(val.subset(16), 16))
    assert _detections(graph(batch)) == _detections(fast(batch))
    maps = [detect(p, val, evaluator_for(val), 16, progress=False)[0]["map"] for p in (graph, fast)]
    assert maps[0] > 30 and abs(maps[0] - maps[1]) < 0.1, maps


def test_network_scope_stops_at_the_raw_predictions(fp32_prefix, tiny_data):
    ckpt = load_checkpoint(fp32_prefix)
    batch, _ = next(iterate_batches(open_dataset(tiny_data, "val").subset(2), 2))
    logits, offsets = Predictor(ckpt, 2, tail="none")(batch)
    assert logits.shape == (2, 8732, len(ckpt.classes) + 1) and offsets.shape == (2, 8732, 4)


def test_unrecognised_decoder_falls_back_to_the_graph_tail(voc_exports, tmp_path):
    """GluonCV's shipped int8 graph decodes boxes without box_decode; ssdq recognises that
    decoder, and when it cannot (here: a non-zero mean added to the offsets, which box_decode
    cannot express) the graph's own tail runs and the predictor says so."""
    import mxnet as mx

    from ssdq.model.checkpoint import Checkpoint, gluoncv_shipped_dir

    shipped = os.path.join(gluoncv_shipped_dir() or "", "ssd_300_vgg16_atrous_voc_int8")
    if not os.path.isfile(shipped + "-symbol.json"):
        pytest.skip("gluoncv's wheel has no ssd_300_vgg16_atrous_voc_int8-symbol.json here")
    ckpt = load_checkpoint(shipped, params_file=voc_exports["plain"] + "-0000.params")
    tail = graph_tail(ckpt.symbol)
    assert tail["stds"] == (0.1, 0.1, 0.2, 0.2) and tail["anchors"].startswith("ssd0_reshape")
    graph = json.loads(ckpt.symbol.tojson())
    for node in graph["nodes"]:
        if node["op"] == "_plus_scalar" and "boxcenterdecoder" in node["name"]:
            node["attrs"]["scalar"] = "0.5"
    changed = Checkpoint(ckpt.prefix, mx.sym.load_json(json.dumps(graph)), ckpt.arg_params,
                         ckpt.aux_params, ckpt.meta)
    assert "box" not in graph_tail(changed.symbol)
    predictor = Predictor(changed, 1)
    assert predictor.tail == "graph" and "decoder not recognised" in predictor.graph
    ids, scores, boxes = predictor(np.zeros((1, 3, 300, 300), np.float32))
    assert boxes.shape == (1, 100, 4)
