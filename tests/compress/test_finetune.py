"""Fine-tuning with a format in the loop exports weights exactly in the format."""
import json
import os

import numpy as np
import pytest

from helpers import assert_clean_error, run_cli


@pytest.fixture(scope="module")
def pow2_run(fp32_prefix, tiny_data, tmp_path_factory):
    from ssdq.compress.formats.finetune import finetune_and_save
    from ssdq.compress.formats.options import FinetuneOptions
    from ssdq.data.dataset import open_dataset

    out = str(tmp_path_factory.mktemp("ft") / "pow2")
    run = finetune_and_save(fp32_prefix, out, open_dataset(tiny_data, "train"),
                            open_dataset(tiny_data, "val").subset(4), "pow2:-10:5",
                            FinetuneOptions(epochs=1, lq_lambda=1e-3, train_images=16,
                                            train_batch_size=16),
                            select_set=open_dataset(tiny_data, "dev").subset(4), progress=False)
    return out, run


def test_pow2_checkpoint_weights_are_powers_of_two_in_range(pow2_run):
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.layers import list_layers

    prefix, run = pow2_run
    ckpt = load_checkpoint(prefix)
    layers = list_layers(ckpt.symbol)
    assert len(layers) == 35
    for layer in layers:
        w = ckpt.arg_params[layer.weight].asnumpy().ravel()
        nonzero = w[w != 0]
        k = np.log2(np.abs(nonzero))
        np.testing.assert_array_equal(k, np.round(k), err_msg=layer.name)
        assert k.min() >= -10 and k.max() <= 5, layer.name
    assert ckpt.meta["finetune"]["format"] == "pow2:-10:5"
    assert ckpt.meta["precision"] == "fp32"


def test_run_record_says_how_it_was_made(pow2_run, fp32_prefix):
    prefix, run = pow2_run
    with open(prefix + "-finetune.json") as f:
        record = json.load(f)
    assert record["format"] == "pow2:-10:5" and record["epochs"] == 1
    assert record["lq_lambda"] == 1e-3 and record["train_images"] == 16 and record["seed"] == 0
    assert record["source_checkpoint"] == fp32_prefix
    assert [h["epoch"] for h in record["history"] if "epoch" in h] == [0, 1]
    assert record["history"][1]["iter"] == 1 and record["history"][1]["lq"] > 0
    assert os.path.exists(prefix + "-finetune.log.jsonl")


def test_the_kept_epoch_is_chosen_on_dev_and_scored_once_on_val(pow2_run, fp32_prefix):
    """Every epoch (and the start) is scored on dev, the best is kept, and val, which the
    tables report, is scored once, on the kept weights: the exported ones."""

    prefix, run = pow2_run
    scored = [h for h in run["history"] if "dev_map" in h and "epoch" in h]
    assert [h["epoch"] for h in scored] == [0, 1]
    assert not any("val_map" in h for h in run["history"])
    best = max(scored, key=lambda h: h["dev_map"])
    assert run["kept_epoch"] == best["epoch"] and run["select_split"] == "dev"
    assert run["eval_split"] == "val" and run["val_map"] >= 0
    assert run["source_sha256"] == json.load(open(fp32_prefix + "-meta.json"))["sha256"]


def test_selection_on_the_reported_split_is_refused(fp32_prefix, tiny_data, tmp_path):
    from ssdq.compress.formats.finetune import finetune
    from ssdq.compress.formats.options import FinetuneOptions
    from ssdq.data.dataset import open_dataset
    from ssdq.errors import SsdqError

    val = open_dataset(tiny_data, "val").subset(4)
    with pytest.raises(SsdqError, match="chosen on 'val', the split it is scored on"):
        finetune(fp32_prefix, str(tmp_path / "x"), open_dataset(tiny_data, "train"), val,
                 "dfp:8", FinetuneOptions(epochs=1, train_images=16), select_set=val,
                 progress=False)


def test_straight_through_step_moves_the_fp32_weights(fp32_prefix):
    """The gradient at format(w) updates the kept fp32 weights, which stay off the grid."""
    import mxnet as mx

    from ssdq.compress.formats.finetune import FormatInTheLoop
    from ssdq.compress.formats.number_format import NumberFormat
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.convert import bn_free_reference
    from ssdq.model.layers import list_layers

    ckpt = load_checkpoint(fp32_prefix)
    net = bn_free_reference(ckpt)
    layers = list_layers(ckpt.symbol)[:2]
    loop = FormatInTheLoop(net, layers, NumberFormat("dfp:4"))
    param = net.collect_params()[layers[1].weight]
    before = param.data().asnumpy().copy()
    rounded = loop.swap_in()
    assert not np.array_equal(param.data().asnumpy(), before)
    np.testing.assert_array_equal(param.data().asnumpy(), rounded[param.name])
    loop.swap_out()
    np.testing.assert_array_equal(param.data().asnumpy(), before)
    param.grad()[:] = 0
    lq = loop.add_lq_gradient(rounded, 0.5)
    expected = 0.5 * ((before - rounded[param.name]) ** 2).sum()
    assert lq >= expected
    np.testing.assert_allclose(param.grad().asnumpy(), before - rounded[param.name], rtol=1e-5,
                               atol=1e-7)
    assert isinstance(param.grad(), mx.nd.NDArray)


def test_finetune_cli_rejects_a_bad_format(tmp_path):
    proc = run_cli("finetune", "--format", "pow2:5:1", "--epochs", "1", "--quiet",
                   "--out", str(tmp_path / "x"))
    assert_clean_error(proc, "LO must not exceed HI")
