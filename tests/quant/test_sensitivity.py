"""quant.sensitivity: the layer made hard to quantize comes out on top, by mAP and by the
label-free proxy, in the library and from the command line."""
import json

from ssdq.quant.sensitivity import analyse

from helpers import run_cli


def test_sensitivity_ranks_the_outlier_layer_first(variants, hard_conv):
    report = analyse(variants, with_map=True, progress=False)
    top = report["layers"][0]
    assert top["conv"] == hard_conv, [(r["conv"], r.get("map_recovered")) for r in report["layers"][:3]]
    assert top["map_recovered"] > 2.0
    assert report["fp32_map"] - report["int8_map"] > 2.0
    by_snr = sorted(report["layers"], key=lambda r: r["snr_db"])
    assert by_snr[0]["conv"] == hard_conv  # the label-free proxy agrees


def test_cli_label_free_sensitivity_ranks_the_outlier_first(outlier_prefix, hard_conv, tiny_data, tmp_path):
    proc = run_cli("sensitivity", "--no-map", "--model-prefix", outlier_prefix, "--data-root",
                   tiny_data, "--num-calib-batches", "2", "--batch-size", "16", "--eval-images",
                   "16", "--out-dir", str(tmp_path), "--quiet")
    assert proc.returncode == 0, proc.stderr
    report = json.load(open(tmp_path / "sensitivity.json"))
    assert report["fp32_map"] is None and hard_conv in json.dumps(report["layers"][0])
    assert "n/a (--no-map)" in open(tmp_path / "sensitivity.md").read()
    assert open(tmp_path / "sensitivity.png", "rb").read(4) == b"\x89PNG"


