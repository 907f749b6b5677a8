"""The command line as users meet it: real processes, clean one-line errors, the recipe scripts."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from conftest import REPO, assert_clean_error, run_cli


def test_help_lists_the_stages():
    proc = run_cli("--help")
    assert proc.returncode == 0
    for command in ("data", "convert", "quantize", "eval", "reproduce"):
        assert command in proc.stdout


def test_console_script_is_installed():
    script = os.path.join(os.path.dirname(sys.executable), "ssdq")
    if not os.path.exists(script):
        pytest.skip("ssdq not installed in this interpreter's environment (run via pip install -e .)")
    assert subprocess.run([script, "--help"], capture_output=True).returncode == 0


def test_missing_checkpoint(tmp_path, tiny_data):
    proc = run_cli("eval", "--model-prefix", str(tmp_path / "nothing"), "--data-root", tiny_data)
    assert_clean_error(proc, "incomplete", "nothing-symbol.json")


def test_gpu_context_is_refused(tiny_data):
    assert_clean_error(run_cli("eval", "--gpus", "0", "--data-root", tiny_data), "CPU only")


def test_unknown_model_name(tmp_path):
    assert_clean_error(run_cli("convert", "--model", "ssd_9000", "--out", str(tmp_path / "x")),
                       "unknown model name")


def test_bad_batch_size(tiny_data, fp32_prefix):
    assert_clean_error(run_cli("eval", "--model-prefix", fp32_prefix, "--data-root", tiny_data,
                               "--batch-size", "0"), "--batch-size")


def test_class_mismatch_and_corrupt_annotations(tmp_path, tiny_data, fp32_prefix):
    root = str(tmp_path / "d")
    shutil.copytree(tiny_data, root)
    ann = os.path.join(root, "annotations", "instances_val.json")
    data = json.load(open(ann))
    data["categories"][0]["name"] = "person"
    json.dump(data, open(ann, "w"))
    assert_clean_error(run_cli("eval", "--model-prefix", fp32_prefix, "--data-root", root),
                       "do not match", "person")
    open(ann, "w").write("{")
    assert_clean_error(run_cli("eval", "--model-prefix", fp32_prefix, "--data-root", root),
                       "not valid JSON")


def test_too_many_calibration_batches(tmp_path, tiny_data, fp32_prefix):
    proc = run_cli("quantize", "--model-prefix", fp32_prefix, "--out", str(tmp_path / "q"),
                   "--data-root", tiny_data, "--num-calib-batches", "5", "--batch-size", "64")
    assert_clean_error(proc, "holds only 32 images")
    assert os.listdir(tmp_path) == []


def _script(name, *args, cwd):
    env = dict(os.environ, MXNET_SUBGRAPH_VERBOSE="0")
    return subprocess.run([sys.executable, os.path.join(REPO, "scripts", name), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


def test_recipe_scripts_run_with_their_defaults(tmp_path, tiny_data):
    # The recipe's working directory holds data/synthetic and gets model/converted|quantized.
    os.makedirs(tmp_path / "data")
    os.symlink(tiny_data, tmp_path / "data" / "synthetic")
    assert _script("convert_model.py", cwd=tmp_path).returncode == 0
    proc = _script("quantize_ssd.py", "--batch-size", "16", "--num-calib-batches", "2", "--quiet",
                   cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for prefix in ("model/converted", "quantized"):
        proc = _script("eval_ssd.py", "--model-prefix", prefix, "--batch-size=64",
                       "--num-workers=1", "--quiet", cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        lines = proc.stdout.splitlines()
        block = lines.index("~~~~ MeanAP @ IoU=[0.50,0.95] ~~~~")
        assert float(lines[block + 1]) > 30


def test_bad_recipe_file(tmp_path, fp32_prefix):
    bad = tmp_path / "recipe.json"
    bad.write_text('{"thresholds": 3}')
    assert_clean_error(run_cli("quantize", "--model-prefix", fp32_prefix, "--recipe", str(bad),
                               "--out", str(tmp_path / "q")), "not an ssdq tune recipe")


def _report(path, fp32, int8, speedup):
    path.write_text(json.dumps({"fp32": {"map": fp32}, "int8": {"map": int8},
                                "comparison": {"speedup": speedup}}))
    return str(path)


def test_compare_gate(tmp_path):
    base = _report(tmp_path / "base.json", 50.0, 49.8, 1.5)
    good = _report(tmp_path / "good.json", 50.1, 49.9, 1.6)
    worse = _report(tmp_path / "worse.json", 50.0, 48.9, 1.1)
    proc = run_cli("compare", good, "--baseline", base, "--max-map-drop", "0.5", "--min-speedup", "1.2")
    assert proc.returncode == 0 and "FAIL" not in proc.stdout
    proc = run_cli("compare", worse, "--baseline", base, "--max-map-drop", "0.5", "--min-speedup", "1.2")
    assert proc.returncode == 1
    failed = [l for l in proc.stdout.splitlines() if l.startswith("FAIL")]
    assert any("baseline int8" in l for l in failed) and any("speed-up" in l for l in failed)
    assert_clean_error(run_cli("compare", str(tmp_path / "none.json")), "cannot read")


def test_compare_gate_on_a_bench_file(tmp_path):
    bench = tmp_path / "bench.json"
    bench.write_text(json.dumps({"speedup": {"network_int8_vs_fp32": 3.6,
                                             "end_to_end_int8_vs_fp32": 2.1}}))
    proc = run_cli("compare", str(bench), "--min-speedup", "3.0", "--min-network-speedup", "3.5")
    assert proc.returncode == 1, proc.stderr
    failed = [l for l in proc.stdout.splitlines() if l.startswith("FAIL")]
    assert len(failed) == 1 and "end-to-end" in failed[0] and "2.10x" in failed[0]
    ok = run_cli("compare", str(bench), "--min-speedup", "2.0", "--min-network-speedup", "3.5")
    assert ok.returncode == 0 and "FAIL" not in ok.stdout
