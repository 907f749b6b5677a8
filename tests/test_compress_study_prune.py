"""``ssdq study prune`` on tiny data: real checkpoints, real int8, the JSON CI reads."""
import json
import os

from ssdq.compress.pruning.study import finetune_pruning_settings, run_study
from ssdq.model.convert import REFERENCE_WEIGHTS


def test_study_rows_and_report(tiny_data, tmp_path):
    out = tmp_path / "reports"
    # the reference weights stand in for the sparse-trained ones: the machinery, not the numbers
    report = run_study(tiny_data, percent=50, energy=0.9, sparse_params=REFERENCE_WEIGHTS,
                       work_dir=str(tmp_path / "ckpt"), out_dir=str(out), eval_images=16,
                       num_calib_batches=1, batch_size=16, repeats=1, progress=False,
                       names=["normal + low-rank", "normal (max) + fine-tuning"],
                       recalibrate_images=16, finetune_epochs=1,
                       finetune_pruning=finetune_pruning_settings(params_share=0.4,
                                                                  criterion="gamma-per-param"),
                       echo=lambda *_: None)
    saved = json.loads((out / "study-prune.json").read_text())
    assert saved["rows"] == json.loads(json.dumps(report["rows"]))
    assert (out / "study-prune.md").read_text().count("\n|") >= 7 and (out / "study-prune.png").stat().st_size
    names = [(r["name"], r["precision"]) for r in saved["rows"]]
    assert names == [(n, p) for n in ("baseline", "normal", "normal + low-rank",
                                      "normal (max) + fine-tuning") for p in ("fp32", "int8")]
    rows = {(r["name"], r["precision"]): r for r in saved["rows"]}
    for row in saved["rows"]:
        for key in ("name", "precision", "params", "size_mb", "latency_ms", "images_per_sec",
                    "map", "layers_delta", "checkpoint"):
            assert key in row, key
        assert os.path.isfile(row["checkpoint"] + "-meta.json")
        assert row["latency_ms"] > 0 and row["images_per_sec"] > 0
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
    assert json.load(open(tuned["checkpoint"] + "-meta.json"))["pruning"]["finetune"]["epochs"] == 1


def test_fine_tuned_row_without_epochs_is_refused(tmp_path):
    import pytest

    from ssdq.compress.pruning.study import make_variants
    from ssdq.errors import SsdqError

    with pytest.raises(SsdqError, match="--finetune-epochs"):
        make_variants(str(tmp_path), REFERENCE_WEIGHTS, REFERENCE_WEIGHTS, 30, 0.9,
                      names=["normal (max) + fine-tuning"], finetune_epochs=0)
    assert not os.listdir(tmp_path)  # refused before anything is written
