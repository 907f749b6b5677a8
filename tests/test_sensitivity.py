"""A layer made hard to quantize on purpose must come out on top, and the tuner must spare it."""
import json
import os

import numpy as np
import pytest

from ssdq.model.checkpoint import load_checkpoint, save_checkpoint
from ssdq.data.dataset import open_dataset
from ssdq.quant.quantize import quantize_from_recipe, quantized_conv_nodes
from ssdq.quant.sensitivity import Int8Variants, agreement, analyse
from ssdq.quant.tune import tune

HARD_CONV = "ssd0_convpredictor0_conv0_fwd"  # class head on the 38x38 map, most anchors


@pytest.fixture(scope="module")
def outlier_prefix(fp32_prefix, tmp_path_factory):
    """The reference model with one output channel of a class head turned into an outlier.

    The channel's logit becomes 100x its value minus 1000: in fp32 that class/anchor pair simply
    never fires, but its range swamps the per-tensor int8 scale of the whole head.
    """
    ckpt = load_checkpoint(fp32_prefix)
    args = dict(ckpt.arg_params)
    weight, bias = (args[HARD_CONV.replace("_fwd", "_" + k)].asnumpy() for k in ("weight", "bias"))
    weight[1] *= 100
    bias[1] = -1000
    import mxnet as mx

    args[HARD_CONV.replace("_fwd", "_weight")] = mx.nd.array(weight)
    args[HARD_CONV.replace("_fwd", "_bias")] = mx.nd.array(bias)
    prefix = str(tmp_path_factory.mktemp("outlier") / "converted")
    meta = {k: v for k, v in ckpt.meta.items() if k != "files"}
    return save_checkpoint(prefix, ckpt.symbol, args, ckpt.aux_params, meta)


@pytest.fixture(scope="module")
def variants(outlier_prefix, tiny_data):
    return Int8Variants(outlier_prefix, open_dataset(tiny_data, "train"),
                        open_dataset(tiny_data, "val").subset(32), num_calib_batches=2,
                        batch_size=16, progress=False)


def test_agreement_measures():
    ref = [np.ones((2, 3)), np.arange(4.0)]
    assert agreement(ref, ref)["snr_db"] == float("inf")
    noisy = agreement(ref, [r + 0.01 for r in ref])
    assert 30 < noisy["snr_db"] < 60 and noisy["cosine"] > 0.999


def test_sensitivity_ranks_the_outlier_layer_first(variants):
    report = analyse(variants, with_map=True, progress=False)
    top = report["layers"][0]
    assert top["conv"] == HARD_CONV, [(r["conv"], r.get("map_recovered")) for r in report["layers"][:3]]
    assert top["map_recovered"] > 2.0
    assert report["fp32_map"] - report["int8_map"] > 2.0
    by_snr = sorted(report["layers"], key=lambda r: r["snr_db"])
    assert by_snr[0]["conv"] == HARD_CONV  # the label-free proxy agrees


def test_tuner_falls_the_outlier_layer_back(variants, tmp_path):
    out = str(tmp_path / "tuned")
    report = tune(variants, out, max_relative_drop=1.0, modes=("naive", "mse"), max_trials=8,
                  progress=False)
    assert HARD_CONV in [l["conv"] for l in report["fp32_layers"]]
    assert report["met_budget"] and report["relative_drop_pct"] <= 1.0
    assert set(report["calibration_methods"]) == {"naive", "mse"}
    recipe = json.load(open(report["recipe"]))
    assert recipe["fp32_convs"] == [l["conv"] for l in report["fp32_layers"]]
    # The recipe rebuilds the very same graph.
    again = quantize_from_recipe(variants.ckpt.prefix, str(tmp_path / "again"), report["recipe"])
    assert (load_checkpoint(again).symbol.tojson() == load_checkpoint(out).symbol.tojson())
    assert len(quantized_conv_nodes(load_checkpoint(out).symbol)) >= 30
    assert os.path.isfile(out + "-calib.json")


def test_cli_label_free_sensitivity_ranks_the_outlier_first(outlier_prefix, tiny_data, tmp_path):
    from conftest import run_cli

    proc = run_cli("sensitivity", "--no-map", "--model-prefix", outlier_prefix, "--data-root",
                   tiny_data, "--num-calib-batches", "2", "--batch-size", "16", "--eval-images",
                   "16", "--out-dir", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    report = json.load(open(tmp_path / "sensitivity.json"))
    assert report["fp32_map"] is None and HARD_CONV in json.dumps(report["layers"][0])
    assert "n/a (--no-map)" in open(tmp_path / "sensitivity.md").read()
    assert open(tmp_path / "sensitivity.png", "rb").read(4) == b"\x89PNG"


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
    variants = Int8Variants(fp32, open_dataset(tiny_data, "train"),
                            open_dataset(tiny_data, "val").subset(16), num_calib_batches=1,
                            batch_size=16, progress=False)
    assert variants.ckpt.inferred and len(variants.layers) >= 30
    full, _ = variants.build("naive")
    assert full.precision == "int8" and full.meta["input"]["layout"] == "NCHW"
    assert variants.proxy(full)["cosine"] > 0.9
    assert variants.score(variants.ckpt)["map"] > 20
