"""ssdq's checkpoints load in plain MXNet; weights from another process bind by block name; a
prefix two runs wrote is refused."""
import os

import mxnet as mx
import numpy as np
import pytest

from ssdq.data.dataset import open_dataset
from ssdq.data.loader import iterate_batches
from ssdq.errors import SsdqError
from ssdq.model.checkpoint import bind_names, checkpoint_files, load_checkpoint
from ssdq.model.predictor import Predictor

from helpers import REPO


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


def test_a_torn_prefix_is_a_one_line_error_not_a_plain_checkpoint(fp32_prefix, tmp_path):
    """params of one run beside the symbol and meta of another (a run killed halfway, a copy
    interrupted): the meta's sha256 tells, and the loader says so."""
    import shutil

    from ssdq.model.convert import convert
    from ssdq.model.weights import SPARSE_WEIGHTS

    other = convert(str(tmp_path / "other"), model="reference", params_file=SPARSE_WEIGHTS)
    torn = str(tmp_path / "torn")
    for suffix in ("-symbol.json", "-meta.json"):
        shutil.copy(fp32_prefix + suffix, torn + suffix)
    shutil.copy(other + "-0000.params", torn + "-0000.params")
    with pytest.raises(SsdqError, match="torn: its torn-0000.params is not the file"):
        load_checkpoint(torn)
    os.unlink(torn + "-meta.json")  # without a meta: a plain MXNet checkpoint, meta inferred
    assert load_checkpoint(torn, classes=str(_classes_file(tmp_path, fp32_prefix))).inferred


def _classes_file(tmp_path, prefix):
    path = tmp_path / "classes.txt"
    path.write_text("\n".join(load_checkpoint(prefix).classes) + "\n")
    return path


def test_a_prefix_another_run_writes_is_refused(fp32_prefix, tmp_path):
    """Two runs writing one prefix at once: the second gets a one-line error, and nothing it
    would have written lands."""
    import subprocess
    import sys

    from ssdq.model.checkpoint import save_checkpoint, writing

    prefix = str(tmp_path / "busy")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys; from ssdq.model.checkpoint import writing\n"
         "with writing(sys.argv[1]):\n    print('held', flush=True); sys.stdin.readline()",
         prefix], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
        env=dict(os.environ, PYTHONPATH=REPO))
    try:
        assert holder.stdout.readline().strip() == "held"
        ckpt = load_checkpoint(fp32_prefix)
        with pytest.raises(SsdqError, match="another run is writing checkpoint .*busy"):
            save_checkpoint(prefix, ckpt.symbol, ckpt.arg_params, ckpt.aux_params,
                            {"precision": "fp32"})
        assert not os.path.exists(prefix + "-0000.params")
    finally:
        holder.communicate("done\n", timeout=30)
    with writing(prefix):  # free again, and re-entrant within one run
        save_checkpoint(prefix, ckpt.symbol, ckpt.arg_params, ckpt.aux_params,
                        dict(ckpt.meta, files=None))
    assert load_checkpoint(prefix).meta["sha256"]["params"]
    assert not os.path.exists(prefix + ".lock")
