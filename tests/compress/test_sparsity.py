"""compress.pruning.sparsity: network slimming's L1 penalty as a training hook."""
import json

import numpy as np

from ssdq.compress.pruning.slimming import channel_costs, prunable_layers
from ssdq.compress.pruning.sparsity import (
    ALIVE_GAMMA,
    SparsityHook,
    Structure,
    sparsity_penalties,
)
from ssdq.model.ssd import reference_ssd
from ssdq.model.weights import REFERENCE_WEIGHTS
from ssdq.train.reference import train_reference


def _gammas(params):
    import mxnet as mx

    net = reference_ssd(["a", "b", "c", "d", "e", "f"])
    net.load_parameters(params, ctx=mx.cpu())
    prunable = {g.name: np.abs(g.data().asnumpy()) for g in _gammas_of(net)}
    conv4_3 = net.features.stages[3][-2].gamma.data().asnumpy()
    return prunable, conv4_3


def test_sparsity_shrinks_only_the_prunable_gammas(tiny_data, tmp_path):
    out, log = str(tmp_path / "sparse.params"), str(tmp_path / "log.jsonl")
    train_reference(tiny_data, out, epochs=1, batch_size=8, dev_images=8, eval_every=1,
                    log_every=2, log_file=log, num_workers=0, init_params=REFERENCE_WEIGHTS,
                    warmup=1, hooks=[SparsityHook(1.0, gamma_lr_mult=20)])
    before, conv4_3_before = _gammas(REFERENCE_WEIGHTS)
    after, conv4_3_after = _gammas(out)
    assert len(before) == 22 and not any("batchnorm9_" in name for name in before)
    for name in before:  # S = 1 dwarfs the loss gradient: every prunable |gamma| falls
        assert (after[name] < before[name] - 0.01).all(), name
    assert np.abs(conv4_3_after - conv4_3_before).max() < 0.01  # conv4_3 is not penalised
    entries = [json.loads(line) for line in open(log)]
    assert all("gamma_abs" in e for e in entries if "lr" in e or "epoch_min" in e)


def test_parameter_weighted_sparsity_follows_the_alive_channel_costs():
    """MorphNet-style weighting: the penalty averages S over the alive channels and grows with
    what a channel costs; a layer whose readers are mostly pruned gets cheaper."""
    import mxnet as mx

    net = reference_ssd(["a", "b", "c", "d", "e", "f"])
    net.load_parameters(REFERENCE_WEIGHTS, ctx=mx.cpu())
    layers = prunable_layers(net)
    assert sparsity_penalties(Structure(net), 0.5) == [0.5] * len(layers)
    alive = {l.batchnorm: int((np.abs(bn.gamma.data().asnumpy()) >= ALIVE_GAMMA).sum())
             for l, bn in zip(layers, [_block(net, l.batchnorm) for l in layers])}
    penalties = dict(zip([l.batchnorm for l in layers], sparsity_penalties(Structure(net), 0.5, "params")))
    mean = sum(penalties[n] * alive[n] for n in alive) / sum(alive.values())
    assert abs(mean - 0.5) < 1e-9
    conv0, conv12 = (next(l for l in layers if l.conv.endswith(s)) for s in ("conv0", "conv12"))
    assert penalties[conv12.batchnorm] > 5 * penalties[conv0.batchnorm]
    # conv5_3's channel is read by fc6 (3x3, 128 outputs): thinning fc6 makes it cheaper
    fc6 = next(l for l in layers if l.conv.endswith("dilated_conv0"))
    dense = channel_costs(net, layers)[conv12.batchnorm]
    thinned = channel_costs(net, layers, {fc6.batchnorm: 16})[conv12.batchnorm]
    assert dense == 64 * 9 + 1 + 128 * 9 and thinned == 64 * 9 + 1 + 16 * 9


def test_the_penalty_reaches_the_gammas_of_a_network_qat_rewrote(tiny_data, tmp_path):
    """QAT swaps every convolution and BatchNorm for a fake-quantized block sharing their
    Parameters; a hook given the network before that still finds, costs and shrinks them."""
    from ssdq.data.dataset import open_dataset
    from ssdq.model.convert import network_from
    from ssdq.quant.options import CalibOptions, QatOptions
    from ssdq.quant.qat import qat

    net, source = network_from(REFERENCE_WEIGHTS)
    before = {g.name: np.abs(g.data().asnumpy()) for g in _gammas_of(net)}
    hook = SparsityHook(5.0, "params", gamma_lr_mult=15, net=net)
    train = open_dataset(tiny_data, "train")
    run = qat(str(tmp_path / "qat"), net, source, train, train.subset(8),
              open_dataset(tiny_data, "val").subset(8),
              QatOptions(epochs=1, train_images=16, train_batch_size=8),
              CalibOptions(num_calib_batches=1), batch_size=8, progress=False,
              log=lambda *a: None, hooks=[hook])
    assert run["regularizers"] == [hook.describe()]
    after = {g.name: np.abs(g.data().asnumpy()) for g in _gammas_of(net)}
    assert len(after) == 22
    # two Adam steps at 15x the rate move each gamma about 0.03, all of them towards zero
    for name in before:
        assert (after[name] < before[name] - 0.01).mean() > 0.9, name


def _gammas_of(net):
    return [bn.gamma for bn in Structure(net).batchnorms]


def _block(net, name):
    stack = [net]
    while stack:
        block = stack.pop()
        if block.name == name:
            return block
        stack.extend(block._children.values())
    raise KeyError(name)
