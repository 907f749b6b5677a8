"""Fine-tune a BN-folded fp32 checkpoint with a weight number format in the loop.

The Gluon network is the reference topology without BatchNorm (``reference_ssd(...,
batch_norm=False)``), loaded with the folded weights of a converted checkpoint, and trained with
the one training loop (``train.loop.fit``) and one hook, ``FormatInTheLoop``: before each step it
rounds every selected layer's weights (and bias, where the format rounds biases) into the format
for the forward and backward pass, then puts the fp32 "shadow" weights back before the optimiser
step: the gradient computed at ``format(w)`` is applied to ``w`` (straight-through estimator, as
DeepShift and Ristretto's fine-tuning do). ``lq_lambda`` adds ``lambda * sum((w - C(w))^2)``,
the clipping paper's ``Lq`` term, whose gradient ``2 * lambda * (w - C(w))`` pulls weights toward
their rounded values. Evaluation and export see the rounded weights.

The kept epoch is the best by mAP on the selection split (dev; epoch 0, the rounded weights
before training, is a candidate too), and only the kept weights are scored on the eval split
(val), which no choice looks at. The exported checkpoint holds the rounded weights, so its layers
are exactly in the format. ``dfp:32`` (no rounding to speak of) is the fp32 control: the same
schedule without a format (``CONTROL_FORMAT``).
"""
import contextlib
import os
import time

import mxnet as mx
import numpy as np

from ssdq.compress.formats.number_format import NumberFormat
from ssdq.compress.formats.options import FinetuneOptions
from ssdq.data.classmap import match_classes
from ssdq.errors import SsdqError
from ssdq.fileio import write_json
from ssdq.model.checkpoint import load_checkpoint
from ssdq.model.convert import bn_free_reference, export_checkpoint
from ssdq.model.layers import list_layers, select_layers
from ssdq.quant.fakequant import clip_plan, quantize_network
from ssdq.train.loop import EvalHook, HookBase, fit, warmup_for

CONTROL_FORMAT = "dfp:32"


class FormatInTheLoop(HookBase):
    """Rounds the selected layers' parameters into a format for each step (and for evaluation
    and export) and restores the fp32 copies before the optimiser step."""

    def __init__(self, net, layers, fmt, lq_lambda=0.0):
        self.fmt, self.lq_lambda = fmt, lq_lambda
        params = net.collect_params()
        self.params = []
        for layer in layers:
            self.params.append((params[layer.weight], "weight"))
            if layer.bias:  # rounded where the format rounds biases (NumberFormat.bias)
                self.params.append((params[layer.bias], "bias"))
        self._shadow = self._rounded = None
        self._lq_sum, self._steps = 0.0, 0

    # the training loop's calls
    def before_epoch(self):
        self._lq_sum, self._steps = 0.0, 0

    def before_step(self):
        self._rounded = self.swap_in()

    def after_backward(self):
        self.swap_out()  # the gradient at format(w) updates the fp32 w
        if self.lq_lambda:
            self._lq_sum += self.add_lq_gradient(self._rounded, self.lq_lambda)
        self._steps += 1

    def after_step(self):
        if self._shadow is not None:  # a skipped step: no backward pass swapped it out
            self.swap_out()

    def after_epoch(self):
        self.trainer.epoch_entry["lq"] = round(self._lq_sum / max(self._steps, 1), 6)

    @contextlib.contextmanager
    def evaluation(self):
        self.swap_in()
        try:
            yield
        finally:
            self.swap_out()

    def rounded(self):
        """{param name: rounded numpy array} of the current fp32 weights."""
        out, grids = {}, {}
        for param, role in self.params:
            w = param.data().asnumpy()
            if role == "weight":
                grid = self.fmt.weights(w)
                grids[param.name.rsplit("_", 1)[0]] = grid
            else:
                grid = self.fmt.bias(w, grids.get(param.name.rsplit("_", 1)[0]))
            out[param.name] = grid.apply(w) if grid is not None else w
        return out

    def swap_in(self):
        """Put rounded weights in place (keeping the fp32 ones); return them."""
        rounded = self.rounded()
        self._shadow = {}
        for param, _ in self.params:
            self._shadow[param.name] = param.data().copy()
            param.set_data(mx.nd.array(rounded[param.name]))
        return rounded

    def swap_out(self):
        for param, _ in self.params:
            param.set_data(self._shadow[param.name])
        self._shadow = None

    def add_lq_gradient(self, rounded, lq_lambda):
        """grad += 2 * lambda * (w - C(w)); returns the Lq term's value."""
        total = 0.0
        for param, _ in self.params:
            diff = param.data().asnumpy() - rounded[param.name]
            total += float((diff.astype(np.float64) ** 2).sum())
            param.grad()[:] += mx.nd.array(2.0 * lq_lambda * diff)
        return lq_lambda * total


def finetune(fp32_prefix, out_prefix, train_set, eval_set, fmt_spec, options=None,
             select_set=None, num_workers=1, eval_batch_size=32, log_file=None, progress=True):
    """Train with ``fmt_spec`` on the weights (``options``: ``FinetuneOptions``), scoring the
    rounded weights on ``select_set`` (the dev split) before training and after every epoch and
    keeping the best epoch (the last, without a ``select_set``); score the kept weights on
    ``eval_set`` and save them at ``out_prefix``. Returns the run record (per-epoch loss and
    selection mAP, the kept epoch, its eval mAP, timings)."""
    options = options or FinetuneOptions()
    if options.epochs < 0:
        raise SsdqError("--epochs must be 0 or more")
    fmt = NumberFormat(fmt_spec)
    ckpt = load_checkpoint(fp32_prefix).require_fp32("fine-tune")
    if any(d != m for d, m in match_classes(train_set, ckpt.require_classes())
           .dataset_to_model.items()):
        raise SsdqError("fine-tuning learns the train set's class indices: its classes must be "
                        "the model's, in the model's order")
    match = match_classes(eval_set, ckpt.require_classes())
    if select_set is not None and select_set.split == eval_set.split:
        raise SsdqError("the kept epoch would be chosen on %r, the split it is scored on: select "
                        "on another (dev) or keep the last epoch (--select-split none)"
                        % eval_set.split)
    if options.train_images:
        train_set = train_set.subset(min(options.train_images, len(train_set)))
    batch_size = options.train_batch_size
    if len(train_set) < batch_size:
        raise SsdqError("fine-tuning needs at least one batch of %d train images (have %d)"
                        % (batch_size, len(train_set)))
    layers = select_layers(list_layers(ckpt.symbol, options.fc_layers), options.layers)
    net = bn_free_reference(ckpt)
    unclip = None
    if options.activation_clip is not None:  # in the graph for training and every evaluation
        _, unclip = quantize_network(net, clip_plan(list_layers(ckpt.symbol),
                                                    options.activation_clip))
    in_loop = FormatInTheLoop(net, layers, fmt, options.lq_lambda)
    hooks = [in_loop]
    if select_set is not None:
        selection = EvalHook(select_set, every=1, keep="best", key=select_set.split,
                             at_start=True, match=match_classes(select_set, ckpt.require_classes()),
                             batch_size=eval_batch_size)
        hooks.append(selection)
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)
    start = time.time()
    trainer = fit(net, train_set, options.epochs, batch_size=batch_size, lr=options.lr,
                  warmup=warmup_for(options.epochs, len(train_set), batch_size),
                  seed=options.seed, hooks=hooks, num_workers=num_workers,
                  log_every=0, log_file=log_file, progress=progress,
                  desc="finetune %s" % fmt.spec)
    final = trainer.evaluate(eval_set, match, eval_batch_size)
    rounded = in_loop.swap_in()  # export exactly the rounded weights
    if unclip is not None:
        unclip()  # the exported graph is the plain one; int8 ranges put the clips back
    run = {"format": fmt.spec, "epochs": options.epochs, "lq_lambda": options.lq_lambda,
           "activation_clip": options.activation_clip,
           "seed": options.seed, "lr": options.lr, "batch_size": batch_size,
           "train_images": len(train_set), "train_dataset": train_set.describe(),
           "select_split": select_set.split if select_set is not None else "none",
           "select_images": len(select_set) if select_set is not None else 0,
           "kept_epoch": selection.best_epoch if select_set is not None else options.epochs,
           "eval_images": len(eval_set), "eval_split": eval_set.split,
           "%s_map" % eval_set.split: round(final["map"], 3),
           "%s_ap50" % eval_set.split: round(final["ap50"], 3),
           "layers": [l.name for l in layers], "rounded_params": sorted(rounded),
           "source_checkpoint": ckpt.prefix, "source_sha256": ckpt.meta.get("sha256"),
           "history": trainer.history,
           "minutes": round((time.time() - start) / 60, 2)}
    source = {k: v for k, v in ckpt.meta.items()
              if k in ("model", "weights", "width_divisor", "trained_on")}
    source["finetune"] = {k: v for k, v in run.items() if k != "rounded_params"}
    export_checkpoint(net, source, out_prefix)
    run["checkpoint"] = out_prefix
    return run


def default_out(fmt_spec, lq_lambda=0.0, model_dir="model", activation_clip=None):
    name = "finetuned-%s" % fmt_spec.replace(":", "_")
    if activation_clip is not None:
        name += "-aclip%d" % activation_clip
    if lq_lambda:
        name += "-lq%g" % lq_lambda
    return os.path.join(model_dir, name)


def finetune_and_save(fp32_prefix, out_prefix, train_set, eval_set, fmt_spec, options=None,
                      log_file=None, **kwargs):
    """``finetune`` plus its run record beside the checkpoint (``PREFIX-finetune.json``), which
    the studies read to reuse a checkpoint made with the same settings."""
    log_file = log_file or "%s-finetune.log.jsonl" % out_prefix
    run = finetune(fp32_prefix, out_prefix, train_set, eval_set, fmt_spec, options,
                   log_file=log_file, **kwargs)
    write_json("%s-finetune.json" % out_prefix, run)
    return run
