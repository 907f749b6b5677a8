"""ssdq's checkpoints load in plain MXNet; weights from another process bind by block name."""
import mxnet as mx
import numpy as np
import pytest

from ssdq.data.dataset import open_dataset
from ssdq.data.loader import iterate_batches
from ssdq.errors import SsdqError
from ssdq.model.checkpoint import bind_names, checkpoint_files, load_checkpoint
from ssdq.model.predictor import Predictor


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_round_trip_through_plain_mxnet(which, fp32_prefix, int8_prefix, tiny_data):
    prefix = fp32_prefix if which == "fp32" else int8_prefix
    batch, _ = next(iterate_batches(open_dataset(tiny_data, "val").subset(4), 4))
    ours = Predictor(load_checkpoint(prefix), 4, tail="graph", fuse_fp32=False)(batch)

    symbol, arg_params, aux_params = mx.model.load_checkpoint(prefix, 0)
    executor = symbol.simple_bind(mx.cpu(), grad_req="null", data=batch.shape)
    executor.copy_params_from(arg_params, aux_params, allow_extra_params=True)
    module_out = [o.asnumpy() for o in executor.forward(is_train=False, data=mx.nd.array(batch))]

    files = checkpoint_files(prefix)
    block = mx.gluon.SymbolBlock.imports(files["symbol"], ["data"], files["params"])
    block_out = [o.asnumpy() for o in block(mx.nd.array(batch))]

    for a, b, c in zip(ours, module_out, block_out):
        assert a.shape == b.shape == c.shape
        assert np.allclose(a, b, atol=1e-4) and np.allclose(b, c, atol=1e-4)
    assert (ours[1] > 0.5).any()  # the trained reference model detects shapes


def test_weights_exported_under_another_block_name_bind(fp32_prefix):
    ckpt = load_checkpoint(fp32_prefix)
    renamed = {k.replace("ssd0_", "ssd7_", 1): v for k, v in ckpt.arg_params.items()}
    args, _ = bind_names(ckpt.symbol, renamed, {}, "other.params")
    assert set(args) == set(ckpt.arg_params)
    lacking = dict(ckpt.arg_params)
    lacking.pop(sorted(k for k in lacking if k.endswith("weight"))[0])
    with pytest.raises(SsdqError, match="lacks 1 of the"):
        bind_names(ckpt.symbol, lacking, {}, "other.params")


def test_gluon_parameter_file_is_refused(fp32_prefix, tmp_path):
    from ssdq.model.ssd import reference_ssd

    net = reference_ssd(["a", "b"])
    net.initialize()
    net(mx.nd.zeros((1, 3, 300, 300)))
    net.save_parameters(str(tmp_path / "gluon.params"))
    with pytest.raises(SsdqError, match="save_parameters"):
        load_checkpoint(fp32_prefix, params_file=str(tmp_path / "gluon.params"))


def test_classes_flag_cannot_contradict_a_meta_file(fp32_prefix):
    with pytest.raises(SsdqError, match="differs from the classes in"):
        load_checkpoint(fp32_prefix, classes="voc")
    assert not load_checkpoint(fp32_prefix).inferred
