"""The format studies write the report fields CI and people read (tiny data, few images)."""
import json
import os

import pytest

from ssdq.compress.formats.options import BitwidthOptions, ClipOptions, Pow2Options
from ssdq.compress.formats.study import run_study
from ssdq.data.options import DataOptions
from ssdq.errors import SsdqError
from ssdq.quant.options import CalibOptions

from helpers import assert_clean_error, run_cli


def _run(kind, options_class, tiny_data, fp32_prefix, out_dir, **extra):
    extra.setdefault("finetune_epochs", 0)
    extra.setdefault("eval_images", 4)
    options = options_class(model_prefix=fp32_prefix, out_dir=str(out_dir),
                            model_dir=str(out_dir), **extra)
    return run_study(kind, options, DataOptions(tiny_data), CalibOptions(num_calib_batches=2),
                     batch_size=16, progress=False)


def test_bitwidth_study(tiny_data, fp32_prefix, tmp_path):
    # 16 images: on 4, one detection more or less moves mAP past the 8-bit margin
    _run("bitwidth", BitwidthOptions, tiny_data, fp32_prefix, tmp_path, bits=(8, 2),
         eval_images=16)
    with open(tmp_path / "study-bitwidth.json") as f:
        report = json.load(f)
    base = report["baseline"]["map"]
    assert base > 10
    conv = report["sweeps"]["conv_weights"]
    assert [r["bits"] for r in conv] == [8, 2]
    assert conv[0]["map"] > base - 2 and not conv[1]["passed"]  # 2-bit weights collapse
    assert report["sweeps"]["fc_weights"] == [] and report["combined"]["fc_weights"] == "none"
    assert report["combined"]["conv_weights"] == 8 and "map" in report["combined"]
    assert abs(report["check"]["simulated_int8_map"] - report["check"]["onednn_int8_map"]) < 3
    assert report["simulated"] == "simulated (fake-quant in fp32)"
    assert len(report["integer_lengths"]["layers"]) == 35
    log = (tmp_path / "study-bitwidth.log").read_text()
    assert "Baseline 32bit float: %.3f" % base in log and "8bit: \t" in log
    assert "simulated (fake-quant in fp32)" in (tmp_path / "study-bitwidth.md").read_text()
    assert os.path.getsize(tmp_path / "study-bitwidth.png") > 1000


def test_bitwidth_study_rejects_unknown_fc_layer(tiny_data, fp32_prefix, tmp_path):
    proc = run_cli("study", "bitwidth", "--data-root", tiny_data, "--model-prefix", fp32_prefix,
                   "--fc-layers", "fc9", "--out-dir", str(tmp_path), "--quiet")
    assert_clean_error(proc, "fc9")


def test_pow2_and_clip_studies_rows(tiny_data, fp32_prefix, tmp_path):
    pow2 = _run("pow2", Pow2Options, tiny_data, fp32_prefix, tmp_path, formats=("pow2:-10:5",))
    assert [(r["format"], r["activations"]) for r in pow2["rows"]] == [
        ("pow2:-10:5", "fp32"), ("pow2:-10:5", "dfp:8")]
    for r in pow2["rows"]:
        assert set(r) >= {"format", "activations", "finetune_epochs", "lq_lambda", "map"}
    clip = _run("clip", ClipOptions, tiny_data, fp32_prefix, tmp_path, finetune_epochs=1,
                train_images=16, lq_lambda=1e-3)
    formats = [(r["format"], r["activations"]) for r in clip["rows"]]
    assert ("fp32", "clip:1") in formats and ("clip:-4", "fp32") in formats
    assert ("fp32", "clip:5") in formats and ("clip:1", "fp32") in formats
    assert ("pow2clip:8", "pow2clip:8") in formats
    j, k = clip["chosen"]["j"], clip["chosen"]["k"]
    assert ("pow2clip:8:%d" % k, "pow2clip:8:%d" % j) in formats
    # clipping activations at [-2, 2] costs far more than at [-8, 8] on this model
    by = {(r["format"], r["activations"]): r["map"] for r in clip["rows"]}
    assert by[("fp32", "clip:3")] > by[("fp32", "clip:1")]
    # the widest weight clip binds nothing (the L2-scaled heads reach 8.8): the sweep starts
    # where the tightest clip within the margin can be found
    assert by[("clip:4", "fp32")] == clip["baseline"]["map"]
    with open(tmp_path / "study-clip.json") as f:
        assert json.load(f)["baseline"]["map"] == clip["baseline"]["map"]
    assert "simulated (fake-quant in fp32)" in (tmp_path / "study-pow2.md").read_text()
    _check_clip_trained_rows(clip, tmp_path)


def _check_clip_trained_rows(clip, tmp_path):
    """The clipping paper's method: trained with both clips in the forward pass (with and
    without Lq), then int8 with power-of-two activation scales on the real kernels."""
    from ssdq.model.checkpoint import load_checkpoint

    j, k = clip["chosen"]["j"], clip["chosen"]["k"]
    assert all({"trained_with_clips", "kernels"} <= set(r) for r in clip["rows"])
    trained = [r for r in clip["rows"] if r["trained_with_clips"]]
    assert [(r["lq_lambda"], r["kernels"]) for r in trained] == [
        (lam, kernels) for lam in (0.0, 1e-3) for kernels in ("onednn", "simulated", "onednn")]
    assert all(r["control_map"] is not None and r["activation_clip"] == j for r in trained)
    assert not any(r["kernels"] == "onednn" for r in clip["rows"] if not r["trained_with_clips"])
    ckpt = load_checkpoint(str(tmp_path / ("finetuned-clip_%d-aclip%d" % (k, j))))
    assert ckpt.meta["finetune"]["activation_clip"] == j
    for name, value in ckpt.arg_params.items():
        if name.endswith("_weight"):
            assert float(value.abs().max().asscalar()) <= 2.0 ** k + 1e-6, name
    md = (tmp_path / "study-clip.md").read_text()
    assert "| kernels |" in md and "onednn" in md


def test_finetuned_rows_carry_their_control(tiny_data, fp32_prefix, tmp_path):
    """A fine-tuned row names the fp32 model fine-tuned the same way (made once, reused by
    every row of that schedule), and is read against the better of it and the baseline."""
    from ssdq.compress.formats.study import read_against

    pow2 = _run("pow2", Pow2Options, tiny_data, fp32_prefix, tmp_path, formats=("pow2:-10:5",),
                finetune_epochs=1, train_images=16)
    tuned = [r for r in pow2["rows"] if r["finetune_epochs"]]
    assert len(tuned) == 2 and len({r["control_map"] for r in tuned}) == 1
    control = pow2["finetune"]["control"]
    assert control["format"] == "dfp:32" and control["epochs"] == 1
    assert tuned[0]["control_map"] == control["map"] and tuned[0]["select_split"] == "dev"
    record = json.load(open(control["checkpoint"] + "-finetune.json"))
    assert (record["epochs"], record["lr"], record["seed"], record["train_images"]) == (
        1, tuned[0]["lr"], tuned[0]["seed"], tuned[0]["train_images"])
    base = pow2["baseline"]["map"]
    assert read_against(base, tuned[0]) == max(base, control["map"])
    assert read_against(base, pow2["rows"][0]) == base
    assert "fp32 control" in (tmp_path / "study-pow2.md").read_text()
    made = os.path.getmtime(control["checkpoint"] + "-finetune.json")
    _run("pow2", Pow2Options, tiny_data, fp32_prefix, tmp_path, formats=("pow2:-10:5",),
         finetune_epochs=1, train_images=16)
    assert os.path.getmtime(control["checkpoint"] + "-finetune.json") == made  # reused


def test_study_rejects_bad_eval_images():
    with pytest.raises(SsdqError, match="--eval-images must be at least 1"):
        run_study("pow2", Pow2Options(eval_images=0))


def test_cli_defaults_stay_per_command():
    """The study and finetune parsers share flag groups with quantize: their defaults must not
    leak (a shared argparse action once turned quantize's batch size into finetune's)."""
    from ssdq.cli.main import build_parser

    parser = build_parser()
    assert parser.parse_args(["quantize"]).batch_size == 64
    assert parser.parse_args(["study", "bitwidth"]).batch_size == 64
    assert parser.parse_args(["finetune", "--format", "dfp:4"]).train_batch_size == 16
    assert [parser.parse_args(["study", k]).finetune_epochs
            for k in ("bitwidth", "pow2", "clip")] == [0, 3, 1]

