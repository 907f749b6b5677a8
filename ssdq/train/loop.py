"""The one training loop of ssdq; what differs between trainings is a hook.

``fit(net, train_set, epochs, ..., hooks=[...])`` trains a Gluon SSD: anchor targets from
``train.augment.TargetAssigner`` (gluoncv's SSD target generator's matching, in numpy), gluoncv's
MultiBox loss (3:1 hard negative mining), Adam with a linear warm-up and a cosine decay,
gradients clipped, a batch whose loss is not finite skipped (and logged), the same seed for the
data order, the augmentation and the initialisation. Hooks, in the style of detectron2's
``HookBase``, are called around it:

- ``before_train`` / ``after_train``; ``before_epoch`` / ``after_epoch`` (an epoch's summary is
  ``trainer.epoch_entry``: hooks add their figures to it before it is recorded);
- ``before_step`` (before the forward pass), ``after_backward`` (the gradients are there: a
  penalty's gradient is added, fake-quantized weights are swapped back), ``after_step``;
- ``evaluation()``: a context for evaluating or exporting the weights as they are deployed
  (rounded weights, for a number format in the loop);
- ``log_fields()``: figures added to every logged iteration;
- ``loss_terms(data, cls_preds, box_preds, cls_targets)``: a per-image loss added to the
  ground-truth loss inside the recorded region (distillation, ``train.distill``), or None.

Built on it: the reference model's training (``train.reference``, with ``EvalHook`` keeping the
best epoch by dev mAP), network slimming's sparsity training (``compress.pruning.sparsity``),
fine-tuning a pruned network, and fine-tuning with a number format in the loop
(``compress.formats.finetune``).
"""
import contextlib
import json
import logging
import random
import time

import mxnet as mx
import numpy as np
from gluoncv.loss import SSDMultiBoxLoss
from mxnet import autograd, gluon
from tqdm import tqdm

from ssdq.data.transforms import INPUT_SIZE
from ssdq.eval.loop import detect
from ssdq.eval.metrics import evaluator_for
from ssdq.fileio import atomic_path
from ssdq.train.augment import AugmentedDetection, TargetAssigner
from ssdq.train.options import FINETUNE_BATCH_SIZE, FINETUNE_LR

log = logging.getLogger("ssdq.train")


class HookBase:
    """A training hook: override the calls it needs; ``self.trainer`` is set by ``fit``."""

    trainer = None

    def describe(self):
        """What the hook does, for a run record (its class name unless it says more)."""
        return type(self).__name__

    def before_train(self):
        pass

    def before_epoch(self):
        pass

    def before_step(self):
        pass

    def after_backward(self):
        pass

    def after_step(self):
        pass

    def after_epoch(self):
        pass

    def after_train(self):
        pass

    def log_fields(self):
        return {}

    @contextlib.contextmanager
    def evaluation(self):
        yield

    def loss_terms(self, data, cls_preds, box_preds, cls_targets):
        return None


class Trainer:
    """The state hooks read and write: the net, the epoch and iteration, the history."""

    def __init__(self, net, epochs, hooks, log_file=None, log_extra=None):
        self.net, self.epochs, self.hooks = net, epochs, list(hooks)
        self.epoch, self.iteration, self.history = 0, 0, []
        self.epoch_entry = {}
        self.log_extra = dict(log_extra or {})
        self._log_file, self._start = log_file, time.time()
        for hook in self.hooks:
            hook.trainer = self

    def record(self, entry):
        """Add an entry to the history, the log and the log file (JSON lines)."""
        entry = dict(self.log_extra, **entry)
        entry["elapsed_min"] = round((time.time() - self._start) / 60, 2)
        self.history.append(entry)
        log.info(json.dumps(entry))
        if self._log_file:
            with open(self._log_file, "a") as f:
                f.write(json.dumps(entry) + "\n")

    def call(self, name):
        for hook in self.hooks:
            getattr(hook, name)()

    def retrace(self):
        """Gluon traces the graph in the mode (train or predict) of its first call, and SSD
        returns different outputs in each: drop the cached graph whenever the mode changes."""
        self.net.hybridize(static_alloc=True, static_shape=True)

    @contextlib.contextmanager
    def evaluation(self):
        """The weights as deployed, in predict mode, for the block."""
        with contextlib.ExitStack() as stack:
            for hook in self.hooks:
                stack.enter_context(hook.evaluation())
            self.retrace()
            yield
        self.retrace()

    def evaluate(self, dataset, match=None, batch_size=32):
        """Metrics of the deployed weights on ``dataset`` (pycocotools or VOC07)."""
        with self.evaluation():
            metrics, _ = detect(gluon_forward(self.net), dataset, evaluator_for(dataset, match),
                                batch_size=batch_size, progress=False)
        return metrics


def lr_at(it, total, base_lr, warmup):
    """Linear warm-up over ``warmup`` iterations, then cosine decay to 1% of ``base_lr``."""
    if it < warmup:
        return base_lr * (it + 1) / warmup
    progress = (it - warmup) / max(1, total - warmup)
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * progress)))


def warmup_for(epochs, images, batch_size, at_most=50):
    """The fine-tunings' warm-up: a tenth of the iterations, at most ``at_most``."""
    return min(at_most, epochs * (images // batch_size) // 10)


def fit(net, train_set, epochs, batch_size=FINETUNE_BATCH_SIZE, lr=FINETUNE_LR, warmup=50,
        wd=0.0, seed=0, hooks=(), num_workers=1, log_every=20, log_file=None, log_extra=None,
        nonfinite_file=None, progress=False, desc="train"):
    """Train the initialised Gluon SSD ``net`` on ``train_set`` in place; return the
    ``Trainer`` (its ``history``: the log entries, also written to ``log_file`` as JSON lines).

    ``warmup``: iterations of linear warm-up (``warmup_for`` gives the fine-tunings' share);
    ``seed`` (None: leave the generators as they are) seeds Python's, numpy's and MXNet's
    generators first; ``nonfinite_file``: where a skipped batch with a non-finite loss is saved
    for inspection."""
    if seed is not None:
        random.seed(seed)
        np.random.seed(seed)
        mx.random.seed(seed)
    trainer = Trainer(net, epochs, hooks, log_file, log_extra)
    trainer.retrace()
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, INPUT_SIZE, INPUT_SIZE)))
    assign_targets = TargetAssigner(anchors)
    loss_fn = SSDMultiBoxLoss()
    loader = gluon.data.DataLoader(AugmentedDetection(train_set, seed or 0), batch_size,
                                   shuffle=True, last_batch="discard", num_workers=num_workers)
    total_iters = max(1, epochs * len(loader))
    trainer.optimizer = gluon.Trainer(net.collect_params(), "adam", {
        "learning_rate": lr, "wd": wd, "clip_gradient": 10.0})
    trainer.call("before_train")
    for epoch in range(1, epochs + 1):
        trainer.epoch, trainer.epoch_entry = epoch, {}
        trainer.retrace()
        trainer.call("before_epoch")
        sums, seen, epoch_start = {"cls_loss": 0.0, "box_loss": 0.0}, 0, time.time()
        bar = tqdm(loader, desc="%s epoch %d/%d" % (desc, epoch, epochs), unit="batch",
                   disable=not progress, leave=False)
        for data, targets in bar:
            trainer.optimizer.set_learning_rate(lr_at(trainer.iteration, total_iters, lr, warmup))
            data, targets = data.as_in_context(mx.cpu()), targets.as_in_context(mx.cpu())
            cls_targets, box_targets = assign_targets(targets)
            trainer.call("before_step")
            with autograd.record():
                cls_preds, box_preds, _ = net(data)
                sum_loss, cls_loss, box_loss = loss_fn([cls_preds], [box_preds],
                                                       [cls_targets], [box_targets])
                for hook in trainer.hooks:
                    extra = hook.loss_terms(data, cls_preds, box_preds, cls_targets)
                    if extra is not None:
                        sum_loss = [sum_loss[0] + extra]
            batch = {"cls_loss": float(cls_loss[0].mean().asscalar()),
                     "box_loss": float(box_loss[0].mean().asscalar())}
            trainer.iteration += 1
            if not np.isfinite(batch["cls_loss"] + batch["box_loss"]):
                # A last guard: never let one degenerate batch poison the weights.
                trainer.call("after_step")
                trainer.record({"epoch": epoch, "iter": trainer.iteration,
                                "skipped": "non-finite loss"})
                if nonfinite_file:
                    mx.nd.save(nonfinite_file, {"data": data, "targets": targets})
                continue
            autograd.backward(sum_loss)
            trainer.call("after_backward")
            trainer.optimizer.step(1)
            trainer.call("after_step")
            for key, value in batch.items():
                sums[key] += value
            seen += 1
            bar.set_postfix(loss="%.3f" % ((sums["cls_loss"] + sums["box_loss"]) / seen))
            if log_every and trainer.iteration % log_every == 0:
                trainer.record({"epoch": epoch, "iter": trainer.iteration,
                                "lr": round(trainer.optimizer.learning_rate, 6),
                                **{k: round(v / seen, 4) for k, v in sums.items()},
                                **_fields(trainer)})
        bar.close()
        trainer.epoch_entry.update(
            epoch=epoch, iter=trainer.iteration,
            loss=round((sums["cls_loss"] + sums["box_loss"]) / max(seen, 1), 4),
            **{k: round(v / max(seen, 1), 4) for k, v in sums.items()},
            epoch_min=round((time.time() - epoch_start) / 60, 2))
        trainer.call("after_epoch")
        trainer.record(trainer.epoch_entry)
    trainer.call("after_train")
    return trainer


def _fields(trainer):
    out = {}
    for hook in trainer.hooks:
        out.update(hook.log_fields())
    return out


class EvalHook(HookBase):
    """Score the weights on ``dataset`` every ``every`` epochs and after the last (``at_start``:
    before training too, and the starting weights are then a candidate), as ``KEY_map``/
    ``KEY_ap50`` in the epoch entry. ``keep="best"`` restores the best epoch's weights when
    training ends (and saves them to ``save_to`` each time they improve); ``"last"`` keeps the
    last epoch's (saved to ``save_to`` when training ends)."""

    def __init__(self, dataset, every=1, keep="last", key="dev", at_start=False, save_to=None,
                 match=None, batch_size=32):
        if keep not in ("best", "last"):
            raise ValueError("keep is 'best' or 'last', not %r" % keep)
        self.dataset, self.every, self.keep, self.key = dataset, every, keep, key
        self.at_start, self.save_to, self.match, self.batch_size = at_start, save_to, match, batch_size
        self.best_map, self.best_epoch, self._best = -1.0, None, None

    def _score(self):
        metrics = self.trainer.evaluate(self.dataset, self.match, self.batch_size)
        return {"%s_map" % self.key: round(metrics["map"], 3),
                "%s_ap50" % self.key: round(metrics["ap50"], 3)}, metrics["map"]

    def before_train(self):
        if self.at_start:
            entry, value = self._score()
            if self._keep_if_best(value, 0):
                entry["saved"] = self.save_to
            self.trainer.record(dict(entry, epoch=0))

    def after_epoch(self):
        t = self.trainer
        if t.epoch % self.every and t.epoch != t.epochs:
            return
        entry, value = self._score()
        t.epoch_entry.update(entry)
        if self._keep_if_best(value, t.epoch):
            t.epoch_entry["saved"] = self.save_to

    def _keep_if_best(self, value, epoch):
        """Remember (and save) the weights if ``value`` beats the best so far; -> whether saved
        to ``save_to``."""
        if self.keep != "best" or value <= self.best_map:
            return False
        t = self.trainer
        self.best_map, self.best_epoch = value, epoch
        self._best = {name: p.data().copy() for name, p in t.net.collect_params().items()}
        if not self.save_to:
            return False
        with atomic_path(self.save_to) as tmp:
            t.net.save_parameters(tmp)
        return True

    def after_train(self):
        if self.keep == "last" and self.save_to:
            with atomic_path(self.save_to) as tmp:
                self.trainer.net.save_parameters(tmp)
            self.trainer.record({"kept_epoch": self.trainer.epoch, "saved": self.save_to})
        if self.keep == "best" and self._best is not None:
            for name, param in self.trainer.net.collect_params().items():
                param.set_data(self._best[name])
            self.trainer.record({"kept_epoch": self.best_epoch,
                                 "%s_map" % self.key: round(self.best_map, 3)})


def gluon_forward(net):
    """A Gluon SSD as the evaluation loop's forward: numpy batch -> numpy (ids, scores, boxes)."""
    def forward(batch):
        ids, scores, boxes = net(mx.nd.array(batch))
        return ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()
    return forward
