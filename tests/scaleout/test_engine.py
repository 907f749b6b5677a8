"""ssdq.scaleout: the same figures with and without Ray, retries, and where trials ran.

Ray starts once for the module (a local Ray in this process, ~10 s); the CLI test starts its own
in a child process, as a user's `ssdq eval --ray` would.
"""
import json
import os
import sys

import pytest
import ray

from ssdq.eval.sharded import shard_ranges
from ssdq.scaleout.engine import LocalEngine, TrialFailed

from helpers import needs_two_cpus, run_cli

# the trials below are defined in this test module, which Ray's workers cannot import
ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def ray_engine(tmp_path_factory):
    from ssdq.scaleout.engine import RayEngine

    engine = RayEngine(cpus_per_task=1, slot_dir=str(tmp_path_factory.mktemp("slots")))
    yield engine
    engine.close()


def test_shard_ranges_are_whole_batches_covering_every_image():
    assert shard_ranges(500, 4, 64) == [(0, 128), (128, 256), (256, 384), (384, 500)]
    assert shard_ranges(10, 4, 8) == [(0, 8), (8, 10)]  # never more shards than batches
    assert shard_ranges(5, 1, 64) == [(0, 5)]


def test_sharded_eval_scores_exactly_like_the_unsharded_loop(fp32_prefix, tiny_data):
    from ssdq.data.dataset import open_dataset
    from ssdq.eval.evaluate import evaluate_checkpoint

    val = open_dataset(tiny_data, "val").subset(40)
    whole = evaluate_checkpoint(fp32_prefix, val, batch_size=8, progress=False, speed_repeats=1)
    sharded = evaluate_checkpoint(fp32_prefix, val, batch_size=8, progress=False,
                                  speed_repeats=1, shards=3, engine=LocalEngine())
    assert sharded["shards"] == [[0, 16], [16, 24], [24, 40]]
    for key in ("map", "ap50", "ap75", "per_class", "detections"):
        assert sharded[key] == whole[key], key


def _fails_once(context, item):
    marker = os.path.join(context, "attempted-%s" % item)
    if not os.path.exists(marker):
        open(marker, "w").close()
        if item == "crash":
            os._exit(1)  # the worker process dies: Ray reports the actor lost
        raise ValueError("first attempt fails")
    return item


def _always_fails(context, item):
    raise ValueError("broken variant %s" % item)


def test_ray_retries_a_failed_or_lost_trial_once_then_reports_it(ray_engine, tmp_path):
    results = ray_engine.map(_fails_once, str(tmp_path), ["raise", "crash", "fine"])
    assert [r["value"] for r in results] == ["raise", "crash", "fine"]
    assert [r["attempts"] for r in results] == [2, 2, 2]
    with pytest.raises(TrialFailed, match="broken variant b"):
        ray_engine.map(_always_fails, None, ["b"])


def test_sensitivity_on_ray_gives_the_serial_report(fp32_prefix, tiny_data, ray_engine):
    from ssdq.data.dataset import open_dataset
    from ssdq.quant.calibrated import Calibrated
    from ssdq.quant.options import CalibOptions
    from ssdq.quant.sensitivity import analyse

    variants = Calibrated(fp32_prefix, open_dataset(tiny_data, "train"),
                          open_dataset(tiny_data, "val").subset(16), CalibOptions(num_calib_batches=1),
                          batch_size=16, progress=False)
    variants.layers = dict(list(variants.layers.items())[:3])  # keep the test short
    serial = analyse(variants, progress=False)
    on_ray = analyse(variants, progress=False, engine=ray_engine)
    assert "ray" not in serial
    for report in (serial, on_ray):
        report.pop("seconds")
    ray_info = on_ray.pop("ray")
    assert json.dumps(on_ray, sort_keys=True) == json.dumps(serial, sort_keys=True)
    assert ray_info["cpus_per_task"] == 1 and ray_info["nodes"]
    assert len(ray_info["tasks"]) == 2 + 3
    workers = {t["where"]["pid"]: t["where"] for t in ray_info["tasks"]}
    pinned = [w["cpus"] for w in workers.values() if w["pinned"]]
    assert len({tuple(c) for c in pinned}) == len(pinned)  # no two workers share a core
    for where in workers.values():
        if where["pinned"]:
            assert where["threads_cpus"] == where["cpus"]  # every thread stays on its core


def test_tune_in_parallel_waves_makes_the_serial_choices(fp32_prefix, tiny_data, tmp_path):
    from ssdq.data.dataset import open_dataset
    from ssdq.quant.calibrated import Calibrated
    from ssdq.quant.options import CalibOptions, TuneOptions
    from ssdq.quant.tune import tune

    class Waves(LocalEngine):
        parallelism = 3  # runs serially, but the tuner plans waves of three steps

    variants = Calibrated(fp32_prefix, open_dataset(tiny_data, "train"),
                          open_dataset(tiny_data, "val").subset(16), CalibOptions(num_calib_batches=1),
                          batch_size=16, progress=False)
    variants.layers = dict(list(variants.layers.items())[:4])
    # a budget no variant meets, so the fallback walks the whole ranking
    reports = [tune(variants, str(tmp_path / name), TuneOptions(max_relative_drop=-50),
                    modes=("naive",), progress=False, engine=engine)
               for name, engine in (("serial", LocalEngine()), ("waves", Waves()))]
    assert reports[0]["trials"] == reports[1]["trials"]
    assert len(reports[0]["trials"]) == 1 + 4
    assert reports[0]["stop_reason"] == reports[1]["stop_reason"] == "every layer tried"


def test_cli_eval_shards_on_ray(fp32_prefix, tiny_data, tmp_path):
    plain, sharded = tmp_path / "plain.json", tmp_path / "sharded.json"
    common = ["eval", "--model-prefix", fp32_prefix, "--data-root", tiny_data, "--batch-size",
              "8", "--quiet"]
    assert run_cli(*common, "--out", str(plain)).returncode == 0
    proc = run_cli(*common, "--shards", "4", "--ray", "--out", str(sharded))
    assert proc.returncode == 0, proc.stderr[-2000:]
    a, b = json.loads(plain.read_text()), json.loads(sharded.read_text())
    assert b["map"] == a["map"] and b["per_class"] == a["per_class"]
    assert len(b["shards"]) == 4
    assert b["ray"]["address"] == "local" and b["ray"]["workers"] >= 1
    assert b["ray"]["serial_estimate_s"] > 0 and b["ray"]["wall_s"] > 0


def test_cli_bad_ray_address_is_one_line(fp32_prefix, tiny_data):
    from helpers import assert_clean_error

    proc = run_cli("eval", "--model-prefix", fp32_prefix, "--data-root", tiny_data, "--quiet",
                   "--ray", "127.0.0.1:1")
    assert_clean_error(proc, "Ray")


def _without(report, *keys):
    return {k: v for k, v in report.items() if k not in keys}


@needs_two_cpus
def test_bitwidth_study_on_ray_gives_the_serial_report(fp32_prefix, tiny_data, ray_engine,
                                                       tmp_path):
    from ssdq.compress.formats.options import BitwidthOptions
    from ssdq.compress.formats.study import run_study
    from ssdq.data.options import DataOptions
    from ssdq.quant.options import CalibOptions

    def run(out, engine=None):
        options = BitwidthOptions(model_prefix=fp32_prefix, eval_images=16,
                                  out_dir=str(tmp_path / out), model_dir=str(tmp_path),
                                  finetune_epochs=0, bits=(16, 8, 2, 1))
        return run_study("bitwidth", options, DataOptions(tiny_data),
                         CalibOptions(num_calib_batches=1), batch_size=16, progress=False,
                         engine=engine)

    serial = run("serial")
    on_ray = run("ray", ray_engine)
    assert "ray" not in serial
    ray_info = on_ray["ray"]
    a, b = (json.dumps(_without(r, "seconds", "ray", "settings"), sort_keys=True)
            for r in (serial, on_ray))
    assert a == b  # every mAP to the last digit, the sweeps' rows and where they stopped
    conv = serial["sweeps"]["conv_weights"]
    assert [r["bits"] for r in conv] == [16, 8, 2] and not conv[-1]["passed"]
    # 3 checks + the sweeps in waves of two (1-bit conv ran beside 2-bit, then was dropped)
    # + the combined model
    reported = 3 + sum(len(rows) for rows in serial["sweeps"].values()) + 1
    assert len(ray_info["tasks"]) > reported
    assert ray_info["serial_estimate_s"] > 0 and ray_info["wall_s"] > 0
    # the trials ran in the workers, which rebuilt the simulator from its spec
    assert len({t["where"]["pid"] for t in ray_info["tasks"]} - {os.getpid()}) == 2
    assert "Trials ran on Ray (local" in (tmp_path / "ray" / "study-bitwidth.md").read_text()
    assert "Trials ran on Ray" not in (tmp_path / "serial" / "study-bitwidth.md").read_text()


def test_prune_study_on_ray_scores_like_the_serial_run(tiny_data, ray_engine, tmp_path):
    from ssdq.compress.pruning.options import PruneStudyOptions
    from ssdq.compress.pruning.study import run_study
    from ssdq.data.options import DataOptions
    from ssdq.model.weights import REFERENCE_WEIGHTS
    from ssdq.quant.options import CalibOptions

    def run(out, engine=None):
        options = PruneStudyOptions(sparse_params=REFERENCE_WEIGHTS,
                                    model_dir=str(tmp_path / "ckpt"), out_dir=str(tmp_path / out),
                                    eval_images=16, repeats=1, recalibrate_images=0)
        return run_study(options, DataOptions(tiny_data), CalibOptions(num_calib_batches=1),
                         batch_size=16, progress=False, names=["baseline"],
                         echo=lambda *_: None, engine=engine)

    serial, on_ray = run("serial"), run("ray", ray_engine)
    timed = ("latency_ms", "latency_ms_min", "latency_ms_max", "latency_spread_pct",
             "images_per_sec")
    assert [_without(r, *timed) for r in on_ray["rows"]] == \
        [_without(r, *timed) for r in serial["rows"]]
    # the rows are the machinery's (a pruned row adds time, not another path): fp32 and int8
    assert [(r["name"], r["precision"]) for r in serial["rows"]] == [
        ("baseline", "fp32"), ("baseline", "int8")]
    assert all(r["map"] > 0 and r["latency_ms"] > 0 for r in on_ray["rows"])
    assert "ray" not in serial and len(on_ray["ray"]["tasks"]) == 2
    assert {t["where"]["pid"] for t in on_ray["ray"]["tasks"]}.isdisjoint({os.getpid()})
    assert "Scoring: Trials ran on Ray" in (tmp_path / "ray" / "study-prune.md").read_text()


def test_cli_studies_take_the_ray_flags():
    from ssdq.cli.main import build_parser

    for kind in ("bitwidth", "pow2", "clip", "prune"):
        args = build_parser().parse_args(["study", kind, "--ray", "auto", "--cpus-per-task", "2"])
        assert (args.ray, args.cpus_per_task) == ("auto", 2)
        assert build_parser().parse_args(["study", kind]).ray is None
