"""Fine-tune a BN-folded fp32 checkpoint with a weight number format in the loop.

The Gluon network is the reference topology without BatchNorm (``reference_ssd(...,
batch_norm=False)``), loaded with the folded weights of a converted checkpoint. Each iteration
rounds every selected layer's weights (and bias, where the format rounds biases) into the format
for the forward and backward pass, then puts the fp32 "shadow" weights back before the optimiser
step: the gradient computed at ``format(w)`` is applied to ``w`` (straight-through estimator, as
DeepShift and Ristretto's fine-tuning do). ``lq_lambda`` adds ``lambda * sum((w - C(w))^2)``,
the clipping paper's ``Lq`` term, whose gradient ``2 * lambda * (w - C(w))`` pulls weights toward
their rounded values. The data pipeline, target generator and loss are those of ``ssdq.train``.

The exported checkpoint holds the rounded weights, so its layers are exactly in the format.
"""
import json
import logging
import os
import random
import time

import numpy as np
from tqdm import tqdm

from ssdq.model.checkpoint import load_checkpoint
from ssdq.errors import SsdqError
from ssdq.compress.formats.number_format import NumberFormat
from ssdq.compress.layers import list_layers, select_layers

log = logging.getLogger("ssdq.finetune")
# Adam's peak rate (cosine decay) for every fine-tuning: at 2e-4 power-of-two weights, which move
# between levels a factor of two apart, stalled near 43 mAP; at 1e-3 they pass fp32 in 3 epochs
FINETUNE_LR = 1e-3


def bn_free_reference(ckpt):
    """The reference topology without BatchNorm, holding the checkpoint's folded weights."""
    import mxnet as mx

    from ssdq.model.ssd import REFERENCE_WIDTH_DIVISOR, reference_ssd

    divisor = ckpt.meta.get("width_divisor", REFERENCE_WIDTH_DIVISOR)
    net = reference_ssd(ckpt.classes, width_divisor=divisor, batch_norm=False)
    net.initialize(ctx=mx.cpu())
    net(mx.nd.zeros((1, 3, 300, 300)))  # materialise deferred shapes
    saved = dict(ckpt.arg_params, **ckpt.aux_params)
    params = net.collect_params()
    missing = [name for name in params if name not in saved]
    if missing:
        raise SsdqError("%s does not hold the reference model's weights (missing %s); fine-tuning "
                        "starts from `ssdq convert --model reference`" % (ckpt.prefix, missing[0]))
    for name, param in params.items():
        if tuple(param.shape) != tuple(saved[name].shape):
            raise SsdqError("%s: %s has shape %s, the reference network %s" % (
                ckpt.prefix, name, saved[name].shape, param.shape))
        param.set_data(saved[name])
    return net


class FormatInTheLoop:
    """Rounds the selected layers' parameters into a format and restores the fp32 copies."""

    def __init__(self, net, layers, fmt):
        self.fmt = fmt
        params = net.collect_params()
        self.params = []
        for layer in layers:
            self.params.append((params[layer.weight], "weight"))
            if layer.bias:  # rounded where the format rounds biases (NumberFormat.bias)
                self.params.append((params[layer.bias], "bias"))
        self._shadow = None

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
        import mxnet as mx

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
        import mxnet as mx

        total = 0.0
        for param, _ in self.params:
            diff = param.data().asnumpy() - rounded[param.name]
            total += float((diff.astype(np.float64) ** 2).sum())
            param.grad()[:] += mx.nd.array(2.0 * lq_lambda * diff)
        return lq_lambda * total


def finetune(fp32_prefix, out_prefix, train_set, val_set, fmt_spec, epochs=1, lq_lambda=0.0,
             layer_selection=("all",), fc_layers=(), batch_size=16, lr=FINETUNE_LR, seed=0,
             train_images=None, num_workers=1, log_file=None, progress=True):
    """Train with ``fmt_spec`` on the weights; save the rounded result at ``out_prefix``.

    Returns the run record (per-epoch loss and val mAP of the rounded weights, timings)."""
    import mxnet as mx
    from gluoncv.loss import SSDMultiBoxLoss
    from mxnet import autograd, gluon

    from ssdq.model.convert import export_checkpoint
    from ssdq.data.classmap import match_classes
    from ssdq.eval.evaluate import detect
    from ssdq.eval.metrics import evaluator_for
    from ssdq.train.loop import AugmentedDetection, TargetAssigner, _gluon_forward, _lr_at

    if epochs < 0:
        raise SsdqError("--epochs must be 0 or more")
    fmt = NumberFormat(fmt_spec)
    ckpt = load_checkpoint(fp32_prefix)
    if ckpt.precision != "fp32":
        raise SsdqError("%s is %s; fine-tune an fp32 checkpoint" % (ckpt.prefix, ckpt.precision))
    if any(d != m for d, m in match_classes(train_set, ckpt.require_classes())
           .dataset_to_model.items()):
        raise SsdqError("fine-tuning learns the train set's class indices: its classes must be "
                        "the model's, in the model's order")
    match = match_classes(val_set, ckpt.require_classes())
    if train_images:
        train_set = train_set.subset(min(train_images, len(train_set)))
    if len(train_set) < batch_size:
        raise SsdqError("fine-tuning needs at least one batch of %d train images (have %d)"
                        % (batch_size, len(train_set)))
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)
    layers = select_layers(list_layers(ckpt.symbol, fc_layers), layer_selection)
    net = bn_free_reference(ckpt)
    in_loop = FormatInTheLoop(net, layers, fmt)
    net.hybridize(static_alloc=True, static_shape=True)
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, 300, 300)))
    assign_targets = TargetAssigner(anchors)
    loss_fn = SSDMultiBoxLoss()
    loader = gluon.data.DataLoader(AugmentedDetection(train_set, seed), batch_size, shuffle=True,
                                   last_batch="discard", num_workers=num_workers)
    trainer = gluon.Trainer(net.collect_params(), "adam",
                            {"learning_rate": lr, "wd": 0.0, "clip_gradient": 10.0})
    total_iters = max(1, epochs * len(loader))

    def evaluate_rounded():
        in_loop.swap_in()
        net.hybridize(static_alloc=True, static_shape=True)  # predict mode: retrace
        metrics, _ = detect(_gluon_forward(net), val_set, evaluator_for(val_set, match),
                            batch_size=32, progress=False)
        in_loop.swap_out()
        return metrics

    history = []
    start = time.time()
    if log_file:
        os.makedirs(os.path.dirname(os.path.abspath(log_file)), exist_ok=True)

    def record(entry):
        entry["elapsed_min"] = round((time.time() - start) / 60, 2)
        history.append(entry)
        log.info(json.dumps(entry))
        if log_file:
            with open(log_file, "a") as f:
                f.write(json.dumps(entry) + "\n")

    before = evaluate_rounded()
    record({"epoch": 0, "val_map": round(before["map"], 3), "val_ap50": round(before["ap50"], 3)})
    it = 0
    for epoch in range(1, epochs + 1):
        net.hybridize(static_alloc=True, static_shape=True)
        epoch_start = time.time()
        sums = {"loss": 0.0, "lq": 0.0}
        seen = 0
        bar = tqdm(loader, desc="finetune %s epoch %d/%d" % (fmt.spec, epoch, epochs),
                   unit="batch", disable=not progress, leave=False)
        for data, targets in bar:
            data, targets = data.as_in_context(mx.cpu()), targets.as_in_context(mx.cpu())
            trainer.set_learning_rate(_lr_at(it, total_iters, lr, warmup=min(50, total_iters // 10)))
            cls_targets, box_targets = assign_targets(targets)
            rounded = in_loop.swap_in()
            with autograd.record():
                cls_preds, box_preds, _ = net(data)
                sum_loss, _, _ = loss_fn([cls_preds], [box_preds], [cls_targets], [box_targets])
            autograd.backward(sum_loss)
            in_loop.swap_out()  # the gradient at format(w) updates the fp32 w
            loss = float(sum_loss[0].mean().asscalar())
            if not np.isfinite(loss):
                it += 1
                continue
            if lq_lambda:
                sums["lq"] += in_loop.add_lq_gradient(rounded, lq_lambda)
            trainer.step(1)
            sums["loss"] += loss
            seen += 1
            it += 1
            bar.set_postfix(loss="%.3f" % (sums["loss"] / seen))
        bar.close()
        epoch_min = (time.time() - epoch_start) / 60
        metrics = evaluate_rounded()
        record({"epoch": epoch, "iterations": it, "loss": round(sums["loss"] / max(seen, 1), 4),
                "lq": round(sums["lq"] / max(seen, 1), 6), "epoch_min": round(epoch_min, 2),
                "val_map": round(metrics["map"], 3), "val_ap50": round(metrics["ap50"], 3)})

    rounded = in_loop.swap_in()  # export exactly the rounded weights
    run = {"format": fmt.spec, "epochs": epochs, "lq_lambda": lq_lambda, "seed": seed, "lr": lr,
           "batch_size": batch_size, "train_images": len(train_set),
           "train_dataset": train_set.describe(), "val_images": len(val_set),
           "layers": [l.name for l in layers], "rounded_params": sorted(rounded),
           "source_checkpoint": ckpt.prefix, "history": history,
           "minutes": round((time.time() - start) / 60, 2)}
    source = {k: v for k, v in ckpt.meta.items()
              if k in ("model", "weights", "width_divisor", "trained_on")}
    source["finetune"] = {k: v for k, v in run.items() if k != "rounded_params"}
    export_checkpoint(net, source, out_prefix)
    run["checkpoint"] = out_prefix
    return run


def default_out(fmt_spec, lq_lambda=0.0, model_dir="model"):
    name = "finetuned-%s" % fmt_spec.replace(":", "_")
    if lq_lambda:
        name += "-lq%g" % lq_lambda
    return os.path.join(model_dir, name)


def finetune_and_save(fp32_prefix, out_prefix, train_set, val_set, fmt_spec, log_file=None,
                      **options):
    """``finetune`` plus its run record beside the checkpoint (``PREFIX-finetune.json``), which
    the studies read to reuse a checkpoint made with the same settings."""
    from ssdq.fileio import write_json

    log_file = log_file or "%s-finetune.log.jsonl" % out_prefix
    run = finetune(fp32_prefix, out_prefix, train_set, val_set, fmt_spec, log_file=log_file,
                   **options)
    write_json("%s-finetune.json" % out_prefix, run)
    return run
