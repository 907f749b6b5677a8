"""Quantization-aware training exports the real oneDNN int8 graph of what it trained."""
import json

import numpy as np
import pytest

from helpers import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def qat_run(tiny_data, tmp_path_factory):
    from ssdq.data.dataset import open_dataset
    from ssdq.model.convert import network_from
    from ssdq.model.weights import REFERENCE_WEIGHTS
    from ssdq.quant.options import CalibOptions, QatOptions
    from ssdq.quant.qat import qat

    out = str(tmp_path_factory.mktemp("qat") / "not-yet" / "qat")  # the folder is made
    net, source = network_from(REFERENCE_WEIGHTS)
    train = open_dataset(tiny_data, "train")
    run = qat(out, net, source, train, train, open_dataset(tiny_data, "val").subset(16),
              QatOptions(epochs=1, train_images=16, train_batch_size=8),
              CalibOptions(num_calib_batches=1), select_set=open_dataset(tiny_data, "dev").subset(8),
              batch_size=16, progress=False, log=lambda *a: None)
    return out, run


def test_the_export_is_a_real_int8_graph_with_the_trained_ranges(qat_run):
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.graph import quantized_conv_nodes

    prefix, run = qat_run
    ckpt = load_checkpoint(prefix)
    assert ckpt.meta["precision"] == "int8"
    assert len(quantized_conv_nodes(ckpt.symbol)) >= 30  # of 35 convolutions
    with open(prefix + "-calib.json") as f:
        calib = json.load(f)
    thresholds = calib.get("thresholds", calib)
    for key, t in run["trained_ranges"].items():
        lo, hi = thresholds[key]
        assert hi == pytest.approx(t) and lo in (0.0, pytest.approx(-t)), key
    assert load_checkpoint(prefix + "-fp32").meta["precision"] == "fp32"


def test_the_kept_epoch_holds_its_ranges_and_weights(qat_run):
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.convert import convert

    prefix, run = qat_run
    start, trained = run["starting_ranges"], run["trained_ranges"]
    assert set(trained) == set(start) and len(start) > 30
    moved = [k for k, t in trained.items() if abs(t - start[k]) > 1e-6 * start[k]]
    weights = load_checkpoint(prefix + "-fp32").arg_params
    shipped = load_checkpoint(convert(prefix + "-shipped", model="reference")).arg_params
    name = "ssd0_convpredictor0_conv0_weight"
    same = np.allclose(weights[name].asnumpy(), shipped[name].asnumpy(), atol=1e-6)
    if run["kept_epoch"] == 0:  # dev preferred the start: everything is put back
        assert not moved and same
    else:
        assert len(moved) > len(start) // 2 and not same


def test_gradients_reach_every_trained_range(tiny_data, tmp_path):
    import mxnet as mx

    from ssdq.data.dataset import open_dataset
    from ssdq.data.loader import iterate_batches
    from ssdq.model.convert import export_checkpoint, network_from
    from ssdq.model.weights import REFERENCE_WEIGHTS
    from ssdq.quant.calibrated import Calibrated
    from ssdq.quant.fakequant import quantize_network
    from ssdq.quant.options import CalibOptions
    from ssdq.quant.qat import plan_layers

    net, source = network_from(REFERENCE_WEIGHTS)
    data = open_dataset(tiny_data, "train")
    calibrated = Calibrated(export_checkpoint(net, source, str(tmp_path / "start")), data,
                            data.subset(4), CalibOptions(num_calib_batches=1), batch_size=4,
                            progress=False)
    ranges, restore = quantize_network(net, plan_layers(calibrated.ckpt.symbol, calibrated))
    images, _ = next(iterate_batches(data, 2))
    with mx.autograd.record():
        cls, box, _ = net(mx.nd.array(images))
        (cls.sum() + box.sum()).backward()
    grads = {key: float(p.grad().abs().sum().asscalar()) for key, p in ranges.items()}
    assert sum(g > 0 for g in grads.values()) > 0.9 * len(grads), grads
    restore()
    assert not any("qat" in name for name in net.collect_params())


def test_the_command_checks_its_simulator_against_the_real_graph(qat_run):
    prefix, run = qat_run
    with open(prefix + "-qat.json") as f:
        record = json.load(f)
    check = record["check"]
    assert check["tolerance"] == 0.15
    assert check["difference"] == pytest.approx(check["onednn_int8_map"] - check["fake_quant_map"],
                                                abs=2e-3)
    assert check["within"] == (abs(check["difference"]) <= 0.15)
    assert abs(check["difference"]) <= 1.0  # 16 images: a coarse bound, the 500-image one is 0.15
    assert record["val_map"] == check["onednn_int8_map"]
    scored = [h for h in record["history"] if "dev_map" in h and "epoch" in h]
    assert [h["epoch"] for h in scored] == [0, 1]
    assert not any("val_map" in h for h in record["history"])  # val: once, at the end
    assert record["kept_epoch"] in (0, 1) and record["select_split"] == "dev"
    assert len(record["epoch_minutes"]) == 1


def test_the_trained_batchnorm_weights_load_back(qat_run):
    import mxnet as mx

    from ssdq.model.convert import network_from

    prefix, run = qat_run
    saved = mx.nd.load(run["bn_params"])
    for source_prefix in (prefix + "-fp32", prefix):  # the int8 checkpoint points at them too
        net, source = network_from(source_prefix)
        assert source["bn_source"] == source_prefix
        params = net._collect_params_with_prefix()  # the names save_parameters writes
        gammas = [n for n in saved if n.endswith("gamma")]
        assert len(gammas) > 10
        for name in gammas:
            np.testing.assert_array_equal(params[name].data().asnumpy(), saved[name].asnumpy())


def test_first_last_fp32_keeps_the_first_conv_and_the_heads(variants):
    from ssdq.quant.qat import plan_layers

    plan = plan_layers(variants.ckpt.symbol, variants, first_last_fp32=True)
    fp32 = sorted(name for name, step in plan.items() if not step["weights_int8"])
    assert "ssd0_thinvggatrousextractor0_conv0" in fp32
    assert sum("convpredictor" in name for name in fp32) == 12
    assert len(fp32) == 13
    every = plan_layers(variants.ckpt.symbol, variants)
    assert all(step["weights_int8"] for step in every.values()) or variants.excluded


def test_fake_quant_weights_sit_on_the_int8_grid():
    import mxnet as mx

    from ssdq.quant.fakequant import fake_quant_weight

    w = mx.nd.array(np.random.RandomState(0).randn(4, 3, 3, 3))
    q = fake_quant_weight(mx.nd, w).asnumpy()
    for c in range(4):
        step = np.abs(w[c].asnumpy()).max() / 127.5
        levels = q[c] / step
        np.testing.assert_allclose(levels, np.round(levels), atol=1e-3)
        assert np.abs(levels).max() <= 128


def test_qat_cli_refuses_bad_settings_cleanly(tmp_path):
    proc = run_cli("qat", "--epochs", "-1", "--quiet", "--out", str(tmp_path / "x"))
    assert_clean_error(proc, "--epochs")
    proc = run_cli("qat", "--params", str(tmp_path / "missing"), "--quiet",
                   "--out", str(tmp_path / "x"))
    assert_clean_error(proc, "missing")
    proc = run_cli("qat", "--calib-mode", "entropy", "--quiet")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr


def test_a_clip_plan_bounds_every_convolution_output():
    import tempfile

    import mxnet as mx

    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.convert import bn_free_reference, convert
    from ssdq.model.layers import list_layers
    from ssdq.quant.fakequant import clip_plan, quantize_network

    with tempfile.TemporaryDirectory() as tmp:
        ckpt = load_checkpoint(convert(tmp + "/c", model="reference"))
    net = bn_free_reference(ckpt)
    x = mx.nd.array(np.random.RandomState(0).rand(1, 3, 300, 300) * 4 - 2)
    with mx.autograd.predict_mode():
        features = net.features(x)
        before = max(float(f.abs().max().asscalar()) for f in features)
        ranges, restore = quantize_network(net, clip_plan(list_layers(ckpt.symbol), -1))
        clipped = net.features(x)
        heads = [p(f) for p, f in zip(net.class_predictors, clipped)]
    assert before > 0.5
    assert all(float(f.abs().max().asscalar()) <= 0.5 + 1e-6 for f in clipped)
    assert all(float(h.abs().max().asscalar()) <= 0.5 + 1e-6 for h in heads)
    assert all(p.grad_req == "null" for p in ranges.values())  # fixed clips, not trained
    restore()


def test_the_fake_quantized_network_computes_what_the_int8_graph_computes(tiny_data, tmp_path):
    """The simulator at the tensor level: the raw class logits and box offsets of the
    fake-quantized Gluon network against those of the oneDNN int8 graph built from the same
    weights and ranges."""
    import mxnet as mx

    from ssdq.data.dataset import open_dataset
    from ssdq.data.loader import iterate_batches
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.convert import export_checkpoint, network_from
    from ssdq.model.predictor import Predictor
    from ssdq.model.weights import REFERENCE_WEIGHTS
    from ssdq.quant.calibrated import Calibrated
    from ssdq.quant.fakequant import quantize_network
    from ssdq.quant.options import CalibOptions
    from ssdq.quant.qat import plan_layers
    from ssdq.quant.quantize import build_int8, save_int8

    net, source = network_from(REFERENCE_WEIGHTS)
    data = open_dataset(tiny_data, "train")
    calibrated = Calibrated(export_checkpoint(net, source, str(tmp_path / "start")), data,
                            data.subset(4), CalibOptions(num_calib_batches=1), batch_size=4,
                            progress=False)
    thresholds = calibrated.thresholds("naive")
    prefix = save_int8(str(tmp_path / "int8"), calibrated.ckpt,
                       build_int8(calibrated.ckpt, calibrated.fused, thresholds,
                                  calibrated.excluded), thresholds, {})
    images, _ = next(iterate_batches(data, 4))
    int8 = Predictor(load_checkpoint(prefix), 4, tail="none")(images)
    fp32 = Predictor(calibrated.ckpt, 4, tail="none")(images)
    quantize_network(net, plan_layers(calibrated.ckpt.symbol, calibrated))
    with mx.autograd.train_mode():
        fake = [out.asnumpy() for out in net(mx.nd.array(images))[:2]]
    for name, want, got, plain in zip(("class logits", "box offsets"), int8, fake, fp32):
        want, got, plain = want.ravel(), got.ravel(), plain.ravel()
        assert want.size == got.size
        error, fp32_error = (np.abs(want - x).mean() / np.abs(want).mean() for x in (got, plain))
        # rounding differs in places (oneDNN rounds half to even), and 20 layers compound it:
        # not bit-exact, but far nearer the int8 graph than fp32 is
        assert error < 0.6 * fp32_error and np.corrcoef(want, got)[0, 1] > 0.998, (
            name, error, fp32_error)
