"""Build the Gluon SSD networks ssdq works with: gluoncv zoo models and the reference model.

The reference model is gluoncv's ``ssd_300_vgg16_atrous`` topology (VGG16 stages 2-2-3-3-3,
L2Norm on conv4_3, dilated fc6/fc7, four extra stages, six heads, the same anchors and a 300x300
input) with every channel count divided by ``width_divisor`` and a BatchNorm after each
convolution, which lets a thin network train from scratch. Export folds those BatchNorms into the
convolutions (see ``model.convert``), so the deployed graph has the zoo model's op sequence.
"""
import mxnet as mx
import numpy as np
from gluoncv import model_zoo
from gluoncv.model_zoo.ssd.ssd import SSD
from gluoncv.model_zoo.ssd.vgg_atrous import Normalize, VGGAtrousExtractor, extra_spec, vgg_spec
from mxnet.gluon import HybridBlock, nn

from ssdq.errors import SsdqError, first_line

REFERENCE_NAME = "ssd_300_vgg16_atrous_reference"
DEFAULT_ZOO_MODEL = "ssd_300_vgg16_atrous_coco"
REFERENCE_WIDTH_DIVISOR = 8
# The anchor layout of gluoncv's ssd_300_vgg16_atrous_coco.
SSD300_SIZES = [21, 45, 99, 153, 207, 261, 315]
SSD300_RATIOS = [[1, 2, 0.5]] + [[1, 2, 0.5, 3, 1.0 / 3]] * 3 + [[1, 2, 0.5]] * 2
SSD300_STEPS = [8, 16, 32, 64, 100, 300]


class ThinVGGAtrousExtractor(VGGAtrousExtractor):
    """gluoncv's VGGAtrousExtractor with all widths (fc6/fc7 included) divided by ``divisor``.

    gluoncv hard-codes 1024 channels for the dilated fc6/fc7, so the layers are built here; the
    forward pass is gluoncv's own (inherited). ``widths`` (a pruned network) gives every
    convolution's output channels in build order instead, and ``num_extras`` keeps only the
    first extra stages (pruning can drop the last scales).
    """

    def __init__(self, divisor, batch_norm=True, widths=None, num_extras=4, **kwargs):
        HybridBlock.__init__(self, **kwargs)  # pylint: disable=non-parent-init-called
        layers, filters = vgg_spec[16]
        filters = [max(f // divisor, 4) for f in filters]
        extras = extra_spec[300][:num_extras]
        if widths is None:
            widths = ([f for num, f in zip(layers, filters) for _ in range(num)]
                      + [1024 // divisor] * 2
                      + [max(c // divisor, 4) for config in extras for c, _, _, _ in config])
        widths = iter(widths)
        self.init = {
            "weight_initializer": mx.init.Xavier(rnd_type="gaussian", factor_type="out",
                                                 magnitude=2),
            "bias_initializer": "zeros",
        }

        def conv_block(seq, channels, kernel, stride=1, pad=0, dilation=1):
            seq.add(nn.Conv2D(channels, kernel, stride, pad, dilation=dilation, **self.init))
            if batch_norm:
                seq.add(nn.BatchNorm())
            seq.add(nn.Activation("relu"))

        with self.name_scope():
            init_scale = mx.nd.array([0.229, 0.224, 0.225]).reshape((1, 3, 1, 1)) * 255
            self.init_scale = self.params.get_constant("init_scale", init_scale)
            self.stages = nn.HybridSequential()
            stage_widths = []
            for num in layers:
                stage = nn.HybridSequential(prefix="")
                with stage.name_scope():
                    for _ in range(num):
                        stage_widths.append(next(widths))
                        conv_block(stage, stage_widths[-1], 3, pad=1)
                self.stages.add(stage)
            stage = nn.HybridSequential(prefix="dilated_")
            with stage.name_scope():
                conv_block(stage, next(widths), 3, pad=6, dilation=6)
                conv_block(stage, next(widths), 1)
            self.stages.add(stage)
            self.norm4 = Normalize(stage_widths[sum(layers[:4]) - 1], 20)  # conv4_3's width
            self.extras = nn.HybridSequential()
            for i, config in enumerate(extras):
                extra = nn.HybridSequential(prefix="extra%d_" % i)
                with extra.name_scope():
                    for _, kernel, stride, pad in config:
                        conv_block(extra, next(widths), kernel, stride, pad)
                self.extras.add(extra)


# the largest feature map of a 300 x 300 input (conv4_3's, 38 x 38): anchors for it and no more
SHAPE_ONLY_ANCHORS = 38


def reference_ssd(classes, width_divisor=REFERENCE_WIDTH_DIVISOR, batch_norm=True, widths=None,
                  num_scales=len(SSD300_STEPS), anchor_alloc_size=128):
    """The width-reduced SSD300 VGG16-atrous used as ssdq's embedded reference model.

    ``widths``: every feature convolution's output channels in build order (a pruned network;
    see ``feature_convs``); ``num_scales``: keep the first scales only, with their heads and
    anchors. ``width_divisor=1, batch_norm=False`` is gluoncv's full-size topology.
    ``anchor_alloc_size``: the grid gluoncv precomputes anchors for (its default, 128, is what
    the checkpoints hold); a network built only to count its parameters or read its widths
    takes ``SHAPE_ONLY_ANCHORS``, so gluoncv's Python loops build a 38 x 38 grid, not 128 x 128.
    """
    if not 2 <= num_scales <= len(SSD300_STEPS):
        raise SsdqError("an SSD300 keeps 2 to %d scales, not %d" % (len(SSD300_STEPS), num_scales))

    def features(**_):
        return ThinVGGAtrousExtractor(width_divisor, batch_norm=batch_norm, widths=widths,
                                      num_extras=num_scales - 2)

    return SSD(None, 300, features=features, num_filters=None,
               sizes=SSD300_SIZES[:num_scales + 1], ratios=SSD300_RATIOS[:num_scales],
               steps=SSD300_STEPS[:num_scales], classes=list(classes), prefix="ssd0_",
               anchor_alloc_size=anchor_alloc_size)


def round_width(count, width, multiple):
    """A channel count rounded up to a multiple of ``multiple``, at most the layer's ``width``."""
    return min(width, -(-count // multiple) * multiple)


def pruned_zoo_ssd(name, ratios, num_scales, multiple=1):
    """gluoncv's full-size ``ssd_300_vgg16_atrous_*`` (no BatchNorm) with each feature
    convolution's width scaled by ``ratios`` (of a pruned reference checkpoint), rounded up
    to a ``multiple`` of channels (at most the dense width); uninitialised."""
    if not name.startswith("ssd_300_vgg16_atrous_"):
        raise SsdqError("--widths-from applies to the ssd_300_vgg16_atrous_* topology, not %r" % name)
    classes = model_zoo.get_model(name, pretrained=False, pretrained_base=False).classes
    dense = [c._channels for c in feature_convs(reference_ssd(
        classes, 1, batch_norm=False, anchor_alloc_size=SHAPE_ONLY_ANCHORS))]
    if multiple < 1:
        raise SsdqError("--widths-multiple must be 1 or more")
    widths = [round_width(max(1, int(round(d * r))), d, multiple) for d, r in zip(dense, ratios)]
    return reference_ssd(classes, 1, batch_norm=False, widths=widths, num_scales=num_scales)


def feature_convs(net):
    """The feature extractor's Conv2D blocks in build order (what ``widths`` lists)."""
    return [block for stage in list(net.features.stages) + list(net.features.extras)
            for block in stage if isinstance(block, nn.Conv2D)]

def keep_ratios(meta):
    """Per feature convolution, kept / original channels, and the scales kept, of a pruned
    reference checkpoint (its meta's pruning recipe): what ``pruned_zoo_ssd`` scales by."""
    recipe = meta.get("pruning")
    if not recipe:
        raise SsdqError("checkpoint meta has no pruning recipe (make one with `ssdq prune`)")
    dense = [c._channels for c in feature_convs(reference_ssd(  # pylint: disable=protected-access
        meta.get("classes", ["x"]), meta.get("width_divisor", REFERENCE_WIDTH_DIVISOR),
        anchor_alloc_size=SHAPE_ONLY_ANCHORS))]
    return [w / d for w, d in zip(recipe["widths"], dense)], recipe["num_scales"]


def zoo_ssd(name, pretrained=True, params_file=None):
    """A gluoncv model-zoo SSD by name, with the zoo's weights or those of ``params_file``."""
    if name not in model_zoo.get_model_list():
        raise SsdqError("unknown model name %r (see gluoncv.model_zoo.get_model_list())" % name)
    if not name.startswith("ssd_"):
        raise SsdqError("%r is not an SSD model" % name)
    if params_file is not None:
        net = model_zoo.get_model(name, pretrained=False, pretrained_base=False)
        load_params(net, params_file)
        return net
    try:
        return model_zoo.get_model(name, pretrained=pretrained, pretrained_base=False)
    except Exception as exc:  # network errors surface as many exception types
        raise SsdqError("could not fetch pretrained weights for %s (%s); offline, pass --params "
                        "FILE with the weights" % (name, type(exc).__name__)) from None

def load_params(net, params_file):
    try:
        net.load_parameters(params_file, ctx=mx.cpu(), ignore_extra=False)
    except (mx.base.MXNetError, AssertionError, OSError) as exc:
        raise SsdqError("cannot load weights %s into the network: %s"
                        % (params_file, first_line(exc, 200))) from None



# The share of its anchors the trained reference model gives a foreground score above the
# decoder's 0.01 threshold on the embedded val split: a random network is tuned to the same
# share, so the decoder and NMS get a trained model's load rather than every anchor (or none).
TRAINED_ANCHOR_SHARE = 0.06


def random_zoo_ssd(name, sample_batch, anchor_share=TRAINED_ANCHOR_SHARE, seed=0, net=None):
    """A zoo SSD architecture with random weights (no download) for benchmarking.

    He-initialised weights, then the class head is rescaled and its background bias chosen so
    that on ``sample_batch`` (NCHW, normalised) about ``anchor_share`` of the anchors have a
    foreground class scoring above 0.01. ``net``: an uninitialised network to use instead of
    the zoo's (a pruned variant of it). Returns (net, the share reached).
    """
    if name not in model_zoo.get_model_list() or not name.startswith("ssd_"):
        raise SsdqError("unknown SSD model name %r (see gluoncv.model_zoo.get_model_list())" % name)
    mx.random.seed(seed)
    if net is None:
        net = model_zoo.get_model(name, pretrained=False, pretrained_base=False)
    he = mx.init.Xavier(rnd_type="gaussian", factor_type="in", magnitude=2)
    for param_name, param in net.collect_params().items():
        if param_name.endswith(("gamma", "running_var")):  # BatchNorm (mobilenet, resnet): neutral
            param.initialize(mx.init.One(), ctx=mx.cpu())
        elif param_name.endswith(("beta", "bias", "running_mean")):
            param.initialize(mx.init.Zero(), ctx=mx.cpu())
        elif param_name.endswith("weight"):
            param.initialize(he, ctx=mx.cpu())
        else:  # the anchor generators' constants
            param.initialize(ctx=mx.cpu())
    with mx.autograd.train_mode():  # gluoncv's SSD returns the raw predictions in train mode
        logits = net(mx.nd.array(sample_batch))[0].asnumpy().astype(np.float64)
    spread = float(logits.std()) or 1.0
    logits /= spread  # the class head's weights get the same scaling below (its biases are 0)

    def share(background_bias):
        logits_bg = np.concatenate([logits[..., :1] + background_bias, logits[..., 1:]], axis=-1)
        log_norm = np.logaddexp.reduce(logits_bg, axis=-1, keepdims=True)
        return float(((logits[..., 1:] - log_norm).max(axis=-1) > np.log(0.01)).mean())

    lo, hi = -20.0, 40.0  # share() falls as the background bias grows: bisect
    for _ in range(50):
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if share(mid) > anchor_share else (lo, mid)
    background_bias = (lo + hi) / 2
    num_outputs = logits.shape[-1]  # channels are laid out anchor-major: a * (C + 1) + c
    for head in net.class_predictors:
        conv = head.predictor
        conv.weight.set_data(conv.weight.data() / spread)
        bias = conv.bias.data().asnumpy()
        bias[0::num_outputs] += background_bias
        conv.bias.set_data(mx.nd.array(bias))
    return net, share(background_bias)
