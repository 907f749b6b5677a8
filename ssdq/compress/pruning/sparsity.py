"""Network slimming's sparsity training: an L1 penalty on the prunable BatchNorms' gammas.

A regulariser, not a pruner (Distiller keeps them apart too): ``SparsityHook`` adds
``sparsity * sign(gamma)`` to each prunable gamma's gradient during ``train.loop.fit``, so that
pruning by |gamma| later removes channels the network has learnt to do without. With
``weighting="params"`` each layer's penalty is scaled by the parameters one of its channels
costs over the mean (MorphNet's parameter regulariser), re-costed every epoch over the channels
still alive: expensive channels are pushed to zero harder, for a parameter budget.
"""
import mxnet as mx
import numpy as np

from ssdq.compress.pruning.options import WEIGHTINGS
from ssdq.compress.pruning.slimming import (
    _blocks_by_name,
    channel_costs,
    prunable_layers,
)
from ssdq.errors import SsdqError
from ssdq.train.loop import HookBase

ALIVE_GAMMA = 1e-2  # a channel whose |gamma| is under this counts as pruned when costing


class Structure:
    """What the penalty needs of a network, read once from its plain blocks: the prunable
    layers, their BatchNorms (all but conv4_3's, whose output feeds L2Norm and a head and keeps
    its width) and every block by name. The BatchNorms hold the gamma Parameters,
    so a network rewritten afterwards (QAT's fake-quantized blocks share those Parameters) is
    still penalised and costed through them."""

    def __init__(self, net):
        self.layers = prunable_layers(net)
        self.blocks = _blocks_by_name(net)
        self.batchnorms = [self.blocks[layer.batchnorm] for layer in self.layers]
        if not self.batchnorms:
            raise SsdqError("the network has no prunable BatchNorm for the sparsity penalty "
                            "(read its structure before rewriting it)")
        self.net = net


def sparsity_penalties(structure, sparsity, weighting="uniform"):
    """The L1 penalty on each prunable gamma of ``structure`` (a ``Structure``): ``sparsity``
    everywhere, or scaled by the parameters one of the layer's channels costs (counting only
    the channels still alive, |gamma| >= ``ALIVE_GAMMA``, as MorphNet does) over the mean cost."""
    if weighting not in WEIGHTINGS:
        raise SsdqError("unknown sparsity weighting %r (one of %s)"
                        % (weighting, ", ".join(WEIGHTINGS)))
    if weighting == "uniform":
        return [sparsity] * len(structure.layers)
    gammas = {bn.name: np.abs(bn.gamma.data().asnumpy()) for bn in structure.batchnorms}
    alive = {name: max(1, int((g >= ALIVE_GAMMA).sum())) for name, g in gammas.items()}
    costs = channel_costs(structure.net, structure.layers, alive, blocks=structure.blocks)
    mean = sum(costs[name] * alive[name] for name in alive) / sum(alive.values())
    return [sparsity * costs[layer.batchnorm] / mean for layer in structure.layers]


def gamma_distribution(gammas):
    """Quantiles and small-value shares of |gamma| over all prunable channels (for the log)."""
    values = np.abs(np.concatenate([g.data().asnumpy().ravel() for g in gammas]))
    quantiles = np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9])
    out = {"q%d" % q: round(float(v), 4) for q, v in zip((10, 25, 50, 75, 90), quantiles)}
    for limit in (1e-3, 1e-2, 1e-1):
        out["below_%g" % limit] = round(float((values < limit).mean()), 4)
    return out


class SparsityHook(HookBase):
    """``sparsity * sign(gamma)`` on every prunable gamma's gradient; ``gamma_lr_mult`` scales
    those gammas' learning rate (Adam moves a parameter by about lr per step, so a short schedule
    cannot take a gamma from ~1 to ~0 without it)."""

    def __init__(self, sparsity, weighting="uniform", gamma_lr_mult=1.0, net=None):
        if weighting not in WEIGHTINGS:
            raise SsdqError("unknown sparsity weighting %r (one of %s)"
                            % (weighting, ", ".join(WEIGHTINGS)))
        self.sparsity, self.weighting, self.gamma_lr_mult = sparsity, weighting, gamma_lr_mult
        # ``net``: read the structure now, before something rewrites the network (QAT)
        self.structure = Structure(net) if net is not None else None
        self.gammas, self.penalties = [], []

    def describe(self):
        """For a run record: the penalty and how it is applied."""
        return {"regularizer": "L1 on the prunable BatchNorm gammas (network slimming)",
                "sparsity": self.sparsity, "weighting": self.weighting,
                "gamma_lr_mult": self.gamma_lr_mult}

    def before_train(self):
        self.structure = self.structure or Structure(self.trainer.net)
        self.gammas = [bn.gamma for bn in self.structure.batchnorms]
        for gamma in self.gammas:
            gamma.lr_mult = self.gamma_lr_mult

    def before_epoch(self):
        # re-costed each epoch: a "params" weighting follows the channels still alive
        self.penalties = sparsity_penalties(self.structure, self.sparsity, self.weighting)

    def after_backward(self):
        for gamma, penalty in zip(self.gammas, self.penalties):
            grad = gamma.grad()
            grad += penalty * mx.nd.sign(gamma.data())

    def log_fields(self):
        return {"gamma_abs": gamma_distribution(self.gammas)}

    def after_epoch(self):
        self.trainer.epoch_entry["gamma_abs"] = gamma_distribution(self.gammas)
