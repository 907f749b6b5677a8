"""Runtimes behind one interface: the numpy tail against MXNet's, each backend's predictions and
mAP against MXNet's on the same checkpoint, the benchmark's backend records, the CLI."""
import json

import numpy as np
import pytest

from ssdq import backends
from ssdq.backends import runners
from ssdq.backends.onnx_export import onnx_model_for
from ssdq.backends.tail import DetectionTail
from ssdq.data.dataset import open_dataset
from ssdq.data.loader import iterate_batches
from ssdq.errors import SsdqError
from ssdq.eval.loop import detect
from ssdq.eval.metrics import evaluator_for
from ssdq.model.checkpoint import load_checkpoint

from helpers import REPO, assert_clean_error, run_cli

OTHERS = ("onnxruntime", "openvino")


@pytest.fixture(scope="module")
def batch(tiny_data):
    images, _ = next(iterate_batches(open_dataset(tiny_data, "val").subset(8), 8))
    return images


def _sorted_detections(ids, scores, boxes):
    keep = scores[:, 0] > 0
    order = np.lexsort((boxes[keep, 0], ids[keep, 0], -scores[keep, 0]))
    return ids[keep, 0][order], scores[keep, 0][order], boxes[keep][order]


@pytest.mark.parametrize("which", ["fp32", "int8"])
def test_numpy_tail_gives_mxnets_detections(which, fp32_prefix, int8_prefix, batch):
    from ssdq.backends.onnx_export import _anchors
    from ssdq.model.tail import graph_tail

    prefix = fp32_prefix if which == "fp32" else int8_prefix
    fp32 = load_checkpoint(fp32_prefix)
    tail = DetectionTail(_anchors(fp32), graph_tail(fp32.symbol))
    raw = runners.prepare("mxnet", prefix, which, 8, "network")(batch)
    expected = runners.prepare("mxnet", prefix, which, 8, "end_to_end")(batch)
    got = tail(*raw)
    assert got[0].shape == (8, 100, 1) and got[2].shape == (8, 100, 4)
    for n in range(8):
        a = _sorted_detections(*(out[n] for out in expected))
        b = _sorted_detections(*(out[n] for out in got))
        assert len(a[0]) == len(b[0]) > 0
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_allclose(a[1], b[1], atol=1e-5)
        np.testing.assert_allclose(a[2], b[2], atol=1e-2)


@pytest.mark.parametrize("backend", OTHERS)
def test_fp32_predictions_match_mxnet(backend, fp32_prefix, batch):
    ref = runners.prepare("mxnet", fp32_prefix, "fp32", 8, "network")(batch)
    runner = runners.prepare(backend, fp32_prefix, "fp32", 8, "network")
    for got, want in zip(runner(batch[:5]), ref):  # a partial batch is padded and cut back
        assert got.shape == want[:5].shape
        np.testing.assert_allclose(got, want[:5], atol=2e-3, rtol=1e-3)


@pytest.mark.parametrize("backend", OTHERS)
def test_int8_runs_ssdqs_quantization(backend, fp32_prefix, int8_prefix, batch):
    """The QDQ model reproduces MXNet's int8, not a quantization of its own: its logits sit
    several times nearer MXNet int8's than MXNet's int8 sits to fp32."""
    fp32 = runners.prepare("mxnet", fp32_prefix, "fp32", 8, "network")(batch)[0]
    mx_int8 = runners.prepare("mxnet", int8_prefix, "int8", 8, "network")(batch)[0]
    got = runners.prepare(backend, int8_prefix, "int8", 8, "network")(batch)[0]
    assert np.abs(got - mx_int8).mean() < 0.5 * np.abs(fp32 - mx_int8).mean()
    assert (got.argmax(-1) == mx_int8.argmax(-1)).mean() > 0.99
    assert np.abs(got - fp32).mean() > 1e-3  # it is really quantized


def test_int8_map_agrees_across_runtimes(int8_prefix, tiny_data):
    val = open_dataset(tiny_data, "val").subset(32)
    maps = {}
    for name in backends.BACKENDS:
        runner = runners.prepare(name, int8_prefix, "int8", 16, "end_to_end")
        maps[name] = detect(runner, val, evaluator_for(val), 16, progress=False)[0]["map"]
    assert maps["mxnet"] > 30
    assert max(maps.values()) - min(maps.values()) < 1.5, maps  # 32 images; 0.3 is the 500-image target


def test_wrong_precision_and_names_are_refused(fp32_prefix, int8_prefix):
    with pytest.raises(SsdqError, match="int8 model"):
        runners.prepare("openvino", fp32_prefix, "int8", 2)
    with pytest.raises(SsdqError, match="bf16"):
        runners.prepare("onnxruntime", fp32_prefix, "bf16", 2)
    with pytest.raises(SsdqError, match="unknown backend"):
        runners.prepare("tensorrt", fp32_prefix, "fp32", 2)


def test_bench_times_every_backend_in_one_run(fp32_prefix, int8_prefix, tiny_data):
    from ssdq.bench.harness import benchmark, markdown

    bench = benchmark([(fp32_prefix, int8_prefix)], open_dataset(tiny_data, "val"),
                      precisions=("fp32", "bf16", "int8"), scopes=("network", "end_to_end"),
                      batch_sizes=(2,), warmup=0, repeats=1, progress=False,
                      backends=backends.BACKENDS)
    records = {(r["backend"], r["precision"], r["scope"]): r for r in bench["records"]}
    assert len(records) == 3 * 3 * 2
    assert "bf16" in records["onnxruntime", "bf16", "network"]["error"]
    for backend in backends.BACKENDS:
        for precision in ("fp32", "int8"):
            assert records[backend, precision, "end_to_end"]["images_per_sec"] > 0
    figures = bench["speedup"]
    assert figures["network_openvino_int8_vs_mxnet_fp32"] == pytest.approx(
        records["openvino", "int8", "network"]["images_per_sec"]
        / records["mxnet", "fp32", "network"]["images_per_sec"], rel=1e-3)
    assert bench["fastest_int8"]["%s/network" % next(iter(bench["models"]))]["backend"] in backends.BACKENDS
    runtimes = bench["environment"]["runtimes"]
    assert "CPUExecutionProvider" in runtimes["onnxruntime"]["providers"]
    assert "INT8" in runtimes["openvino"]["optimization_capabilities"]
    assert "| network | openvino |" in markdown(bench)
    # every other runtime is also timed alone, in a fresh process without MXNet, beside it
    for backend in ("onnxruntime", "openvino"):
        for precision in ("fp32", "int8"):
            r = records[backend, precision, "network"]
            assert r["standalone_images_per_sec"] > 0, r
            assert r["in_process_vs_standalone"] == pytest.approx(
                r["images_per_sec"] / r["standalone_images_per_sec"], rel=1e-2)
        cores = set(bench["environment"]["cores_used"])
        started = set(bench["runtime_threads"].get(backend, {}).get("cpus", []))
        assert started <= cores and (started == cores or len(cores) == 1)  # one core: no pool
    assert "standalone_images_per_sec" not in records["mxnet", "int8", "network"]
    assert figures["network_mxnet_int8_vs_openvino_int8"] == pytest.approx(
        records["mxnet", "int8", "network"]["images_per_sec"]
        / records["openvino", "int8", "network"]["images_per_sec"], rel=1e-3)


def test_cli_eval_on_a_backend_and_a_missing_runtime(int8_prefix, tiny_data, tmp_path):
    out = tmp_path / "eval.json"
    proc = run_cli("eval", "--backend", "onnxruntime", "--model-prefix", int8_prefix,
                   "--data-root", tiny_data, "--batch-size", "16", "--out", str(out), "--quiet")
    assert proc.returncode == 0, proc.stderr
    result = json.load(open(out))
    assert result["backend"] == "onnxruntime" and result["map"] > 30
    fake = tmp_path / "fake" / "openvino"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('simulated: not installed')\n")
    missing = run_cli("eval", "--backend", "openvino", "--model-prefix", int8_prefix,
                      "--data-root", tiny_data, "--quiet",
                      env={"PYTHONPATH": "%s:%s" % (fake.parent, REPO)})
    assert_clean_error(missing, "openvino", "'.[runtimes]'")


def test_tail_suppresses_within_a_class_only():
    """Two anchors on the same spot: NMS keeps the better of a class, both of two classes;
    scores at or under the threshold never become detections."""
    anchors = np.array([[[50, 50, 20, 20], [51, 50, 20, 20], [200, 200, 30, 30]]], np.float32)
    settings = {"stds": (0.1, 0.1, 0.2, 0.2), "score_thresh": 0.01, "post_nms": 100,
                "nms": {"overlap_thresh": 0.45, "topk": 400, "valid_thresh": 0.01,
                        "force_suppress": False}}
    tail = DetectionTail(anchors, settings)
    logits = np.full((2, 3, 3), -20, np.float32)  # background, class 0, class 1
    logits[:, :, 0] = 0
    logits[0, 0, 1], logits[0, 1, 1] = 5, 4        # image 0: one class on both anchors
    logits[1, 0, 1], logits[1, 1, 2] = 5, 4        # image 1: two classes
    ids, scores, boxes = tail(logits, np.zeros((2, 3, 4), np.float32))
    kept = [int((scores[n, :, 0] > 0).sum()) for n in range(2)]
    assert kept == [1, 2]
    np.testing.assert_allclose(boxes[0, 0], [40, 40, 60, 60])  # decoded: centre +- half size
    assert sorted(ids[1, :2, 0]) == [0, 1] and scores[0, 0, 0] > scores[1, 1, 0]
    assert np.all(ids[0, 1:] == -1) and np.all(boxes[0, 1:] == -1)


def test_a_model_from_another_exporter_version_is_made_again(int8_prefix, tmp_path):
    import onnx

    from ssdq.backends.onnx_runner import FORMAT_VERSION, METADATA_KEY, read_metadata

    path = onnx_model_for(int8_prefix)
    model = onnx.load(path)
    entry = next(p for p in model.metadata_props if p.key == METADATA_KEY)
    entry.value = json.dumps(dict(json.loads(entry.value), format_version=FORMAT_VERSION - 1))
    onnx.save(model, path)
    runner = runners.prepare("onnxruntime", int8_prefix, "int8", 2, "network")
    assert read_metadata(onnx.load(runner.path))["format_version"] == FORMAT_VERSION
