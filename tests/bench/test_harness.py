"""`ssdq bench`: the records, the speed-up figures and the files; never a wall-clock bound."""
import json
import os

import numpy as np
import pytest

from ssdq.bench.harness import benchmark, markdown, speedups, write_bench
from ssdq.data.dataset import open_dataset
from ssdq.errors import SsdqError

from helpers import assert_clean_error, assert_rates_are_the_runs, run_cli


@pytest.fixture(scope="module")
def bench(fp32_prefix, int8_prefix, tiny_data):
    return benchmark([(fp32_prefix, int8_prefix)], open_dataset(tiny_data, "val"),
                     precisions=("fp32", "fp32_unfused", "bf16", "int8"),
                     scopes=("network", "end_to_end", "end_to_end_gluoncv", "eval_loop"),
                     batch_sizes=(1, 2), warmup=0, repeats=2, eval_images=4, progress=False)


def test_one_record_per_case_each_timed_or_with_its_error(bench):
    records = bench["records"]
    assert len(records) == 4 * 4 * 2
    for r in records:
        if r["precision"] == "bf16" and "error" in r:
            continue  # oneDNN has no bf16 convolution without AVX512-BF16: recorded, not hidden
        assert "error" not in r, r
        if r["scope"] == "eval_loop":  # its latencies are per batch, its rates per pass
            assert r["repeats"] == 2 and r["images"] == 4
            assert r["images_per_sec"] == pytest.approx(
                (r["images_per_sec_min"] + r["images_per_sec_max"]) / 2)
        else:
            assert_rates_are_the_runs(r, runs=2)
        assert r["peak_rss_mb"] > 0
    assert {r["graph"] for r in records if r["precision"] == "int8" and "graph" in r} == {"int8"}
    assert any("fused" in r["graph"] for r in records if r["precision"] == "fp32")
    assert not any("fused" in r["graph"] for r in records if r["precision"] == "fp32_unfused")


def test_speedups_are_ratios_of_the_records(bench):
    s = bench["speedup"]
    assert bench["speedup_batch_size"] == 2  # nearest to 8 among the batches run
    rate = {(r["precision"], r["scope"]): r["images_per_sec"]
            for r in bench["records"] if r["batch_size"] == 2 and "images_per_sec" in r}
    assert s["network_int8_vs_fp32"] == pytest.approx(
        rate["int8", "network"] / rate["fp32", "network"], rel=1e-3)
    assert s["end_to_end_int8_vs_fp32"] == pytest.approx(
        rate["int8", "end_to_end"] / rate["fp32", "end_to_end"], rel=1e-3)
    assert "fast_tail_vs_gluoncv_tail_int8" in s and "network_int8_vs_fp32_unfused" in s


def test_nms_load_is_reported(bench):
    load = next(iter(bench["models"].values()))["nms_load"]
    assert load["candidates_per_image"] == 8732 * 6
    assert 0 < load["into_nms_per_image_median"] <= load["nms_topk"] == 400


def test_speedup_picks_the_batch_nearest_8():
    records = [{"model": "m", "precision": p, "scope": "network", "batch_size": b,
                "images_per_sec": v} for p, b, v in (("fp32", 4, 1.0), ("int8", 4, 3.0),
                                                     ("fp32", 16, 2.0), ("int8", 16, 8.0))]
    figures, batch = speedups(records)
    assert batch == 4 and figures["m"]["network_int8_vs_fp32"] == 3.0


def test_files_are_written(bench, tmp_path):
    paths = write_bench(bench, str(tmp_path / "bench.json"))
    assert [os.path.basename(p) for p in paths] == ["bench.json", "bench.md", "bench.png"]
    assert json.load(open(paths[0]))["speedup"] == bench["speedup"]
    assert "| model | backend | precision | scope |" in open(paths[1]).read()
    assert open(paths[2], "rb").read(8) == b"\x89PNG\r\n\x1a\n"


def test_profile_shows_where_int8_time_goes(fp32_prefix, int8_prefix, tiny_data):
    bench = benchmark([(fp32_prefix, int8_prefix)], open_dataset(tiny_data, "val"),
                      precisions=("fp32", "int8"), scopes=("network", "end_to_end", "eval_loop"),
                      batch_sizes=(2,), warmup=0, repeats=1, eval_images=2, progress=False,
                      profile=True)
    profiles = {(p["precision"], p["scope"]): p for p in bench["profiles"]}
    assert set(profiles) == {(p, s) for p in ("fp32", "int8") for s in ("network", "end_to_end")}
    for p in profiles.values():
        assert p["batch_size"] == 2 and p["total_ms"] > 0
        assert sum(o["share_pct"] for o in p["ops"]) == pytest.approx(100, abs=0.5)
        assert [o["ms"] for o in p["ops"]] == sorted((o["ms"] for o in p["ops"]), reverse=True)
    int8_ops = {o["op"] for o in profiles["int8", "end_to_end"]["ops"]}
    # the int8 graph runs fused oneDNN convolutions between quantize and dequantize nodes, and
    # the end-to-end scope adds the tail that the network scope lacks
    assert {"_sg_mkldnn_conv", "_contrib_quantize_v2", "_contrib_dequantize"} <= int8_ops
    assert "_contrib_box_nms" in int8_ops
    assert "_contrib_box_nms" not in {o["op"] for o in profiles["int8", "network"]["ops"]}
    assert "_contrib_quantize_v2" not in {o["op"] for o in profiles["fp32", "network"]["ops"]}
    assert "Where the time goes" in markdown(bench)


def test_bad_settings_are_refused(fp32_prefix, int8_prefix, tiny_data):
    with pytest.raises(SsdqError, match="batch sizes"):
        benchmark([(fp32_prefix, int8_prefix)], open_dataset(tiny_data, "val"), batch_sizes=(0,))


def test_cli_bench_and_its_errors(fp32_prefix, int8_prefix, tiny_data, tmp_path):
    out = tmp_path / "b" / "bench.json"
    proc = run_cli("bench", "--model-prefix", fp32_prefix, "--int8-prefix", int8_prefix,
                   "--data-root", tiny_data, "--precisions", "fp32", "int8", "--scopes", "network",
                   "--batch-sizes", "2", "--repeats", "1", "--warmup", "0", "--out", str(out),
                   "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert "network_int8_vs_fp32" in json.load(open(out))["speedup"]
    missing = run_cli("bench", "--model-prefix", str(tmp_path / "nothing"), "--data-root",
                      tiny_data, "--out", str(tmp_path / "x.json"), "--quiet")
    assert_clean_error(missing, "not found")
    assert not (tmp_path / "x.json").exists()


def test_random_zoo_model_gets_a_trained_score_profile(tiny_data):
    from ssdq.data.loader import iterate_batches
    from ssdq.model.ssd import random_zoo_ssd

    images, _ = next(iterate_batches(open_dataset(tiny_data, "val").subset(4), 4))
    net, share = random_zoo_ssd("ssd_300_mobilenet0.25_voc", images, anchor_share=0.06)
    assert share == pytest.approx(0.06, abs=0.01)
    import mxnet as mx

    ids, scores, boxes = net(mx.nd.array(images))
    kept = (scores.asnumpy() > 0.01).sum(axis=(1, 2))
    assert np.all(kept > 0) and np.all(kept < 400)  # some detections, far from all anchors


def test_shipped_int8_is_timed_in_turns_beside_the_others(voc_exports):
    """GluonCV's shipped int8 graph as an extra precision, bound to the fp32 export's weights;
    the baked-preprocessing export is fed NHWC 0..255 from the same image pool."""
    from ssdq.bench.harness import bench_checkpoints
    from ssdq.data.dataset import load_voc
    from ssdq.model.checkpoint import gluoncv_shipped_dir
    from ssdq.model.meta import class_list

    if not os.path.isfile(os.path.join(gluoncv_shipped_dir() or "",
                                       "ssd_300_vgg16_atrous_voc_int8-symbol.json")):
        pytest.skip("gluoncv's wheel has no ssd_300_vgg16_atrous_voc_int8-symbol.json here")
    pairs, extra = bench_checkpoints([(voc_exports["baked"], None)],
                                     ["gluoncv=ssd_300_vgg16_atrous_voc_int8"])
    assert extra["gluoncv"].params_file == voc_exports["baked"] + "-0000.params"
    images = load_voc(voc_exports["voc"], "val", class_list("voc"))
    result = benchmark(pairs, images, precisions=("fp32", "int8"), scopes=("network",),
                       batch_sizes=(1,), warmup=0, repeats=1, progress=False, extra_int8=extra)
    rows = {r["precision"]: r for r in result["records"]}
    assert set(rows) == {"fp32", "int8", "int8_gluoncv"}
    assert rows["int8"]["error"] == "no int8 checkpoint given"
    assert rows["fp32"]["images_per_sec"] > 0 and rows["int8_gluoncv"]["images_per_sec"] > 0
    assert "network_int8_gluoncv_vs_fp32" in result["speedup"]
    model = next(iter(result["models"].values()))
    assert model["extra_int8"]["gluoncv"]["quantized_conv_nodes"] == 35
    assert model["meta_inferred"]["fp32"]["input"]["layout"] == "NHWC"
    with pytest.raises(SsdqError, match="LABEL=PREFIX"):
        bench_checkpoints([(voc_exports["plain"], None)], ["gluoncv"])


def test_speedups_compare_extra_int8_graphs():
    records = [{"model": "m", "precision": p, "scope": "network", "batch_size": 8,
                "images_per_sec": v} for p, v in (("fp32", 5.0), ("int8", 20.0),
                                                  ("int8_gluoncv", 16.0))]
    figures, _ = speedups(records)
    assert figures["m"]["network_int8_gluoncv_vs_fp32"] == 3.2
    assert figures["m"]["network_int8_vs_int8_gluoncv"] == 1.25


def test_pruned_variant_is_timed_in_turns_and_gets_its_speedups(fp32_prefix, int8_prefix, tiny_data,
                                                                 tmp_path):
    from ssdq.bench.harness import bench_model, speedups
    from ssdq.compress.pruning.options import PruneOptions
    from ssdq.compress.pruning.slimming import prune
    from ssdq.data.dataset import open_dataset
    from ssdq.data.loader import iterate_batches
    from ssdq.data.transforms import resize
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.ssd import feature_convs, keep_ratios, pruned_zoo_ssd
    from ssdq.model.weights import REFERENCE_WEIGHTS
    from ssdq.quant.options import CalibOptions
    from ssdq.quant.quantize import quantize

    calib = open_dataset(tiny_data, "train")
    pruned_fp32, recipe = prune(str(tmp_path / "pruned"), PruneOptions(REFERENCE_WEIGHTS, 50, mode="max",
                                                               recalibrate_images=0))
    pruned_int8 = quantize(pruned_fp32, str(tmp_path / "pruned-int8"), calib,
                           calib=CalibOptions(num_calib_batches=1), batch_size=16, progress=False)
    images, _ = next(iterate_batches(calib.subset(2), 2, transform=resize))  # as benchmark() pools them
    records = bench_model("m", load_checkpoint(fp32_prefix), load_checkpoint(int8_prefix), images,
                          precisions=("fp32", "int8"), scopes=("network",), batch_sizes=(2,),
                          warmup=0, repeats=1, progress=False,
                          pruned=(load_checkpoint(pruned_fp32), load_checkpoint(pruned_int8)))
    assert [r["precision"] for r in records] == ["fp32", "int8", "fp32_pruned", "int8_pruned"]
    assert all(r["images_per_sec"] > 0 for r in records)
    figures, _ = speedups(records, batch_size=2)
    assert {"network_int8_pruned_vs_dense_fp32", "network_int8_pruned_vs_dense_int8"} <= set(figures["m"])
    # the full-size architecture gets the pruned checkpoint's keep ratios: 8x the thin widths
    ratios, num_scales = keep_ratios(load_checkpoint(pruned_fp32).meta)
    full = pruned_zoo_ssd("ssd_300_vgg16_atrous_coco", ratios, num_scales)
    assert [c._channels for c in feature_convs(full)] == [8 * w for w in recipe["widths"]]
    assert len(full.class_predictors) == recipe["num_scales"]
    dense = [c._channels for c in feature_convs(pruned_zoo_ssd("ssd_300_vgg16_atrous_coco",
                                                               [1.0] * len(ratios), num_scales))]
    padded = [c._channels for c in feature_convs(pruned_zoo_ssd(
        "ssd_300_vgg16_atrous_coco", ratios, num_scales, multiple=16))]
    assert all(p % 16 == 0 or p == d for p, d in zip(padded, dense))
    assert all(8 * w <= p < 8 * w + 16 for w, p in zip(recipe["widths"], padded))


def test_cached_zoo_checkpoint_is_rebuilt_when_its_widths_differ(tmp_path):
    """A bench checkpoint is cached under a name (the pruned checkpoint's); pruning again under
    that name gives other widths, and the stale graph must not be timed."""
    import json

    from ssdq.bench.harness import _cached_matches
    from ssdq.model.checkpoint import checkpoint_files

    prefix = str(tmp_path / "bench-x-random-pruned-row")
    source = {"model": "x (pruned)", "widths": [56, 48, 512]}
    assert not _cached_matches(prefix, source)
    with open(checkpoint_files(prefix)["meta"], "w") as f:
        json.dump(dict(source, weights="random", precision="fp32"), f)
    assert _cached_matches(prefix, source)
    assert not _cached_matches(prefix, dict(source, widths=[56, 40, 512]))


def test_zoo_checkpoints_are_made_once_and_run(tiny_data, tmp_path):
    """``bench --zoo`` (what CI's informational bench runs): the full-size architecture with
    random weights, converted and calibrated once, then reused."""
    from ssdq.bench.harness import zoo_checkpoints
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.graph import quantized_conv_nodes

    images = open_dataset(tiny_data, "val")
    fp32, int8 = zoo_checkpoints("ssd_300_vgg16_atrous_voc", images, model_dir=str(tmp_path),
                                 progress=False)
    made = os.path.getmtime(int8 + "-meta.json")
    assert zoo_checkpoints("ssd_300_vgg16_atrous_voc", images, model_dir=str(tmp_path),
                           progress=False) == (fp32, int8)
    assert os.path.getmtime(int8 + "-meta.json") == made  # cached, not made again
    assert len(quantized_conv_nodes(load_checkpoint(int8).symbol)) >= 30
