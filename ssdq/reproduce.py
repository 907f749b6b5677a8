"""The main job: convert -> calibrate/quantize -> evaluate fp32 and int8 -> bench -> report.

Stages hand each other checkpoint prefixes (``model/converted``, ``model/quantized``) and the
report is written last, so every intermediate file can be inspected or reused by the single-stage
commands. On the embedded default the synthetic dataset is generated first if it is missing.
"""
import os

from ssdq.backends.runners import check_installed
from ssdq.bench.harness import benchmark, write_bench
from ssdq.data.options import DEFAULT_BATCH_SIZE, DataOptions
from ssdq.data.source import open_data
from ssdq.eval.evaluate import evaluate_checkpoint, format_result
from ssdq.eval.runtimes import evaluate_backends, int8_map_spread, markdown_table
from ssdq.host.environment import format_environment
from ssdq.model.convert import convert
from ssdq.quant.options import CalibOptions
from ssdq.quant.quantize import open_calibration_set, quantize
from ssdq.report.report import build_report, comparison_table, write_report

# A short `ssdq bench` run goes into the report; `ssdq bench` itself does the full sweep.
REPRODUCE_BENCH_BATCH = 8


def reproduce(model="reference", params_file=None, data=None, calib=None, eval_split="val",
              batch_size=DEFAULT_BATCH_SIZE, num_workers=1, model_dir="model",
              out_dir="reports", threads=None, progress=True, echo=print, backends=()):
    """Run the whole job; return the report dict. ``data`` (``DataOptions``): the images
    evaluated (a split of the data root, or a COCO file); ``calib`` (``CalibOptions``): how the
    int8 model is calibrated and on which images. ``backends``: runtimes
    (``backends.BACKENDS``) on which fp32 and int8 are also evaluated and timed (report.json
    ``backends.NAME``, MXNet always among them)."""
    data, calib = data or DataOptions(), calib or CalibOptions()
    check_installed(backends)  # a missing runtime fails now, not after the evaluations
    eval_set = open_data(data, eval_split, progress)
    calib_set = open_calibration_set(calib, data, progress)

    fp32_prefix = os.path.join(model_dir, "converted")
    int8_prefix = os.path.join(model_dir, "quantized")
    echo("[1/4] convert %s -> %s" % (model, fp32_prefix))
    convert(fp32_prefix, model=model, params_file=params_file)
    echo("[2/4] calibrate (%s, %d x %d images of %r) and quantize -> %s"
         % (calib.calib_mode, calib.num_calib_batches, batch_size, calib_set.split, int8_prefix))
    quantize(fp32_prefix, int8_prefix, calib_set, calib, batch_size=batch_size,
             num_workers=num_workers, progress=progress)
    results = {}
    for step, (precision, prefix) in enumerate((("fp32", fp32_prefix), ("int8", int8_prefix)), 3):
        echo("[%d/4] evaluate %s on %d images of %r" % (step, precision, len(eval_set),
                                                       eval_set.split))
        # no separate timing: the bench below times fp32 and int8 in turns
        results[precision] = evaluate_checkpoint(prefix, eval_set, batch_size, num_workers,
                                                 progress=progress, speed_repeats=0)
        echo(format_result(results[precision]))

    runtimes = list(dict.fromkeys(["mxnet"] + list(backends)))
    echo("[bench] fp32 vs int8, network and end to end, batch %d%s" % (
        REPRODUCE_BENCH_BATCH, "" if not backends else ", on " + ", ".join(runtimes)))
    bench = benchmark([(fp32_prefix, int8_prefix)], eval_set, precisions=("fp32", "int8"),
                      scopes=("network", "end_to_end", "end_to_end_gluoncv"),
                      batch_sizes=(REPRODUCE_BENCH_BATCH,), warmup=1, repeats=5,
                      num_workers=num_workers, progress=progress, backends=runtimes)
    write_bench(bench, os.path.join(out_dir, "bench.json"))

    environment = bench["environment"]
    calibration = dict(calib.describe(calib_set.subset(calib.num_calib_batches * batch_size),
                                      batch_size),
                       same_split_as_eval=_same_images(calib_set, eval_set))
    calibration.update(images=calib.num_calib_batches * batch_size)
    report = build_report(results["fp32"], results["int8"], environment, threads, calibration,
                          eval_set.describe(), bench={k: v for k, v in bench.items()
                                                      if k != "environment"})
    if backends:
        echo("[backends] evaluate fp32 and int8 on %s" % ", ".join(runtimes))
        report["backends"] = evaluate_backends(
            runtimes, {"fp32": fp32_prefix, "int8": int8_prefix}, eval_set, bench,
            batch_size, num_workers, progress, known=results)
        report["backends_int8_map_spread"] = int8_map_spread(report["backends"])
    json_path, md_path = write_report(out_dir, report, format_environment(environment))
    echo("\n" + comparison_table(report))
    if backends:
        echo("\n" + markdown_table(report["backends"]))
    echo("\nwrote %s and %s" % (json_path, md_path))
    return report


def _same_images(a, b):
    return (os.path.abspath(a.root), a.split, a.source) == (os.path.abspath(b.root), b.split, b.source)
