"""Fixtures of the quantization tests: a model with one layer made hard to quantize on purpose
(sensitivity must rank it first, the tuner must spare it), calibrated once."""
import pytest

from ssdq.data.dataset import open_dataset
from ssdq.model.checkpoint import load_checkpoint, save_checkpoint
from ssdq.quant.calibrated import Calibrated
from ssdq.quant.options import CalibOptions

HARD_CONV = "ssd0_convpredictor0_conv0_fwd"  # class head on the 38x38 map, most anchors


@pytest.fixture(scope="module")
def outlier_prefix(fp32_prefix, tmp_path_factory):
    """The reference model with one output channel of a class head turned into an outlier.

    The channel's logit becomes 100x its value minus 1000: in fp32 that class/anchor pair simply
    never fires, but its range swamps the per-tensor int8 scale of the whole head.
    """
    ckpt = load_checkpoint(fp32_prefix)
    args = dict(ckpt.arg_params)
    weight, bias = (args[HARD_CONV.replace("_fwd", "_" + k)].asnumpy() for k in ("weight", "bias"))
    weight[1] *= 100
    bias[1] = -1000
    import mxnet as mx

    args[HARD_CONV.replace("_fwd", "_weight")] = mx.nd.array(weight)
    args[HARD_CONV.replace("_fwd", "_bias")] = mx.nd.array(bias)
    prefix = str(tmp_path_factory.mktemp("outlier") / "converted")
    meta = {k: v for k, v in ckpt.meta.items() if k != "files"}
    return save_checkpoint(prefix, ckpt.symbol, args, ckpt.aux_params, meta)


@pytest.fixture(scope="module")
def variants(outlier_prefix, tiny_data):
    return Calibrated(outlier_prefix, open_dataset(tiny_data, "train"),
                      open_dataset(tiny_data, "val").subset(32), CalibOptions(num_calib_batches=2),
                      batch_size=16, progress=False)


@pytest.fixture(scope="session")
def hard_conv():
    """The convolution ``outlier_prefix`` makes hard to quantize."""
    return HARD_CONV
