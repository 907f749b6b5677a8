"""``ssdq study prune`` on tiny data: real checkpoints, real int8, the JSON CI reads."""
import json
import os

import pytest

from ssdq.compress.pruning.options import PruneStudyOptions
from ssdq.compress.pruning.study import make_variants, run_study
from ssdq.compress.pruning.study import qat_int8 as qat_int8_prefix
from ssdq.data.options import DataOptions
from ssdq.errors import SsdqError
from ssdq.model.weights import REFERENCE_WEIGHTS
from ssdq.quant.options import CalibOptions

HEADER = ("| model | params | size MB | compression | latency ms (batch 1) | img/s (batch 8) "
          "| mAP | fp32 control | layers |")


def test_study_rows_and_report(tiny_data, tmp_path):
    out = tmp_path / "reports"
    # the reference weights stand in for the sparse-trained ones: the machinery, not the numbers
    options = PruneStudyOptions(percent=50, energy=0.9, sparse_params=REFERENCE_WEIGHTS,
                                model_dir=str(tmp_path / "ckpt"), out_dir=str(out),
                                eval_images=16, repeats=2, recalibrate_images=16,
                                finetune_epochs=1, finetune_params_share=0.4,
                                finetune_criterion="gamma-per-param")
    report = run_study(options, DataOptions(tiny_data), CalibOptions(num_calib_batches=1),
                       batch_size=16, progress=False,
                       names=["normal + low-rank", "normal (max) + fine-tuning",
                              "normal (max) + QAT",
                              "sparse-trained + QAT, then normal (max) + QAT"],
                       echo=lambda *_: None)
    saved = json.loads((out / "study-prune.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(report["rows"]))
    assert (out / "study-prune.png").read_bytes()[:4] == b"\x89PNG"
    names = [(r["name"], r["precision"]) for r in saved["rows"]]
    assert names == [(n, p) for n in ("baseline", "normal", "normal + low-rank",
                                      "normal (max) + fine-tuning", "normal (max) + QAT",
                                      "sparse-trained + QAT",
                                      "sparse-trained + QAT, then normal (max) + QAT",
                                      "baseline + fine-tuning (control)")
                     for p in ("fp32", "int8")]
    table = [line for line in (out / "study-prune.md").read_text().splitlines()
             if line.startswith("|")]
    assert table[0] == HEADER and len(table) == 2 + len(names)
    assert [line.split(" | ")[0].lstrip("| ") for line in table[2:]] == [
        n + ("" if p == "fp32" else " W8A8 (QAT)" if "QAT" in n else " W8A8") for n, p in names]
    rows = {(r["name"], r["precision"]): r for r in saved["rows"]}
    for row in saved["rows"]:
        for key in ("name", "precision", "params", "size_mb", "latency_ms", "images_per_sec",
                    "map", "layers_delta", "checkpoint", "latency_spread_pct"):
            assert key in row, key
        assert os.path.isfile(row["checkpoint"] + "-meta.json")
        # the median of the two rounds (each figure rounded to 0.01 ms)
        assert row["latency_ms_min"] > 0 and row["latency_ms"] == pytest.approx(
            (row["latency_ms_min"] + row["latency_ms_max"]) / 2, abs=0.0101)
        assert row["images_per_sec"] > 0
    timing = saved["settings"]["timing"]
    assert timing["rounds"] == 2 and "in turns" in timing["how"]
    assert timing["largest_latency_spread_pct"] == max(r["latency_spread_pct"]
                                                       for r in saved["rows"])
    assert "%s%%" % timing["largest_latency_spread_pct"] in (out / "study-prune.md").read_text()
    base = rows[("baseline", "fp32")]
    assert base["layers_delta"] == 0 and base["params_share"] == 1
    assert rows[("normal", "fp32")]["params"] < 0.7 * base["params"]
    assert rows[("normal + low-rank", "fp32")]["lowrank"]["fc6"]["energy_kept"] >= 0.9
    assert rows[("baseline", "int8")]["size_mb"] < 0.5 * base["size_mb"]
    assert "int8" in json.load(open(rows[("normal", "int8")]["checkpoint"] + "-meta.json"))["precision"]
    assert saved["target"]["best"]["name"] in {n for n, _ in names}
    assert rows[("normal", "fp32")]["pruning"]["percent"] == 50
    tuned = rows[("normal (max) + fine-tuning", "fp32")]
    assert tuned["pruning"]["mode"] == "max" and tuned["pruning"]["criterion"] == "gamma-per-param"
    assert tuned["params_share"] <= 0.4 and tuned["pruning"]["params_share"] <= 0.4
    assert "pruned to 40% of the parameters by gamma-per-param" in (out / "study-prune.md").read_text()
    assert saved["settings"]["fine_tuning"]["epochs"] == 1
    # the shipped weights by their place in the package, the same on every install
    assert saved["settings"]["sparse_params"] == \
        "ssdq/model/weights/reference-ssd300-vgg16-atrous.params"
    made = json.load(open(tuned["checkpoint"] + "-meta.json"))["pruning"]["finetune"]
    assert made["epochs"] == 1 and made["select_split"] == "dev"
    assert made["kept_epoch"] == max((h for h in made["history"] if "epoch" in h and "dev_map" in h),
                                     key=lambda h: h["dev_map"])["epoch"]
    # the control: the dense weights, nothing pruned, through the same fine-tuning
    control = rows[("baseline + fine-tuning (control)", "fp32")]
    assert control["params"] == base["params"] and control["pruning"]["percent"] == 0
    control_made = json.load(open(control["checkpoint"] + "-meta.json"))["pruning"]["finetune"]
    assert {k: control_made[k] for k in ("epochs", "lr", "seed", "batch_size", "train_dataset",
                                         "select_split")} == {
        k: made[k] for k in ("epochs", "lr", "seed", "batch_size", "train_dataset",
                             "select_split")}
    for precision in ("fp32", "int8"):
        row = rows[("normal (max) + fine-tuning", precision)]
        assert row["control_map"] == control["map"]
        assert row["read_against_map"] == max(base["map"], control["map"])
    assert "control_map" not in rows[("normal", "fp32")]
    _check_both_orders(rows, base, control, options)
    # a second run reuses the control: same settings, same weights, same data
    stamp = os.path.getmtime(control["checkpoint"] + "-meta.json")
    make_variants(options.model_dir, options, _train(tiny_data), ["baseline + fine-tuning (control)"],
                  select_set=_dev(tiny_data))
    assert os.path.getmtime(control["checkpoint"] + "-meta.json") == stamp


def _check_both_orders(rows, base, control, options):
    """Prune then QAT, and QAT then prune by the gammas QAT trained: real int8 graphs, the
    study's fields, read against the control."""
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.graph import quantized_conv_nodes

    ptq = rows[("normal (max) + fine-tuning", "int8")]
    assert (ptq["order"], ptq["quantization"]) == ("prune-quantize", "ptq")
    assert rows[("normal (max) + fine-tuning", "fp32")]["quantization"] is None
    assert rows[("baseline", "int8")]["order"] is None
    for name, order in (("normal (max) + QAT", "prune-quantize"),
                        ("sparse-trained + QAT, then normal (max) + QAT", "quantize-prune")):
        row = rows[(name, "int8")]
        assert (row["order"], row["quantization"]) == (order, "qat")
        assert row["params_share"] <= 0.4 and row["control_map"] == control["map"]
        assert row["read_against_map"] == max(base["map"], control["map"])
        int8 = load_checkpoint(row["checkpoint"])
        assert int8.meta["precision"] == "int8" and len(quantized_conv_nodes(int8.symbol)) >= 30
        with open(row["checkpoint"] + "-qat.json") as f:
            record = json.load(f)
        assert record["check"]["onednn_int8_map"] == pytest.approx(row["map"], abs=0.01)
    first = rows[("sparse-trained + QAT", "int8")]
    assert first["quantization"] == "qat" and first["params_share"] == 1
    assert "control_map" not in first
    with open(qat_int8_prefix(rows[("sparse-trained + QAT", "fp32")]["checkpoint"])
              + "-qat.json") as f:  # the first QAT kept the sparsity penalty on
        assert json.load(f)["regularizers"] == [{
            "regularizer": "L1 on the prunable BatchNorm gammas (network slimming)",
            "sparsity": options.qat_sparsity, "weighting": "params", "gamma_lr_mult": 15.0}]
    # quantize, then prune: the channels were chosen by the QAT model's gammas
    pruned = load_checkpoint(os.path.join(options.model_dir,
                                          "sparse-trained_plus_QAT_then_normal_max_plus_QAT-pruned"))
    assert pruned.meta["bn_source"] == rows[("sparse-trained + QAT", "fp32")]["checkpoint"]


def _train(root):
    from ssdq.data.dataset import open_dataset

    return open_dataset(root, "train")


def _dev(root):
    from ssdq.data.dataset import open_dataset

    return open_dataset(root, "dev")


def test_fine_tuned_row_without_epochs_is_refused(tmp_path):
    with pytest.raises(SsdqError, match="--finetune-epochs"):
        make_variants(str(tmp_path), PruneStudyOptions(finetune_epochs=0),
                      names=["normal (max) + fine-tuning"])
    assert not os.listdir(tmp_path)  # refused before anything is written
