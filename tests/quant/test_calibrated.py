"""quant.calibrated: one calibration pass, int8 variants built and scored from it."""
import numpy as np
import pytest

from ssdq.data.dataset import open_dataset
from ssdq.model.checkpoint import load_checkpoint
from ssdq.quant.calibrated import Calibrated, agreement, calibrated_for
from ssdq.quant.options import CalibOptions
from ssdq.quant.quantize import calib_thresholds


def test_agreement_measures():
    ref = [np.ones((2, 3)), np.arange(4.0)]
    assert agreement(ref, ref)["snr_db"] == float("inf")
    noisy = agreement(ref, [r + 0.01 for r in ref])
    assert 30 < noisy["snr_db"] < 60 and noisy["cosine"] > 0.999


def test_variants_of_a_plain_export_calibrate_and_score(tiny_data, tmp_path):
    """sensitivity/tune start from a checkpoint without a meta file (classes from a file)."""
    import mxnet as mx

    from ssdq.model.convert import build_gluon_model

    net, _ = build_gluon_model("reference")
    net.hybridize()
    net(mx.nd.zeros((1, 3, 300, 300)))
    net.export(str(tmp_path / "plain"), epoch=0)
    (tmp_path / "classes.txt").write_text("\n".join(net.classes) + "\n")
    fp32 = load_checkpoint(str(tmp_path / "plain"), classes=str(tmp_path / "classes.txt"))
    variants = Calibrated(fp32, open_dataset(tiny_data, "train"),
                          open_dataset(tiny_data, "val").subset(16), CalibOptions(num_calib_batches=1),
                          batch_size=16, progress=False)
    assert variants.ckpt.inferred and len(variants.layers) >= 30
    full, _ = variants.build_int8("naive")
    assert full.precision == "int8" and full.meta["input"]["layout"] == "NCHW"
    assert variants.proxy(full)["cosine"] > 0.9
    assert variants.score(variants.ckpt)["map"] > 20


def test_thresholds_follow_the_percentile_asked_for(variants):
    """--percentile reaches the ranges: 99.9 clips tighter than 99.99 (a flag that was once
    accepted and ignored)."""
    ptight = calib_thresholds(variants.calib.replace(calib_mode="percentile", percentile=99.9), variants.stats)
    ploose = calib_thresholds(variants.calib.replace(calib_mode="percentile", percentile=99.99), variants.stats)
    assert all(ptight[k][1] <= ploose[k][1] for k in ptight)
    assert sum(ptight[k][1] < ploose[k][1] for k in ptight) > len(ptight) / 2


def test_a_spec_rebuilds_the_same_object_elsewhere(variants):
    spec = variants.spec()
    assert calibrated_for(spec) is variants  # the process that made the spec: the original
    import pickle

    elsewhere = pickle.loads(pickle.dumps(spec))
    elsewhere.key = "another process: %s" % spec.key
    rebuilt = calibrated_for(elsewhere)
    assert rebuilt is not variants and calibrated_for(elsewhere) is rebuilt
    assert rebuilt.thresholds() == variants.thresholds()
    int8, _ = rebuilt.build_int8()
    assert abs(rebuilt.score(int8)["map"] - variants.score(variants.build_int8()[0])["map"]) < 1e-9


def test_power_of_two_thresholds_give_power_of_two_scales(variants):
    import math

    naive = variants.thresholds("naive")
    pow2 = variants.power_of_two_thresholds(clip_exponent=2)
    assert set(pow2) == set(naive)
    capped = 0
    for key, (lo, hi) in pow2.items():
        signed = naive[key][0] < 0
        scale = 127.5 / hi if signed else 255.5 / hi
        assert math.log2(scale) == round(math.log2(scale)), key
        assert lo == (-hi if signed else 0.0)
        top = max(abs(x) for x in naive[key])
        power = hi * (128 / 127.5 if signed else 256 / 255.5)  # the 2^e the scale comes from
        if power < top:  # only a convolution's output is capped, at the clip it trained in
            capped += 1
            assert power == pytest.approx(4.0), key
        else:
            assert power < 2 * top, key  # the smallest power of two at or above the range
    assert capped > 10
