"""The command line as users meet it: real processes, clean one-line errors, the recipe scripts."""
import json
import os
import shutil
import subprocess
import sys

import pytest

from helpers import REPO, assert_clean_error, run_cli


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
    assert_clean_error(proc, "not found", "nothing-symbol.json")
    (tmp_path / "half-symbol.json").write_text("{}")  # a prefix with one of its two files
    proc = run_cli("eval", "--model-prefix", str(tmp_path / "half"), "--data-root", tiny_data)
    assert_clean_error(proc, "is incomplete", "half-0000.params")


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
                       "dataset class 'person' has", "not a class of the model", "--class-map FILE")
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
        assert len(lines[block + 1].split(".")[1]) == 3  # GluonCV's convention, as "24.059"


def test_bad_recipe_file(tmp_path, fp32_prefix):
    bad = tmp_path / "recipe.json"
    bad.write_text('{"thresholds": 3}')
    assert_clean_error(run_cli("quantize", "--model-prefix", fp32_prefix, "--recipe", str(bad),
                               "--out", str(tmp_path / "q")), "not an ssdq tune recipe")


def _report(path, fp32, int8, speedup, split="val"):
    path.write_text(json.dumps({"fp32": {"map": fp32}, "int8": {"map": int8},
                                "comparison": {"speedup": speedup},
                                "dataset": {"format": "coco", "split": split, "images": 500,
                                            "annotation_file": "/x/instances_%s.json" % split,
                                            "classes": ["a", "b"]},
                                "bench": {"models": {"m": {}}}}))
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
    other = _report(tmp_path / "other.json", 50.0, 49.8, 1.5, split="dev")
    assert_clean_error(run_cli("compare", good, "--baseline", other), "split (val, baseline dev)")
    proc = run_cli("compare", good, "--baseline", other, "--allow-different-baseline")
    assert proc.returncode == 0, proc.stderr


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


# --- users' own data: labelme's COCO export, a one-class COCO file, classes by name ---------

LABELME_NAMES = ("circle", "Square", "triangle", "star", "cross", "annulus")  # two need a map


@pytest.fixture(scope="module")
def labelme_export(tiny_data, tmp_path_factory):
    from helpers import write_labelme_export

    root = tmp_path_factory.mktemp("labelme")
    ann = write_labelme_export(str(root), tiny_data, 4, LABELME_NAMES)
    class_map = root / "class-map.json"
    class_map.write_text(json.dumps({"Square": "square", "annulus": "ring"}))
    return ann, str(root / "JPEGImages"), str(class_map)


def test_labelme_export_evaluates_untouched_with_a_class_map(labelme_export, fp32_prefix, tiny_data,
                                                             tmp_path):
    from ssdq.data.dataset import open_dataset
    from ssdq.eval.evaluate import evaluate_checkpoint

    ann, images, class_map = labelme_export
    before = open(ann).read()
    out = tmp_path / "result.json"
    proc = run_cli("eval", "--model-prefix", fp32_prefix, "--annotations", ann, "--images",
                   os.path.dirname(images), "--class-map", class_map, "--batch-size", "4",
                   "--quiet", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "ssdq: note: ignoring dataset class '_background_'" in proc.stderr
    result = json.load(open(out))
    assert result["classes_ignored"] == ["_background_"] and len(result["classes_scored"]) == 6
    assert result["classes_renamed"] == {"Square": "square", "annulus": "ring"}
    # the same 4 images through the synthetic set's own layout score the same
    same = evaluate_checkpoint(fp32_prefix, open_dataset(tiny_data, "val").subset(4), batch_size=4,
                               progress=False, speed_repeats=0)
    for key in ("map", "ap50", "map_gluoncv"):
        assert round(result[key], 6) == round(same[key], 6), key
    assert open(ann).read() == before
    proc = run_cli("eval", "--model-prefix", fp32_prefix, "--annotations", ann, "--batch-size", "4")
    assert_clean_error(proc, "dataset class 'Square' has", "--class-map FILE")


def test_calibration_reads_images_only(labelme_export, fp32_prefix, tmp_path):
    ann, _, _ = labelme_export  # classes unlike the model's: no class map needed to calibrate
    proc = run_cli("quantize", "--model-prefix", fp32_prefix, "--out", str(tmp_path / "q"),
                   "--annotations", ann, "--num-calib-batches", "1", "--batch-size", "4", "--quiet")
    assert proc.returncode == 0, proc.stderr
    meta = json.load(open(tmp_path / "q-meta.json"))
    assert meta["quantization"]["calibration"]["dataset"]["annotation_file"] == ann


def test_size_mismatch_error_and_allow_flag(labelme_export, fp32_prefix, tmp_path):
    ann, images, class_map = labelme_export
    data = json.load(open(ann))
    data["images"][1]["width"] += 11
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps(data))
    args = ("eval", "--model-prefix", fp32_prefix, "--annotations", str(wrong), "--images",
            os.path.dirname(images), "--class-map", class_map, "--batch-size", "4", "--quiet")
    w, h = data["images"][1]["width"], data["images"][1]["height"]
    assert_clean_error(run_cli(*args), data["images"][1]["file_name"],
                       "decodes as %dx%d but its annotation says %dx%d" % (w - 11, h, w, h),
                       "--allow-size-mismatch")
    proc = run_cli(*args, "--allow-size-mismatch")
    assert proc.returncode == 0, proc.stderr
    assert "ssdq: warning: " in proc.stderr and "using the decoded size" in proc.stderr


def test_no_progress_bars_when_stderr_is_not_a_terminal(tmp_path):
    """A redirected run (CI, a log file) gets no tqdm redraws, even without --quiet."""
    from helpers import run_cli

    proc = run_cli("data", "synthetic", "--root", str(tmp_path / "set"), "--train", "3",
                   "--val", "3")
    assert proc.returncode == 0, proc.stderr
    assert "drawing" not in proc.stderr and "\r" not in proc.stderr, proc.stderr
    assert "val:" in proc.stdout
