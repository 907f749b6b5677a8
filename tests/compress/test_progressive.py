"""Gradual pruning: channels masked during training down to a parameter budget, so that the
sparse weights hold exact zeros a plan at that budget removes, and removing them changes
nothing."""
import mxnet as mx
import numpy as np
import pytest

from ssdq.compress.pruning.progressive import (
    GradualPruningHook,
    apply_mask,
    masked_channels,
    share_at,
)
from ssdq.compress.pruning.slimming import (
    _blocks_by_name,
    apply_recipe,
    plan_for_params_share,
    prunable_layers,
)
from ssdq.data.dataset import open_dataset
from ssdq.errors import SsdqError
from ssdq.model.convert import network_from
from ssdq.model.weights import REFERENCE_WEIGHTS
from ssdq.train.loop import fit


def test_the_schedule_cuts_most_first_and_ends_at_the_budget():
    shares = [share_at(step, 5, 0.25) for step in range(6)]
    assert shares[0] == 1.0 and shares[-1] == pytest.approx(0.25)
    cuts = -np.diff(shares)
    assert (cuts > 0).all() and (np.diff(cuts) < 0).all()  # cubic: the largest cut first
    assert share_at(9, 5, 0.25) == pytest.approx(0.25)


def test_bad_settings_are_one_line_errors():
    with pytest.raises(SsdqError, match="share"):
        GradualPruningHook(1.5, 3)
    with pytest.raises(SsdqError, match="step"):
        GradualPruningHook(0.5, 0)


def _raw(net, x):
    with mx.autograd.train_mode():
        cls, box, _ = net(x)
    return cls.asnumpy(), box.asnumpy()


def test_masked_training_leaves_zeros_that_the_plan_removes_exactly(tiny_data):
    net, _ = network_from(REFERENCE_WEIGHTS)
    train = open_dataset(tiny_data, "train").subset(16)
    hook = GradualPruningHook(0.5, 2)
    trainer = fit(net, train, 2, batch_size=8, warmup=1, hooks=[hook], num_workers=0)
    entries = [h for h in trainer.history if "epoch_min" in h]
    assert [e["prune_target_share"] for e in entries] == [
        pytest.approx(share_at(1, 2, 0.5), abs=1e-4), 0.5]
    assert entries[-1]["params_share"] <= 0.5
    blocks = _blocks_by_name(net)
    removed = hook.removed
    assert removed and sum(len(v) for v in removed.values()) > 0
    for name, idx in removed.items():  # held at zero through every optimiser step
        assert not blocks[name].gamma.data().asnumpy()[idx].any()
        assert not blocks[name].beta.data().asnumpy()[idx].any()
    # a plan at the budget from the trained weights removes exactly the masked channels ...
    recipe = plan_for_params_share(net, 0.5, multiple=hook.multiple)
    assert {k: list(v) for k, v in masked_channels(net, recipe).items()} == \
        {k: list(v) for k, v in removed.items()}
    # ... and the thinned network computes what the masked one did
    x = mx.nd.random.uniform(-2, 2, shape=(2, 3, 300, 300))
    for got, want in zip(_raw(apply_recipe(net, recipe), x), _raw(net, x)):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_apply_mask_zeroes_only_the_named_channels():
    net, _ = network_from(REFERENCE_WEIGHTS)
    layer = prunable_layers(net)[3]
    bn = _blocks_by_name(net)[layer.batchnorm]
    before = bn.gamma.data().asnumpy().copy()
    apply_mask(net, {layer.batchnorm: np.array([0, 2])})
    after = bn.gamma.data().asnumpy()
    assert after[0] == 0 and after[2] == 0
    np.testing.assert_array_equal(after[[1] + list(range(3, len(after)))],
                                  before[[1] + list(range(3, len(before)))])
