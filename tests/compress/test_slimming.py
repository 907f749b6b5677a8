"""Channel pruning: connectivity from the graph, the recipe, exact bias folding, real thinning."""
import os

import mxnet as mx
import numpy as np
import pytest

from ssdq.compress.pruning.options import PruneOptions
from ssdq.compress.pruning.slimming import (
    apply_recipe,
    deployed_params,
    plan_for_params_share,
    plan_pruning,
    prunable_layers,
    prune,
    recipe_params,
)
from ssdq.model.ssd import feature_convs, reference_ssd

CLASSES = ["a", "b", "c"]


@pytest.fixture(scope="module")
def net():
    """A random reference-architecture SSD whose gammas spread over (0, 1) and whose BN
    statistics are not the identity, so pruning and folding have something to get wrong."""
    mx.random.seed(1)
    rng = np.random.default_rng(1)
    model = reference_ssd(CLASSES)
    model.initialize(mx.init.Xavier(magnitude=2))
    model(mx.nd.zeros((1, 3, 300, 300)))
    for name, param in model.collect_params().items():
        shape = param.shape
        if name.endswith("gamma"):
            param.set_data(mx.nd.array(rng.uniform(0.05, 1.0, shape)))
        elif name.endswith("beta"):
            param.set_data(mx.nd.array(rng.normal(0, 0.2, shape)))
        elif name.endswith("running_mean"):
            param.set_data(mx.nd.array(rng.normal(0, 0.1, shape)))
        elif name.endswith("running_var"):
            param.set_data(mx.nd.array(rng.uniform(0.5, 2.0, shape)))
        elif name.endswith("bias"):
            param.set_data(mx.nd.array(rng.normal(0, 0.1, shape)))
    return model


def _raw_outputs(model, x):
    with mx.autograd.train_mode():  # class and box predictions before decoding
        cls, box, _ = model(x)
    return cls.asnumpy(), box.asnumpy()


def test_connectivity_comes_from_the_graph(net):
    names = [layer.conv for layer in prunable_layers(net)]
    assert len(names) == 22  # 23 feature convolutions, all but conv4_3
    assert not any(n.endswith("extractor0_conv9") for n in names)  # conv4_3 feeds L2Norm
    fc7 = next(l for l in prunable_layers(net) if l.conv.endswith("dilated_conv1"))
    heads = [c for c in fc7.consumers if "convpredictor" in c]
    assert len(heads) == 2 and any(c.endswith("extra0_conv0") for c in fc7.consumers)


def test_recipe_global_threshold_and_modes(net):
    normal = plan_pruning(net, 60, "normal")
    gammas = np.concatenate([p.data().asnumpy() for n, p in net.collect_params().items()
                             if n.endswith("gamma") and not n.endswith("extractor0_batchnorm9_gamma")])
    assert normal["channels"]["after"] == pytest.approx(0.4 * len(gammas), abs=len(normal["keep"]))
    assert all(len(kept) >= 1 for kept in normal["keep"].values())
    regular = plan_pruning(net, 60, "regular")
    for width, dense in zip(regular["widths"], [c._channels for c in feature_convs(net)]):
        assert width == dense or width in (8, 16, 32, 64)
    assert regular["channels"]["after"] >= normal["channels"]["after"]
    # 99.9%: nearly every gamma under the threshold, so the first extra stage is all under it
    dropped = plan_pruning(net, 99.9, "max")
    assert dropped["num_scales"] == 2 and len(dropped["widths"]) == 15
    with pytest.raises(Exception, match="percent"):
        plan_pruning(net, 100, "normal")


def test_min_keep_floors_every_layer(net):
    recipe = plan_pruning(net, 95, "normal", min_keep=0.25)
    for layer in prunable_layers(net):
        width = len(next(b for b in _all_blocks(net) if b.name == layer.batchnorm).gamma.data())
        assert len(recipe["keep"][layer.conv]) >= int(np.ceil(0.25 * width))
    assert plan_pruning(net, 95, "normal")["channels"]["after"] < recipe["channels"]["after"]


def test_channel_multiple_rounds_widths_up_by_the_largest_gammas(net):
    raw = plan_pruning(net, 70, "normal")
    rounded = plan_pruning(net, 70, "normal", multiple=8)
    blocks = {b.name: b for b in _all_blocks(net)}
    odd = 0
    for layer in prunable_layers(net):
        kept, before = rounded["keep"][layer.conv], raw["keep"][layer.conv]
        width = blocks[layer.conv]._channels
        assert len(kept) % 8 == 0 or len(kept) == width
        assert len(before) <= len(kept) < len(before) + 8
        assert set(before) <= set(kept)  # the threshold's channels stay; the next largest join
        gamma = np.abs(blocks[layer.batchnorm].gamma.data().asnumpy())
        added = np.setdiff1d(kept, before)
        if len(added):
            assert gamma[added].min() >= np.delete(gamma, kept).max(initial=0)
        odd += len(before) % 8 != 0
    assert odd  # the plain threshold does leave widths off the multiple
    assert rounded["channel_multiple"] == 8
    shared = plan_for_params_share(net, 0.3, "normal", multiple=8)
    assert recipe_params(net, shared) <= 0.3 * deployed_params(net)
    assert all(len(k) % 8 == 0 or len(k) == blocks[c]._channels for c, k in shared["keep"].items())
    with pytest.raises(Exception, match="channel-multiple"):
        plan_pruning(net, 50, "normal", multiple=0)


def test_gamma_per_param_spends_the_same_channels_on_fewer_parameters(net):
    """At the same share of channels pruned, ranking by gamma per parameter cuts expensive
    channels first (conv5_3's, read by fc6's 3x3 dilated filters), so fewer parameters remain."""
    from ssdq.compress.pruning.slimming import channel_costs

    by_gamma = plan_pruning(net, 50, "normal", "gamma")
    per_param = plan_pruning(net, 50, "normal", "gamma-per-param")
    assert per_param["channels"]["after"] == pytest.approx(by_gamma["channels"]["after"], abs=2)
    assert recipe_params(net, per_param) < 0.9 * recipe_params(net, by_gamma)
    layers = prunable_layers(net)
    costs = channel_costs(net, layers)
    dearest = max(layers, key=lambda layer: costs[layer.batchnorm]).conv
    cheapest = min(layers, key=lambda layer: costs[layer.batchnorm]).conv
    assert dearest.endswith("extractor0_conv12") and cheapest.endswith("extractor0_conv0")
    assert len(per_param["keep"][dearest]) < len(by_gamma["keep"][dearest])
    assert len(per_param["keep"][cheapest]) > len(by_gamma["keep"][cheapest])


def test_params_share_plan_is_the_smallest_pruning_within_the_budget(net):
    dense = deployed_params(net)
    recipe = plan_for_params_share(net, 0.3, "normal", min_keep=0.1)
    assert recipe_params(net, recipe) <= 0.3 * dense
    assert recipe["params_share"] == pytest.approx(recipe_params(net, recipe) / dense)
    total = recipe["channels"]["before"]
    pruned = round(recipe["percent"] * total / 100 - 0.5)
    one_less = plan_pruning(net, 100.0 * (pruned - 0.5) / total, "normal", min_keep=0.1)
    assert recipe_params(net, one_less) > 0.3 * dense
    with pytest.raises(Exception, match="share"):
        plan_for_params_share(net, 0.01, "normal", min_keep=0.5)
    whole = plan_for_params_share(net, 1.0, "normal")  # the dense network fits: nothing goes
    assert whole["percent"] == 0 and whole["channels"]["after"] == total
    # counted on a network with the short anchor grid: what the network pruning makes holds
    assert recipe_params(net, recipe) == deployed_params(apply_recipe(net, recipe))


def test_pruned_equals_zeroed_gammas_when_removed_channels_are_silent(net):
    """relu(beta) = 0 for every removed channel: the pruned net is exactly the dense one with
    those channels' gammas zeroed (index bookkeeping of every layer, head and consumer)."""
    recipe = plan_pruning(net, 50, "normal")
    dense = reference_ssd(CLASSES)
    dense.initialize()
    dense(mx.nd.zeros((1, 3, 300, 300)))
    for name, param in net.collect_params().items():
        dense.collect_params()[name].set_data(param.data().copy())
    for layer in prunable_layers(dense):
        bn = next(b for b in _all_blocks(dense) if b.name == layer.batchnorm)
        kept = recipe["keep"][layer.conv]
        removed = np.setdiff1d(np.arange(bn.gamma.shape[0]), kept)
        gamma, beta = bn.gamma.data().asnumpy(), bn.beta.data().asnumpy()
        gamma[removed], beta[removed] = 0, -np.abs(beta[removed]) - 0.1
        bn.gamma.set_data(mx.nd.array(gamma))
        bn.beta.set_data(mx.nd.array(beta))
    pruned = apply_recipe(dense, recipe)
    x = mx.nd.random.uniform(-2, 2, shape=(2, 3, 300, 300))
    for got, want in zip(_raw_outputs(pruned, x), _raw_outputs(dense, x)):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)  # float32 sums in another order


def test_relu_beta_of_removed_channels_folds_into_every_reader(net):
    """Positive relu(beta): a reader's output equals the dense one's wherever its window lies
    inside the image (at zero-padded borders the removed channel added less)."""
    recipe = plan_pruning(net, 50, "normal")
    pruned = apply_recipe(net, recipe)
    fc7 = next(l for l in prunable_layers(net) if l.conv.endswith("dilated_conv1"))
    dense_blocks, pruned_blocks = _by_name(net), _by_name(pruned)
    kept = recipe["keep"][fc7.conv]
    removed = np.setdiff1d(np.arange(dense_blocks[fc7.batchnorm].gamma.shape[0]), kept)
    beta = dense_blocks[fc7.batchnorm].beta.data().asnumpy()
    assert (beta[removed] > 0).any()
    rng = np.random.default_rng(0)
    act = rng.uniform(0, 1, (1, len(beta), 9, 9)).astype(np.float32)
    act[:, removed] = np.maximum(beta[removed], 0)[None, :, None, None]  # what relu(BN) gives
    for reader in fc7.consumers:
        want = dense_blocks[reader](mx.nd.array(act)).asnumpy()
        want = want[:, recipe["keep"].get(reader, slice(None))]  # its own outputs may be pruned
        got = pruned_blocks[reader](mx.nd.array(act[:, kept])).asnumpy()
        interior = (slice(None), slice(None), slice(1, -1), slice(1, -1))
        np.testing.assert_allclose(got[interior], want[interior], rtol=1e-4, atol=1e-5)


def test_batchnorm_recalibration_takes_the_pruned_networks_own_statistics(net):
    """After re-estimating on one batch, predict mode (running statistics) gives what train
    mode (that batch's statistics) gives on that batch."""
    from ssdq.compress.pruning.slimming import recalibrate_batchnorm

    pruned = apply_recipe(net, plan_pruning(net, 50, "normal"))
    x = np.random.default_rng(2).uniform(-2, 2, (4, 3, 300, 300)).astype(np.float32)
    with mx.autograd.train_mode():
        want = [f.asnumpy() for f in pruned.features(mx.nd.array(x))]
    before = [f.asnumpy() for f in pruned.features(mx.nd.array(x))]
    recalibrate_batchnorm(pruned, [x])
    got = [f.asnumpy() for f in pruned.features(mx.nd.array(x))]
    for g, w, b in zip(got, want, before):
        assert np.abs(g - w).mean() < 0.1 * np.abs(b - w).mean() + 1e-3


def test_pruned_checkpoint_has_fewer_channels(tmp_path):
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.weights import REFERENCE_WEIGHTS

    prefix, recipe = prune(str(tmp_path / "pruned"), PruneOptions(REFERENCE_WEIGHTS, percent=50, mode="max",
                                                                 recalibrate_images=0))
    ckpt = load_checkpoint(prefix)
    assert ckpt.meta["pruning"]["percent"] == 50 and ckpt.meta["widths"] == recipe["widths"]
    assert ckpt.meta["batchnorm_folded"] == len(recipe["widths"])
    weights = {k: v.shape for k, v in ckpt.arg_params.items() if k.endswith("weight")}
    fc7 = next(v for k, v in weights.items() if k.endswith("dilated_conv1_weight"))
    assert fc7[0] == len(recipe["keep"][next(k for k in recipe["keep"]
                                             if k.endswith("dilated_conv1"))]) < 128
    from ssdq.compress.pruning.study import count_params

    shared, _ = prune(str(tmp_path / "shared"), PruneOptions(
        REFERENCE_WEIGHTS, mode="max", params_share=0.4, criterion="gamma-per-param",
        recalibrate_images=0))
    shared = load_checkpoint(shared)
    counted = count_params(shared) / count_params(load_checkpoint(
        prune(str(tmp_path / "dense"), PruneOptions(REFERENCE_WEIGHTS, percent=0, recalibrate_images=0))[0]))
    assert counted == pytest.approx(shared.meta["pruning"]["params_share"], abs=1e-9) and counted <= 0.4
    total = sum(np.prod(s) for s in weights.values())
    dense = load_checkpoint(str(tmp_path / "dense"))
    assert total < 0.7 * sum(np.prod(v.shape) for k, v in dense.arg_params.items()
                             if k.endswith("weight"))


def _all_blocks(model):
    stack, found = [model], []
    while stack:
        block = stack.pop()
        found.append(block)
        stack.extend(block._children.values())
    return found


def _by_name(model):
    return {b.name: b for b in _all_blocks(model)}


def test_cli_prune_and_lowrank(tmp_path):
    from ssdq.model.weights import REFERENCE_WEIGHTS

    from helpers import assert_clean_error, run_cli

    pruned = str(tmp_path / "pruned")
    proc = run_cli("prune", "--params", REFERENCE_WEIGHTS, "--percent", "40", "--mode", "regular",
                   "--recalibrate-images", "0", "--out", pruned, "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "kept" in proc.stdout and os.path.isfile(pruned + "-meta.json")
    proc = run_cli("lowrank", "--model-prefix", pruned, "--energy", "0.95", "--out",
                   str(tmp_path / "lr"), "--quiet")
    assert proc.returncode == 0 and "fc6: rank" in proc.stdout, proc.stderr
    assert_clean_error(run_cli("lowrank", "--model-prefix", pruned, "--energy", "1.5", "--out",
                               str(tmp_path / "bad")), "--energy")
    assert_clean_error(run_cli("prune", "--params", REFERENCE_WEIGHTS, "--percent", "100",
                               "--out", str(tmp_path / "bad")), "--percent")


def test_finetuning_after_pruning_trains_the_thinned_network(tiny_data, tmp_path):
    from ssdq.data.dataset import open_dataset
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.weights import REFERENCE_WEIGHTS

    train_set = open_dataset(tiny_data, "train")
    plain, _ = prune(str(tmp_path / "plain"), PruneOptions(REFERENCE_WEIGHTS, percent=50,
                                                           recalibrate_images=0))
    tuned, recipe = prune(str(tmp_path / "tuned"), PruneOptions(
        REFERENCE_WEIGHTS, percent=50, recalibrate_images=0, finetune_epochs=1,
        finetune_lr=1e-3), train_set, batch_size=8)
    a, b = load_checkpoint(plain), load_checkpoint(tuned)
    assert b.meta["widths"] == a.meta["widths"]  # same thinned shapes, new weights
    assert b.meta["pruning"]["finetune"]["epochs"] == 1
    assert np.isfinite(recipe["finetune"]["history"][-1]["cls_loss"])
    changed = [k for k, v in a.arg_params.items()
               if k.endswith("weight") and not np.allclose(v.asnumpy(), b.arg_params[k].asnumpy())]
    assert len(changed) > 10
