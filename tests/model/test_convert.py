import json
import os

import mxnet as mx
import numpy as np
import pytest

from ssdq.data.dataset import open_dataset
from ssdq.data.loader import iterate_batches
from ssdq.errors import SsdqError
from ssdq.model.checkpoint import checkpoint_files, load_checkpoint
from ssdq.model.convert import build_gluon_model, convert


def test_batchnorm_is_folded_and_outputs_unchanged(fp32_prefix, tiny_data):
    """Export folds the BatchNorms, the anchor tables and L2Norm's channel scale away
    (model.fold), keeps the input's ``init_scale`` multiply, and the raw predictions stay the
    Gluon network's."""
    ckpt = load_checkpoint(fp32_prefix)
    ops = [n["op"] for n in json.loads(ckpt.symbol.tojson())["nodes"]]
    assert "BatchNorm" not in ops and ops.count("Convolution") == 35
    assert ops.count("broadcast_mul") == 1 and "slice_like" not in ops
    assert ckpt.meta["batchnorm_folded"] == 23 and ckpt.meta["folded"]["anchor_slices"] == 6
    scales = [f["scale"] for f in ckpt.meta["folded"]["channel_scales"]]
    assert len(scales) == 1 and scales[0].endswith("normalize_scale")
    assert not any(k.endswith("normalize_scale") for k in ckpt.arg_params)
    assert any(k.endswith("init_scale") for k in ckpt.arg_params)
    net, _ = build_gluon_model("reference")
    batch, _ = next(iterate_batches(open_dataset(tiny_data, "val").subset(4), 4))
    # Compare the raw class and box predictions (before decoding and NMS) of both graphs.
    gluon_cls, gluon_box, _ = _raw_predictions_gluon(net, batch)
    internals = ckpt.symbol.get_internals()
    names = internals.list_outputs()
    heads = [n for n in names if n.endswith("concat0_output") or n.endswith("concat1_output")]
    exe = mx.sym.Group([internals[n] for n in heads]).bind(
        mx.cpu(), dict(ckpt.arg_params, data=mx.nd.array(batch)), aux_states=ckpt.aux_params)
    outs = [o.asnumpy() for o in exe.forward()]
    np.testing.assert_allclose(outs[0].reshape(gluon_cls.shape), gluon_cls, rtol=1e-3, atol=1e-3)
    np.testing.assert_allclose(outs[1].reshape(gluon_box.shape), gluon_box, rtol=1e-3, atol=1e-3)


def _raw_predictions_gluon(net, batch):
    with mx.autograd.predict_mode():
        features = net.features(mx.nd.array(batch))
        cls = [cp(f).transpose((0, 2, 3, 1)).flatten() for f, cp in zip(features, net.class_predictors)]
        box = [bp(f).transpose((0, 2, 3, 1)).flatten() for f, bp in zip(features, net.box_predictors)]
    return (mx.nd.concat(*cls, dim=1).asnumpy(), mx.nd.concat(*box, dim=1).asnumpy(), None)


def test_meta_records_what_the_graph_cannot(fp32_prefix):
    meta = load_checkpoint(fp32_prefix).meta
    assert meta["precision"] == "fp32" and len(meta["classes"]) == 6
    assert meta["input"]["mean"] == [0.485, 0.456, 0.406] and meta["input"]["shape"] == [1, 3, 300, 300]
    assert meta["nms"] == {"threshold": 0.45, "topk": 400, "post_nms": 100}
    assert meta["versions"]["mxnet"] == mx.__version__
    assert all(os.path.isfile(p) for p in checkpoint_files(fp32_prefix).values())


def test_unknown_model_name(tmp_path):
    with pytest.raises(SsdqError, match="unknown model name"):
        convert(str(tmp_path / "x"), model="ssd_300_vgg17_nonexistent")
    assert os.listdir(tmp_path) == []


def test_zoo_model_offline_names_params_flag(tmp_path, monkeypatch):
    monkeypatch.setenv("MXNET_GLUON_REPO", "http://127.0.0.1:9/")  # refused at once
    monkeypatch.setenv("MXNET_HOME", str(tmp_path / "mxhome"))
    with pytest.raises(SsdqError, match="--params"):
        convert(str(tmp_path / "x"), model="ssd_512_mobilenet1.0_voc")
    assert not os.path.exists(str(tmp_path / "x-meta.json"))


def _random_mobilenet_ssd():
    """A zoo SSD with random weights and valid BatchNorm statistics: ``initialize()`` draws the
    expansion layers' ``moving_var`` (no 'ones' initializer of its own) uniformly in
    [-0.07, 0.07], which no trained model has; we draw every variance in [0.5, 1.5]."""
    from gluoncv import model_zoo

    net = model_zoo.get_model("ssd_512_mobilenet1.0_voc", pretrained=False, pretrained_base=False)
    net.initialize()
    net(mx.nd.zeros((1, 3, 300, 300)))
    rng = np.random.default_rng(0)
    for param in net.collect_params(".*(running|moving)_var").values():
        param.set_data(mx.nd.array(rng.uniform(0.5, 1.5, param.shape)))
    return net


def test_zoo_model_with_params_file(tmp_path):
    net = _random_mobilenet_ssd()
    weights = str(tmp_path / "w.params")
    net.save_parameters(weights)
    with np.errstate(invalid="raise"):  # no "invalid value encountered in sqrt"
        prefix = convert(str(tmp_path / "zoo"), model="ssd_512_mobilenet1.0_voc", params_file=weights)
    ckpt = load_checkpoint(prefix)
    meta = ckpt.meta
    assert meta["model"] == "ssd_512_mobilenet1.0_voc" and meta["classes"][0] == "aeroplane"
    assert meta["batchnorm_folded"] > 10
    assert all(np.isfinite(v.asnumpy()).all() for v in ckpt.arg_params.values())


def test_negative_batchnorm_variance_is_a_clean_error(tmp_path):
    net = _random_mobilenet_ssd()
    bad = next(n for n in net.collect_params(".*(running|moving)_var").keys()
               if "expand_trans_bn0" in n)
    var = net.collect_params()[bad].data().asnumpy()
    var[7] = -1.0
    net.collect_params()[bad].set_data(mx.nd.array(var))
    weights = str(tmp_path / "w.params")
    net.save_parameters(weights)
    with pytest.raises(SsdqError, match=r"BatchNorm \S*expand_trans_bn0 has \d+ channel.*corrupt"):
        convert(str(tmp_path / "zoo"), model="ssd_512_mobilenet1.0_voc", params_file=weights)
    assert os.listdir(tmp_path) == ["w.params"]


def test_wrong_or_missing_params_file(tmp_path):
    with pytest.raises(SsdqError, match="weights file not found"):
        convert(str(tmp_path / "x"), model="reference", params_file=str(tmp_path / "none.params"))
    bogus = tmp_path / "bogus.params"
    bogus.write_bytes(b"\x00" * 100)
    with pytest.raises(SsdqError, match="cannot load weights"):
        convert(str(tmp_path / "x"), model="reference", params_file=str(bogus))
    assert sorted(os.listdir(tmp_path)) == ["bogus.params"]


def test_the_folded_checkpoint_goes_back_into_the_gluon_network(fp32_prefix, tiny_data):
    """What fine-tuning (and QAT) start from: the BN-free Gluon network holding the folded
    weights gives the checkpoint's detections, the folded scales back as ones."""
    from ssdq.model.convert import bn_free_reference
    from ssdq.model.predictor import Predictor

    ckpt = load_checkpoint(fp32_prefix)
    batch, _ = next(iterate_batches(open_dataset(tiny_data, "val").subset(2), 2))
    ids, scores, boxes = bn_free_reference(ckpt)(mx.nd.array(batch))
    want = Predictor(ckpt, 2, tail="graph")(batch)
    np.testing.assert_allclose(scores.asnumpy(), want[1], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(boxes.asnumpy(), want[2], rtol=1e-4, atol=1e-3)
