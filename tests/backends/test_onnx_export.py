"""`ssdq export onnx`: the exported network, and an int8 QDQ model carrying ssdq's own ranges."""
import json
import os
import shutil

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from ssdq.backends.onnx_export import export_onnx, int8_quantization, read_metadata
from ssdq.errors import SsdqError
from ssdq.model.checkpoint import checkpoint_files, load_checkpoint

from helpers import assert_clean_error, run_cli


def _graph(path):
    model = onnx.load(path)
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    return model, inits, producers


@pytest.fixture(scope="module")
def int8_onnx(int8_prefix, tmp_path_factory):
    return export_onnx(int8_prefix, str(tmp_path_factory.mktemp("onnx") / "int8.onnx"))


def test_fp32_export_is_the_network_with_its_tail_settings(fp32_prefix, tmp_path):
    path = export_onnx(fp32_prefix, str(tmp_path / "fp32.onnx"))
    model, _, _ = _graph(path)
    ops = [n.op_type for n in model.graph.node]
    assert ops.count("Conv") == 35 and "QuantizeLinear" not in ops and "NonMaxSuppression" not in ops
    assert [i.name for i in model.graph.input] == ["data"]  # weights are initializers only
    meta = read_metadata(model)
    assert meta["precision"] == "fp32" and meta["anchors"].shape == (1, 8732, 4)
    assert meta["tail"]["nms"]["overlap_thresh"] == 0.45 and meta["tail"]["post_nms"] == 100


def test_int8_qdq_scales_are_ssdqs_calibration(int8_prefix, int8_onnx):
    calib = json.load(open("%s-calib.json" % int8_prefix))
    model, inits, producers = _graph(int8_onnx)
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    # every convolution oneDNN runs in int8 reads dequantized int8 data, weights and bias
    assert all(producers[c.input[i]].op_type == "DequantizeLinear" for c in convs for i in (0, 1, 2))
    # the first convolution's input: the image, quantized with the range calibrated for it
    first = producers[convs[0].input[0]]
    lo, hi = calib["ssd0_thinvggatrousextractor0_broadcast_mul0_output"]
    assert inits[first.input[2]].dtype == np.int8  # the range goes negative: int8
    assert float(inits[first.input[1]]) == pytest.approx(max(-lo, hi) / 127.5, rel=1e-6)
    # a ReLU layer's output: uint8 over [0, max]
    relu_dq = producers[convs[1].input[0]]
    assert inits[relu_dq.input[2]].dtype == np.uint8
    assert float(inits[relu_dq.input[1]]) == pytest.approx(calib["sg_mkldnn_conv_act_0_output"][1] / 255.5, rel=1e-6)
    # weights: int8, one scale per output channel, reconstructing the fp32 weights
    w_dq = producers[convs[0].input[1]]
    w_q, w_scale = inits[w_dq.input[0]], inits[w_dq.input[1]]
    assert w_q.dtype == np.int8 and np.abs(w_q).max() >= 127 and w_scale.shape == (w_q.shape[0],)
    b_dq = producers[convs[0].input[2]]
    assert inits[b_dq.input[0]].dtype == np.int32
    np.testing.assert_allclose(inits[b_dq.input[1]], w_scale * float(inits[first.input[1]]), rtol=1e-6)
    meta = read_metadata(model)["quantization"]
    assert meta["quantized_convolutions"] == 35 and meta["fp32_convolutions"] == []


def test_per_tensor_weights_on_request(int8_prefix, tmp_path):
    model, inits, producers = _graph(export_onnx(int8_prefix, str(tmp_path / "t.onnx"),
                                                 per_channel=False))
    conv = next(n for n in model.graph.node if n.op_type == "Conv")
    assert inits[producers[conv.input[1]].input[1]].shape == ()


def test_layers_the_recipe_keeps_fp32_stay_fp32(fp32_prefix, int8_prefix, tmp_path):
    from ssdq.quant.quantize import quantize_from_recipe

    meta = json.load(open(checkpoint_files(int8_prefix)["meta"]))
    first = "sg_mkldnn_conv_act_0"
    recipe = tmp_path / "recipe.json"
    recipe.write_text(json.dumps({
        "thresholds": json.load(open("%s-calib.json" % int8_prefix)),
        "excluded_layers": meta["quantization"]["excluded_layers"] + [first]}))
    prefix = quantize_from_recipe(fp32_prefix, str(tmp_path / "tuned"), str(recipe))
    quantization = int8_quantization(load_checkpoint(prefix))
    assert quantization["fp32_convolutions"] == ["ssd0_thinvggatrousextractor0_conv0_fwd"]
    # the next convolution now reads a quantize node's range: the first layer's fp32 output
    second = quantization["convolutions"]["ssd0_thinvggatrousextractor0_conv1_fwd"]["input"]
    assert second["calib_key"] == "sg_mkldnn_conv_act_0_output" and second["dtype"] == "uint8"
    model, _, producers = _graph(export_onnx(prefix, str(tmp_path / "tuned.onnx")))
    convs = [n for n in model.graph.node if n.op_type == "Conv"]
    assert convs[0].input[1] not in producers  # its fp32 weights, straight from an initializer
    assert producers[convs[1].input[0]].op_type == "DequantizeLinear"


def test_a_stale_calibration_file_is_refused(int8_prefix, tmp_path):
    copy = str(tmp_path / "q")
    for path in checkpoint_files(int8_prefix).values():
        shutil.copy(path, path.replace(int8_prefix, copy))
    calib = json.load(open("%s-calib.json" % int8_prefix))
    calib["sg_mkldnn_conv_act_0_output"][1] *= 1.5
    json.dump(calib, open("%s-calib.json" % copy, "w"))
    with pytest.raises(SsdqError, match="stale"):
        export_onnx(copy, str(tmp_path / "x.onnx"))
    os.unlink("%s-calib.json" % copy)
    with pytest.raises(SsdqError, match="calib.json"):
        export_onnx(copy, str(tmp_path / "x.onnx"))
    assert not (tmp_path / "x.onnx").exists()


def test_cli_export_and_a_missing_runtime(int8_prefix, tmp_path):
    out = tmp_path / "m.onnx"
    proc = run_cli("export", "onnx", "--model-prefix", int8_prefix, "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "wrote" in proc.stdout and out.stat().st_size > 0
    fake = tmp_path / "fake"
    (fake / "onnx").mkdir(parents=True)
    (fake / "onnx" / "__init__.py").write_text("raise ImportError('simulated: not installed')\n")
    from helpers import REPO

    missing = run_cli("export", "onnx", "--model-prefix", int8_prefix, "--out", str(tmp_path / "n.onnx"),
                      env={"PYTHONPATH": "%s:%s" % (fake, REPO)})
    assert_clean_error(missing, "runtimes", "onnx")
