"""Build the Gluon SSD networks ssdq works with: gluoncv zoo models and the reference model.

The reference model is gluoncv's ``ssd_300_vgg16_atrous`` topology (VGG16 stages 2-2-3-3-3,
L2Norm on conv4_3, dilated fc6/fc7, four extra stages, six heads, the same anchors and a 300x300
input) with every channel count divided by ``width_divisor`` and a BatchNorm after each
convolution, which lets a thin network train from scratch. Export folds those BatchNorms into the
convolutions (see ``ssdq.convert``), so the deployed graph has the zoo model's op sequence.
"""

import mxnet as mx
from gluoncv.model_zoo.ssd.ssd import SSD
from gluoncv.model_zoo.ssd.vgg_atrous import Normalize, VGGAtrousExtractor, extra_spec, vgg_spec
from mxnet.gluon import HybridBlock, nn

from .errors import SsdqError

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
    forward pass is gluoncv's own (inherited).
    """

    def __init__(self, divisor, batch_norm=True, **kwargs):
        HybridBlock.__init__(self, **kwargs)  # pylint: disable=non-parent-init-called
        layers, filters = vgg_spec[16]
        filters = [max(f // divisor, 4) for f in filters]
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
            for num, channels in zip(layers, filters):
                stage = nn.HybridSequential(prefix="")
                with stage.name_scope():
                    for _ in range(num):
                        conv_block(stage, channels, 3, pad=1)
                self.stages.add(stage)
            stage = nn.HybridSequential(prefix="dilated_")
            with stage.name_scope():
                conv_block(stage, 1024 // divisor, 3, pad=6, dilation=6)
                conv_block(stage, 1024 // divisor, 1)
            self.stages.add(stage)
            self.norm4 = Normalize(filters[3], 20)
            self.extras = nn.HybridSequential()
            for i, config in enumerate(extra_spec[300]):
                extra = nn.HybridSequential(prefix="extra%d_" % i)
                with extra.name_scope():
                    for channels, kernel, stride, pad in config:
                        conv_block(extra, max(channels // divisor, 4), kernel, stride, pad)
                self.extras.add(extra)

def reference_ssd(classes, width_divisor=REFERENCE_WIDTH_DIVISOR, batch_norm=True):
    """The width-reduced SSD300 VGG16-atrous used as ssdq's embedded reference model."""

    def features(**_):
        return ThinVGGAtrousExtractor(width_divisor, batch_norm=batch_norm)

    return SSD(None, 300, features=features, num_filters=None, sizes=SSD300_SIZES,
               ratios=SSD300_RATIOS, steps=SSD300_STEPS, classes=list(classes),
               prefix="ssd0_")

def zoo_ssd(name, pretrained=True, params_file=None):
    """A gluoncv model-zoo SSD by name, with the zoo's weights or those of ``params_file``."""
    from gluoncv import model_zoo

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
        message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise SsdqError("cannot load weights %s into the network: %s" % (params_file, message[:200])) from None



# On the embedded val split the trained reference model gives ~6% of its anchors a foreground
# score above the decoder's 0.01 threshold; a random network is tuned to the same share, so the
# decoder and NMS get a trained model's load rather than every anchor (or none).
TRAINED_ANCHOR_SHARE = 0.06


def random_zoo_ssd(name, sample_batch, anchor_share=TRAINED_ANCHOR_SHARE, seed=0):
    """A zoo SSD architecture with random weights (no download) for benchmarking.

    He-initialised weights, then the class head is rescaled and its background bias chosen so
    that on ``sample_batch`` (NCHW, normalised) about ``anchor_share`` of the anchors have a
    foreground class scoring above 0.01. Returns (net, the share reached).
    """
    import numpy as np
    from gluoncv import model_zoo

    if name not in model_zoo.get_model_list() or not name.startswith("ssd_"):
        raise SsdqError("unknown SSD model name %r (see gluoncv.model_zoo.get_model_list())" % name)
    mx.random.seed(seed)
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
