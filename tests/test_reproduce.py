import json
import os

from conftest import run_cli


def test_reproduce_writes_the_report(tmp_path, tiny_data):
    proc = run_cli("reproduce", "--data-root", tiny_data, "--batch-size", "16",
                   "--num-calib-batches", "2", "--model-dir", str(tmp_path / "model"),
                   "--out-dir", str(tmp_path / "reports"), "--quiet")
    assert proc.returncode == 0, proc.stderr
    report = json.load(open(tmp_path / "reports" / "report.json"))
    for precision in ("fp32", "int8"):
        r = report[precision]
        for key in ("map", "ap50", "size_mb", "images_per_sec"):
            assert isinstance(r[key], float) and r[key] > 0, (precision, key)
    assert report["fp32"]["map"] >= 35
    assert abs(report["comparison"]["relative_map_drop_pct"]) < 5
    env = report["environment"]
    assert env["versions"]["mxnet"] == "1.9.1" and "cpu_model" in env and "isa" in env
    assert report["calibration"]["dataset"]["split"] == "train"
    assert not report["calibration"]["same_split_as_eval"]
    md = open(tmp_path / "reports" / "report.md").read()
    assert "| mAP@[.5:.95] (%) |" in md and "## Per-class AP" in md
    assert "| mAP@[.5:.95] (%) |" in proc.stdout  # the table is printed at the end
    assert "## Benchmark" in md and "end_to_end_int8_vs_fp32" in report["bench"]["speedup"]
    assert report["bench"]["speedup_batch_size"] == 8
    assert sorted(os.listdir(tmp_path / "reports")) == ["bench.json", "bench.md", "bench.png",
                                                        "report.json", "report.md"]
