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

The int32 bias is left unrounded (its step, ``1 / (s_w s_x)``, is about 1e-4 here). A point's
``kind`` may also be ``"clip"``: a fixed clip to ``[-t, t]`` (``[0, t]`` after a ReLU), no
rounding (the clipping paper's training). Layers whose weights stay fp32 (``--first-last-fp32``)
still feed and read quantized tensors where the int8 graph does.

The rewritten network shares every Parameter with the original blocks, so once ``restore()`` puts
the plain blocks back they hold the trained weights, ready to export.
"""
from dataclasses import dataclass

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


def fake_quant(F, x, threshold, point):
    """``x`` on ``point``'s grid at range ``threshold`` (a (1,) array), straight-through."""
    t = F.reshape(F.abs(threshold) + 1e-8, shape=(1, 1, 1, 1))
    if point.kind == "clip":
        lo = -1.0 if point.signed else 0.0
        return F.broadcast_minimum(F.broadcast_maximum(x, lo * t), t)
    top, lo, hi = point.levels()
    scale = F.broadcast_div(F.ones_like(t) * top, t)
    q = F.clip(F.contrib.round_ste(F.broadcast_mul(x, scale)), lo, hi)
    return F.broadcast_div(q, scale)


def fake_quant_weight(F, w):
    """int8 weights, one scale per output channel (``127.5 / max|w_c|``), straight-through."""
    top = F.BlockGrad(F.max(F.abs(w), axis=(1, 2, 3), keepdims=True))
    scale = 127.5 / F.maximum(top, 1e-12)
    return F.broadcast_div(F.clip(F.contrib.round_ste(F.broadcast_mul(w, scale)), -128, 127),
                           scale)


def _block_class():
    from mxnet import gluon

    class QuantConv(gluon.HybridBlock):
        """A convolution (+ folded BatchNorm, + ReLU) between fake-quantized tensors."""

        def __init__(self, conv, batchnorm=None, relu=False, weights_int8=True, in_point=None,
                     out_point=None, in_scale=None, in_threshold=None):
            super().__init__(prefix=conv.prefix + "qat_")
            self._conv_kwargs = {k: v for k, v in conv._kwargs.items() if k != "no_bias"}
            self._relu, self._weights_int8 = relu, weights_int8
            self._in, self._out = in_point, out_point
            self._eps = batchnorm._kwargs["eps"] if batchnorm is not None else None
            self._has_bn, self._has_scale = batchnorm is not None, in_scale is not None
            self.weight, self.bias = conv.weight, conv.bias
            if batchnorm is not None:
                self.gamma, self.beta = batchnorm.gamma, batchnorm.beta
                self.running_mean, self.running_var = (batchnorm.running_mean,
                                                       batchnorm.running_var)
            if in_scale is not None:
                self.in_scale = in_scale
            if in_point is not None:
                self.in_threshold = in_threshold  # shared by the blocks reading one tensor
            # the parameters are the original blocks' (and a shared input range): collected
            # here too, so that training, saving and loading see them
            self.params.update({v.name: v for k, v in self._reg_params.items()})
            if out_point is not None:
                with self.name_scope():
                    self.out_threshold = self.params.get(
                        "out_threshold", shape=(1,), init=_constant(out_point.threshold))
                self.out_threshold.initialize()
                if out_point.kind == "clip":  # a fixed clip, not a trained range
                    self.out_threshold.grad_req = "null"

        def hybrid_forward(self, F, x, weight, bias, **p):
            if self._in is not None:
                x = fake_quant(F, x, p["in_threshold"], self._in)
            if self._has_bn:
                s = p["gamma"] / F.sqrt(p["running_var"] + self._eps)
                weight = F.broadcast_mul(weight, F.reshape(s, shape=(-1, 1, 1, 1)))
                bias = (bias - p["running_mean"]) * s + p["beta"]
            if self._has_scale:  # L2Norm's scale, folded into the heads that read it
                weight = F.broadcast_mul(weight, F.reshape(p["in_scale"], shape=(1, -1, 1, 1)))
            if self._weights_int8:
                weight = fake_quant_weight(F, weight)
            y = F.Convolution(x, weight, bias, no_bias=False, **self._conv_kwargs)
            if self._relu:
                y = F.relu(y)
            if self._out is not None:
                y = fake_quant(F, y, p["out_threshold"], self._out)
            return y

    class L2Only(gluon.HybridBlock):
        """gluoncv's Normalize without its scale (the heads reading it hold the scale)."""

        def __init__(self, normalize):
            super().__init__(prefix=normalize.prefix + "qat_")
            self._eps = normalize.eps

        def hybrid_forward(self, F, x):
            return F.L2Normalization(x, mode="channel", eps=self._eps)

    return QuantConv, L2Only


def _constant(value):
    import mxnet as mx

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
    import mxnet as mx

    param = mx.gluon.Parameter(name, shape=(1,), init=_constant(point.threshold))
    param.initialize()
    return param


def quantize_network(net, layers):
    """Rewrite the reference SSD ``net`` in place; ``layers``: {conv block name: {"weights_int8",
    "in" (ActPoint or None: the input is not quantized here), "out" (ActPoint or None)}}, one
    entry per convolution. -> ({key: threshold Parameter} of every trained range, the call that
    restores the plain network, whose blocks hold the same, trained, parameters)."""
    from gluoncv.model_zoo.ssd.vgg_atrous import Normalize
    from mxnet.gluon import nn

    quant_conv, l2_only = _block_class()
    features = net.features
    shared = {}  # an input point read by several blocks (L2Norm's output) has one range

    def in_threshold(point, reader):
        if point is None:
            return None
        if point.key not in shared:
            shared[point.key] = _parameter(reader + "qat_in_threshold", point)
        return shared[point.key]

    def plan(conv):
        if conv.name not in layers:
            raise SsdqError("no quantization plan for convolution %s" % conv.name)
        return layers[conv.name]

    made, undo = [], []
    for seq in list(features.stages) + list(features.extras):
        children = list(seq._children.items())
        for at, (name, block) in enumerate(children):
            if not isinstance(block, nn.Conv2D):
                continue
            bn = children[at + 1][1] if at + 1 < len(children) and isinstance(
                children[at + 1][1], nn.BatchNorm) else None
            step = plan(block)
            q = quant_conv(block, bn, relu=True, weights_int8=step["weights_int8"],
                           in_point=step["in"], out_point=step["out"],
                           in_threshold=in_threshold(step["in"], block.prefix))
            undo.append(_replace_child(seq, name, q))
            for later, other in children[at + 1:at + 3]:  # its BatchNorm and ReLU are in it now
                if isinstance(other, (nn.BatchNorm, nn.Activation)):
                    undo.append(_replace_child(seq, later, nn.HybridLambda(lambda F, x: x)))
            made.append(q)
    norm = features.norm4 if isinstance(features.norm4, Normalize) else None
    for predictors in (net.class_predictors, net.box_predictors):
        for index, (name, predictor) in enumerate(list(predictors._children.items())):
            conv = predictor.predictor
            step = plan(conv)
            q = quant_conv(conv, None, relu=False, weights_int8=step["weights_int8"],
                           in_point=step["in"], out_point=step["out"],
                           in_scale=norm.scale if index == 0 and norm is not None else None,
                           in_threshold=in_threshold(step["in"], conv.prefix))
            undo.append(_replace_child(predictors, name, q))
            made.append(q)
    if norm is not None:
        undo.append(_replace_child(features, "norm4", l2_only(norm)))
    thresholds = {blk._out.key: blk.out_threshold for blk in made if blk._out is not None}
    thresholds.update(shared)
    net.hybridize(active=False)  # a graph traced before the rewrite must not be reused

    def restore():
        for put_back in reversed(undo):
            put_back()
        net.hybridize(active=False)  # drop the traced graph of the rewritten network
    return thresholds, restore


def clip_plan(layers, exponent):
    """The clipping paper's training: every convolution's output clipped to [-2^J, 2^J] (after
    a ReLU, [0, 2^J]) in the forward pass, weights and inputs left alone; ``layers``: the
    checkpoint's (``model.layers.list_layers``). A plan for ``quantize_network``."""
    clip = 2.0 ** exponent
    return {layer.name.rsplit("_fwd", 1)[0]: {
        "weights_int8": False, "in": None,
        "out": ActPoint(layer.name, clip, signed=True, kind="clip")} for layer in layers}

