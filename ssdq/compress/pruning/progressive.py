"""Gradual pruning during training: channels masked step by step down to a parameter budget.

Network slimming trains a sparsity penalty first and prunes once; here the network is pruned a
little at a time while it trains (Zhu and Gupta's gradual pruning, by channels): at the start of
each of the first ``steps`` epochs, ``GradualPruningHook`` plans the pruning that keeps
``share_at(epoch)`` of the deployed parameters (``slimming.plan_for_params_share``: the lowest
|gamma|, kept widths rounded to oneDNN's blocks), and masks every channel the plan removes:
its BatchNorm gamma and beta are held at zero, so the channel outputs exactly zero and the rest
of the network learns to do without it. The budget follows a cubic schedule (large cuts first,
while the network still has much to give), and later epochs fine-tune at the final budget.

The result is a dense-shaped weights file whose removed channels have gamma = beta = 0: the
lowest |gamma| of all, so ``ssdq prune --params-share`` at the final budget (same mode, criterion
and channel multiple) removes exactly them, and since a masked channel contributes nothing the
pruned network computes what the masked one did (``tests/compress/test_progressive.py``).
"""
import mxnet as mx
import numpy as np

from ssdq.compress.pruning.options import CHANNEL_MULTIPLE
from ssdq.compress.pruning.slimming import (
    _blocks_by_name,
    plan_for_params_share,
    prunable_layers,
)
from ssdq.errors import SsdqError
from ssdq.train.loop import HookBase


def share_at(step, steps, final_share, initial_share=1.0):
    """The parameter share kept after pruning step ``step`` (1..``steps``): cubic from
    ``initial_share`` (step 0) to ``final_share`` (step ``steps``)."""
    progress = min(step, steps) / steps
    return final_share + (initial_share - final_share) * (1 - progress) ** 3


def masked_channels(net, recipe):
    """{BatchNorm name: indices of the channels ``recipe`` removes} over ``net``'s prunable
    layers (a layer of a dropped scale loses all of its channels)."""
    blocks = _blocks_by_name(net)
    removed = {}
    for layer in prunable_layers(net):
        width = blocks[layer.batchnorm].gamma.shape[0]
        kept = recipe["keep"].get(layer.conv, [])
        gone = np.setdiff1d(np.arange(width), kept)
        if len(gone):
            removed[layer.batchnorm] = gone
    return removed


def apply_mask(net, removed):
    """Zero the gamma and beta of every removed channel (in place)."""
    blocks = _blocks_by_name(net)
    for name, idx in removed.items():
        for param in (blocks[name].gamma, blocks[name].beta):
            value = param.data().asnumpy()
            value[idx] = 0.0
            param.set_data(mx.nd.array(value))


class GradualPruningHook(HookBase):
    """Mask channels at the start of epochs 1..``steps`` down to ``final_share`` of the deployed
    parameters, and hold every masked channel at zero after each optimiser step."""

    def __init__(self, final_share, steps, mode="normal", criterion="gamma",
                 multiple=CHANNEL_MULTIPLE):
        if not 0 < final_share <= 1:
            raise SsdqError("the final parameter share must be in (0, 1], not %g" % final_share)
        if steps < 1:
            raise SsdqError("gradual pruning needs at least one step, not %d" % steps)
        self.final_share, self.steps = final_share, steps
        self.mode, self.criterion, self.multiple = mode, criterion, multiple
        self.removed, self.recipe = {}, None

    def describe(self):
        return {"pruning": "gradual: channels masked (gamma = beta = 0) at the start of each of "
                "the first epochs, cubic schedule", "final_share": self.final_share,
                "steps": self.steps, "mode": self.mode, "criterion": self.criterion,
                "channel_multiple": self.multiple}

    def before_epoch(self):
        epoch = self.trainer.epoch
        if epoch > self.steps:
            return
        share = share_at(epoch, self.steps, self.final_share)
        self.recipe = plan_for_params_share(self.trainer.net, share, self.mode, self.criterion,
                                            multiple=self.multiple)
        self.removed = masked_channels(self.trainer.net, self.recipe)
        apply_mask(self.trainer.net, self.removed)
        self.trainer.epoch_entry.update(self._state(share))

    def after_step(self):
        apply_mask(self.trainer.net, self.removed)

    def _state(self, target):
        recipe = self.recipe
        return {"prune_target_share": round(target, 4),
                "params_share": round(recipe["params_share"], 4),
                "channels_kept": recipe["channels"]["after"],
                "channels": recipe["channels"]["before"]}

    def log_fields(self):
        return {"channels_masked": int(sum(len(v) for v in self.removed.values()))}
