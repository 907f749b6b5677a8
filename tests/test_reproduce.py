import json
import os

from helpers import run_cli


def test_reproduce_writes_the_report(tmp_path, tiny_data):
    proc = run_cli("reproduce", "--data-root", tiny_data, "--batch-size", "16",
                   "--num-calib-batches", "2", "--model-dir", str(tmp_path / "model"),
                   "--out-dir", str(tmp_path / "reports"), "--quiet",
                   "--backends", "mxnet", "onnxruntime", "openvino")
    assert proc.returncode == 0, proc.stderr
    report = json.load(open(tmp_path / "reports" / "report.json"))
    for precision in ("fp32", "int8"):
        r = report[precision]
        for key in ("map", "ap50", "map_gluoncv", "ap50_gluoncv", "ap75_gluoncv", "size_mb",
                    "images_per_sec", "eval_loop_images_per_sec"):
            assert isinstance(r[key], float) and r[key] > 0, (precision, key)
        assert r["map_gluoncv"] != r["map"] and r["classes_scored"] == report["dataset"]["classes"]
    assert report["fp32"]["map"] >= 35
    # images/s and the speed-up: fp32 and int8 timed in turns in the bench of the same run
    records = {(r["precision"], r["scope"]): r for r in report["bench"]["records"]
               if r["batch_size"] == 8}
    for precision in ("fp32", "int8"):
        assert report[precision]["images_per_sec"] == records[precision, "end_to_end"]["images_per_sec"]
        assert report[precision]["speed"]["timed_in_turns"]
    assert report["comparison"]["speedup"] == (report["int8"]["images_per_sec"]
                                               / report["fp32"]["images_per_sec"])
    assert abs(report["comparison"]["relative_map_drop_pct"]) < 5
    env = report["environment"]
    assert env["versions"]["mxnet"] == "1.9.1" and "cpu_model" in env and "isa" in env
    assert report["calibration"]["dataset"]["split"] == "train"
    assert not report["calibration"]["same_split_as_eval"]
    md = open(tmp_path / "reports" / "report.md").read()
    assert "| mAP@[.5:.95] (%), pycocotools |" in md and "## Per-class AP" in md
    assert "| mAP@[.5:.95] (%%), GluonCV convention (as Intel's 24.059) | %.3f |" % (
        report["fp32"]["map_gluoncv"]) in md
    assert "timed in turns" in md and "| eval loop images/s" in md
    assert "| mAP@[.5:.95] (%), pycocotools |" in proc.stdout  # the table is printed at the end
    assert "## Benchmark" in md and "end_to_end_int8_vs_fp32" in report["bench"]["speedup"]
    assert report["bench"]["speedup_batch_size"] == 8
    assert sorted(os.listdir(tmp_path / "reports")) == ["bench.json", "bench.md", "bench.png",
                                                        "report.json", "report.md"]
    # --backends: one fp32/int8 table across runtimes, in report.json, report.md and printed
    for name in ("mxnet", "onnxruntime", "openvino"):
        for precision in ("fp32", "int8"):
            figures = report["backends"][name][precision]
            assert figures["map"] > 30 and figures["images_per_sec"] > 0, (name, precision)
    assert report["backends"]["mxnet"]["int8"]["map"] == report["int8"]["map"]
    assert report["backends_int8_map_spread"] < 2  # 64 images here; 0.3 is the 500-image target
    assert {r["backend"] for r in report["bench"]["records"]} == {"mxnet", "onnxruntime", "openvino"}
    assert "## Runtimes" in md and "| openvino |" in proc.stdout
