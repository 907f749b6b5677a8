"""Knowledge distillation: a teacher network's outputs as a second target of the training loop.

``DistillHook`` runs the teacher (by default the dense fp32 reference) on every training batch,
in train mode (so the SSD returns its raw class scores and box offsets) without recording, and
adds two terms to the ground-truth loss of the one training loop (``train.loop.fit``):

- **class scores**: the Kullback-Leibler divergence from the teacher's softmax to the student's,
  both at temperature ``T``, times ``T^2`` (Hinton et al.: keeps the gradient's scale as ``T``
  changes), summed over every anchor;
- **box offsets**: the smooth L1 distance from the student's offsets to the teacher's, on the
  anchors the teacher is confident about (its best foreground probability at least
  ``box_confidence``), where its offsets say where an object is.

Both are normalised like gluoncv's SSD loss (by the batch's positive anchors) and weighted
(``cls_weight``, ``box_weight``). A student with fewer scales than the teacher (a pruned network
in ``max`` mode) has the first anchors of the teacher's: the teacher's outputs are cut to them.
"""
import os

from mxnet import autograd, nd
from mxnet.gluon import nn

from ssdq.errors import SsdqError
from ssdq.model import weights
from ssdq.model.checkpoint import load_checkpoint
from ssdq.model.convert import bn_free_reference, network_from
from ssdq.train.loop import HookBase

TEMPERATURE = 2.0
BOX_CONFIDENCE = 0.5


def load_teacher(source=None):
    """The teacher as a Gluon network whose BatchNorms (if any) use their running statistics in
    train mode: ``source`` is a weights file of the reference model, the prefix of a checkpoint
    written with its BatchNorm weights (``ssdq prune``/``ssdq qat``) or any fp32 checkpoint of
    the reference topology (BatchNorm folded); None: the shipped dense reference. -> (net, what
    it is, for the run record)."""
    source = source or weights.REFERENCE_WEIGHTS
    if os.path.isfile(source) or _has_bn_params(source):
        net, _ = network_from(source)
    else:
        ckpt = load_checkpoint(source)
        if ckpt.meta.get("precision", "fp32") != "fp32":
            raise SsdqError("the teacher %s is a %s checkpoint: distill from an fp32 one"
                            % (source, ckpt.meta.get("precision")))
        net = bn_free_reference(ckpt)
    stack = [net]
    while stack:
        block = stack.pop()
        if isinstance(block, nn.BatchNorm):
            block._kwargs["use_global_stats"] = True  # pylint: disable=protected-access
        stack.extend(block._children.values())  # pylint: disable=protected-access
    for param in net.collect_params().values():
        param.grad_req = "null"
    net.hybridize(static_alloc=True, static_shape=True)
    return net, weights.describe(source) if os.path.isfile(source) else source


def _has_bn_params(prefix):
    if not os.path.isfile(prefix + "-meta.json"):
        return False
    return bool(load_checkpoint(prefix).meta.get("bn_params"))


class DistillHook(HookBase):
    """The teacher's soft class scores and confident box offsets as extra loss terms."""

    def __init__(self, teacher, source, temperature=TEMPERATURE, cls_weight=1.0, box_weight=1.0,
                 box_confidence=BOX_CONFIDENCE):
        if temperature <= 0:
            raise SsdqError("the distillation temperature must be positive, not %g" % temperature)
        self.teacher, self.source = teacher, source
        self.temperature, self.cls_weight, self.box_weight = temperature, cls_weight, box_weight
        self.box_confidence = box_confidence
        self._sums, self._seen = {"kd_cls": 0.0, "kd_box": 0.0}, 0

    def describe(self):
        return {"distillation": "teacher's class scores at a temperature (KL) and its box "
                "offsets on confident anchors (smooth L1)", "teacher": self.source,
                "temperature": self.temperature, "cls_weight": self.cls_weight,
                "box_weight": self.box_weight, "box_confidence": self.box_confidence}

    def before_epoch(self):
        self._sums, self._seen = {"kd_cls": 0.0, "kd_box": 0.0}, 0

    def loss_terms(self, data, cls_preds, box_preds, cls_targets):
        """Per-image distillation loss (B,) to add to the ground-truth loss (recorded)."""
        with autograd.pause(train_mode=True):
            t_cls, t_box, _ = self.teacher(data)
        anchors = cls_preds.shape[1]
        if t_cls.shape[1] < anchors or t_cls.shape[2] != cls_preds.shape[2]:
            raise SsdqError("the teacher %s predicts %d classes on %d anchors, the student %d "
                            "on %d: distill from a teacher of the same classes and scales"
                            % (self.source, t_cls.shape[2] - 1, t_cls.shape[1],
                               cls_preds.shape[2] - 1, anchors))
        t_cls = t_cls.slice_axis(axis=1, begin=0, end=anchors)
        t_box = t_box.slice_axis(axis=1, begin=0, end=anchors)
        num_pos = max(1.0, float((cls_targets > 0).sum().asscalar()))
        temp = self.temperature
        t_prob = nd.softmax(t_cls / temp, axis=-1)
        kl = nd.sum(t_prob * (nd.log(t_prob + 1e-12) - nd.log_softmax(cls_preds / temp, axis=-1)),
                    axis=-1)
        kd_cls = nd.sum(kl, axis=1) * (temp * temp) / num_pos
        confident = (nd.max(nd.softmax(t_cls, axis=-1).slice_axis(axis=-1, begin=1, end=None),
                            axis=-1) >= self.box_confidence)
        diff = nd.abs(box_preds.reshape_like(t_box) - t_box)
        smooth = nd.where(diff > 1.0, diff - 0.5, 0.5 * nd.square(diff))
        kd_box = nd.sum(nd.sum(smooth, axis=-1) * confident, axis=1) / num_pos
        self._sums["kd_cls"] += float(kd_cls.mean().asscalar())
        self._sums["kd_box"] += float(kd_box.mean().asscalar())
        self._seen += 1
        return self.cls_weight * kd_cls + self.box_weight * kd_box

    def _means(self):
        return {k: round(v / max(1, self._seen), 4) for k, v in self._sums.items()}

    def log_fields(self):
        return self._means()

    def after_epoch(self):
        self.trainer.epoch_entry.update(self._means())


def distill_hooks(source, enabled=True, **kwargs):
    """``[DistillHook]`` for the teacher ``source`` (None: the dense reference), or ``[]``."""
    if not enabled:
        return []
    teacher, described = load_teacher(source)
    return [DistillHook(teacher, described, **kwargs)]

