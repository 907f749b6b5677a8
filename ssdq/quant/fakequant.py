"""Fake quantization inside a Gluon SSD: oneDNN's int8 graph, computed in fp32 and trainable.

``quantize_network(net, points, layers)`` rewrites a reference SSD in place. Every convolution
(a feature convolution with its BatchNorm and ReLU, or a prediction head) becomes a
``QuantConv`` that computes what MXNet's quantized convolution computes (``quant.quantize.
build_int8``):

- BatchNorm folded into the convolution in the forward pass with its running statistics, which
  stay frozen (IAO's folding after its freeze point): ``w * s``, ``(b - mean) * s + beta``,
  ``s = gamma / sqrt(var + eps)``. Gamma, beta, weights and biases all train;
- int8 weights, one scale per output channel, ``127.5 / max|w_c|`` (the scale follows the
  weights and passes no gradient);
- activations on the grids of MXNet's ``quantize_v2``/requantize: uint8 at ``255.5 / t`` where
  the tensor is never negative (after a ReLU), int8 at ``127.5 / t`` otherwise; ``t`` is a
  trained range, one a tensor (``ActPoint``), learned as LSQ learns its step: rounding passes
  the gradient straight through (``round_ste``), so ``d out / d t`` is the rounding error inside
  the range and 1 where the range clips;
- L2Norm's learned scale, which export folds into the conv4_3 heads, is folded into those heads'
  weights here too, so the heads read the unscaled L2-normalised tensor, as the int8 graph does.

A quantized tensor travels between blocks on its integer grid, its scale folded into the
weights of the block that writes it and of the blocks that read it (``QuantConv``): the same
function and gradients as rescaling every activation on the way in and out, at a fraction of the
cost (docs/results.md, "Quantization-aware training", has the step times).

The int32 bias is left unrounded (its step, ``1 / (s_w s_x)``, is about 1e-4 here). A point's
``kind`` may also be ``"clip"``: a fixed clip to ``[-t, t]`` (``[0, t]`` after a ReLU), no
rounding (the clipping paper's training). Layers whose weights stay fp32 (``--first-last-fp32``)
still feed and read quantized tensors where the int8 graph does.

The rewritten network shares every Parameter with the original blocks, so once ``restore()`` puts
the plain blocks back they hold the trained weights, ready to export.
"""
from dataclasses import dataclass

import mxnet as mx
from gluoncv.model_zoo.ssd.vgg_atrous import Normalize
from mxnet import gluon
from mxnet.gluon import nn

from ssdq.errors import SsdqError


@dataclass
class ActPoint:
    """One quantized tensor: its range ``threshold`` (trained, initialised from calibration),
    ``signed`` (int8) or not (uint8), and the calibration key it is written back under."""

    key: str
    threshold: float
    signed: bool
    kind: str = "int8"

    def levels(self):
        """(scale numerator, lowest integer, highest integer) of MXNet's convention."""
        if self.signed:
            return 127.5, -128, 127
        return 255.5, 0, 255


def grid_scale(F, threshold, point):
    """The (1,) scale that puts a tensor at range ``threshold`` on ``point``'s integer grid."""
    top, _, _ = point.levels()
    return top / (F.abs(threshold) + 1e-8)


def to_grid(F, x, point, relu=False):
    """``x`` (already multiplied by its scale) rounded onto ``point``'s integers, straight
    through; ``relu``: apply the ReLU first (a uint8 grid then needs only its top bound)."""
    _, lo, hi = point.levels()
    if relu:
        x = F.relu(x)
        if lo == 0:
            return F.minimum(F.contrib.round_ste(x), hi)
    return F.clip(F.contrib.round_ste(x), lo, hi)


def fake_quant_weight(F, w):
    """int8 weights, one scale per output channel (``127.5 / max|w_c|``), straight-through."""
    top = F.BlockGrad(F.max(F.abs(w), axis=(1, 2, 3), keepdims=True))
    scale = 127.5 / F.maximum(top, 1e-12)
    return F.broadcast_div(F.clip(F.contrib.round_ste(F.broadcast_mul(w, scale)), -128, 127),
                           scale)


class QuantConv(gluon.HybridBlock):
    """A convolution (+ folded BatchNorm, + ReLU) between fake-quantized tensors.

    A quantized tensor travels between blocks on its integer grid (``x * s``, not ``x``):
    the block that writes it folds its scale ``s`` into its weights and bias, the blocks
    that read it fold ``1 / s`` into theirs (max pooling and L2 normalisation, between
    them, do not mind a positive factor). The same function as rescaling every activation
    twice, and its gradients, at the cost of rescaling the (small) weights: MXNet's
    broadcast ops against a (1,) range took three quarters of a QAT step on the
    activations. ``in_mode``: ``"quantize"`` (this block puts its real input on the grid:
    the image, L2Norm's output), ``"grid"`` (it arrives on the grid) or None (real, fp32).
    ``real_output``: divide the scale back out (the heads, which the loss reads)."""

    def __init__(self, conv, batchnorm=None, relu=False, weights_int8=True, in_point=None,
                 out_point=None, in_scale=None, in_threshold=None, in_mode=None,
                 out_threshold=None, real_output=False):
        super().__init__(prefix=conv.prefix + "qat_")
        self._conv_kwargs = {k: v for k, v in conv._kwargs.items() if k != "no_bias"}
        self._relu, self._weights_int8 = relu, weights_int8
        self._in, self._out, self._in_mode = in_point, out_point, in_mode
        self._real_output = real_output
        self._eps = batchnorm._kwargs["eps"] if batchnorm is not None else None
        self._has_bn, self._has_scale = batchnorm is not None, in_scale is not None
        self.weight, self.bias = conv.weight, conv.bias
        if batchnorm is not None:
            self.gamma, self.beta = batchnorm.gamma, batchnorm.beta
            self.running_mean, self.running_var = (batchnorm.running_mean,
                                                   batchnorm.running_var)
        if in_scale is not None:
            self.in_scale = in_scale
        if in_mode is not None:
            self.in_threshold = in_threshold  # shared with the writer, or other readers
        if out_point is not None and out_point.kind != "clip":  # a clip is a constant
            self.out_threshold = out_threshold
        # the parameters are the original blocks' and the ranges: collected here too, so
        # that training, saving and loading see them
        self.params.update({v.name: v for k, v in self._reg_params.items()})

    def hybrid_forward(self, F, x, weight, bias, **p):
        if self._has_bn:
            s = p["gamma"] / F.sqrt(p["running_var"] + self._eps)
            weight = F.broadcast_mul(weight, F.reshape(s, shape=(-1, 1, 1, 1)))
            bias = (bias - p["running_mean"]) * s + p["beta"]
        if self._has_scale:  # L2Norm's scale, folded into the heads that read it
            weight = F.broadcast_mul(weight, F.reshape(p["in_scale"], shape=(1, -1, 1, 1)))
        if self._weights_int8:
            weight = fake_quant_weight(F, weight)
        factor = None  # the scalar the weights are multiplied by: s_out / s_in
        if self._in_mode is not None:
            s_in = grid_scale(F, p["in_threshold"], self._in)
            if self._in_mode == "quantize":
                x = to_grid(F, F.broadcast_mul(x, F.reshape(s_in, shape=(1, 1, 1, 1))),
                            self._in)
            factor = 1.0 / s_in
        gridded = self._out is not None and self._out.kind != "clip"
        if gridded:
            s_out = grid_scale(F, p["out_threshold"], self._out)
            factor = s_out if factor is None else factor * s_out
            bias = F.broadcast_mul(bias, s_out)
        if factor is not None:
            weight = F.broadcast_mul(weight, F.reshape(factor, shape=(1, 1, 1, 1)))
        y = F.Convolution(x, weight, bias, no_bias=False, **self._conv_kwargs)
        if gridded:
            y = to_grid(F, y, self._out, relu=self._relu)
            if self._real_output:
                y = F.broadcast_div(y, F.reshape(s_out, shape=(1, 1, 1, 1)))
            return y
        if self._relu:
            y = F.relu(y)
        if self._out is not None:  # a fixed clip (the clipping paper's training)
            t = self._out.threshold
            y = F.clip(y, -t if self._out.signed else 0.0, t)
        return y


class L2Only(gluon.HybridBlock):
    """gluoncv's Normalize without its scale (the heads reading it hold the scale)."""

    def __init__(self, normalize):
        super().__init__(prefix=normalize.prefix + "qat_")
        self._eps = normalize.eps

    def hybrid_forward(self, F, x):
        return F.L2Normalization(x, mode="channel", eps=self._eps)


def _constant(value):
    return mx.init.Constant(float(value))


def _replace_child(parent, name, block):
    """Swap a registered child (an attribute or a Sequential's entry) for ``block``; -> the
    call that puts the original back."""
    original = parent._children[name]

    def put(child):
        parent._children[name] = child
        if not name.isdigit():
            object.__setattr__(parent, name, child)

    put(block)
    return lambda: put(original)


def _parameter(name, point):
    param = mx.gluon.Parameter(name, shape=(1,), init=_constant(point.threshold))
    param.initialize()
    if point.kind == "clip":  # a fixed clip, not a trained range
        param.grad_req = "null"
    return param


def quantize_network(net, layers):
    """Rewrite the reference SSD ``net`` in place; ``layers``: {conv block name: {"weights_int8",
    "in" (ActPoint or None: the input is not quantized here), "out" (ActPoint or None),
    "reads" (optional: the key of the tensor it reads, so that a tensor another block put on
    the grid arrives there)}}, one entry per convolution. -> ({key: threshold Parameter} of
    every range, the call that restores the plain network, whose blocks hold the same, trained,
    parameters)."""
    features = net.features
    ranges = {}  # one Parameter a tensor, shared by its writer and its readers

    def range_of(point, name):
        if point.key not in ranges:
            ranges[point.key] = _parameter(name, point)
        return ranges[point.key]

    def plan(conv):
        if conv.name not in layers:
            raise SsdqError("no quantization plan for convolution %s" % conv.name)
        return layers[conv.name]

    convs = []  # (parent, child name, conv, its BatchNorm, the children after it, head index)
    for seq in list(features.stages) + list(features.extras):
        children = list(seq._children.items())
        for at, (name, block) in enumerate(children):
            if isinstance(block, nn.Conv2D):
                bn = children[at + 1][1] if at + 1 < len(children) and isinstance(
                    children[at + 1][1], nn.BatchNorm) else None
                convs.append((seq, name, block, bn, children[at + 1:at + 3], None))
    for predictors in (net.class_predictors, net.box_predictors):
        for index, (name, predictor) in enumerate(list(predictors._children.items())):
            convs.append((predictors, name, predictor.predictor, None, (), index))
    on_grid = {}  # key -> (Parameter, point) of each tensor a writer puts on the grid
    for _, _, conv, _, _, _ in convs:
        out = plan(conv)["out"]
        if out is not None:
            param = range_of(out, conv.prefix + "qat_out_threshold")
            if out.kind != "clip":
                on_grid[out.key] = (param, out)

    norm = features.norm4 if isinstance(features.norm4, Normalize) else None
    undo = []
    for parent, name, conv, bn, after, head in convs:
        step = plan(conv)
        in_point, in_mode, in_threshold = step["in"], None, None
        if in_point is not None:
            in_mode, in_threshold = "quantize", range_of(in_point, conv.prefix + "qat_in_threshold")
        elif step.get("reads") in on_grid:
            in_mode = "grid"
            in_threshold, in_point = on_grid[step["reads"]]
        out = step["out"]
        q = QuantConv(conv, bn, relu=head is None, weights_int8=step["weights_int8"],
                      in_point=in_point, out_point=out, in_mode=in_mode,
                      in_threshold=in_threshold,
                      out_threshold=ranges[out.key] if out is not None else None,
                      in_scale=norm.scale if head == 0 and norm is not None else None,
                      real_output=head is not None)
        undo.append(_replace_child(parent, name, q))
        for later, other in after:  # its BatchNorm and ReLU are in it now
            if isinstance(other, (nn.BatchNorm, nn.Activation)):
                undo.append(_replace_child(parent, later, nn.HybridLambda(lambda F, x: x)))
    if norm is not None:
        undo.append(_replace_child(features, "norm4", L2Only(norm)))
    net.hybridize(active=False)  # a graph traced before the rewrite must not be reused

    def restore():
        for put_back in reversed(undo):
            put_back()
        net.hybridize(active=False)  # drop the traced graph of the rewritten network
    return dict(ranges), restore


def clip_plan(layers, exponent):
    """The clipping paper's training: every convolution's output clipped to [-2^J, 2^J] (after
    a ReLU, [0, 2^J]) in the forward pass, weights and inputs left alone; ``layers``: the
    checkpoint's (``model.layers.list_layers``). A plan for ``quantize_network``."""
    clip = 2.0 ** exponent
    return {layer.name.rsplit("_fwd", 1)[0]: {
        "weights_int8": False, "in": None,
        "out": ActPoint(layer.name, clip, signed=True, kind="clip")} for layer in layers}

