"""The main job: convert -> calibrate/quantize -> evaluate fp32 and int8 -> report.

Stages hand each other checkpoint prefixes (``model/converted``, ``model/quantized``) and the
report is written last, so every intermediate file can be inspected or reused by the single-stage
commands. On the embedded default the synthetic dataset is generated first if it is missing.
"""
import os

from ssdq.bench.harness import benchmark, write_bench
from ssdq.model.convert import convert
from ssdq.data.dataset import open_dataset
from ssdq.data.synthetic import DEFAULT_ROOT, ensure_synthetic
from ssdq.eval.evaluate import evaluate_checkpoint, format_result
from ssdq.quant.quantize import DEFAULT_EXCLUDE_MATCH, quantize
from ssdq.report.report import build_report, comparison_table, write_report

# A short `ssdq bench` run goes into the report; `ssdq bench` itself does the full sweep.
REPRODUCE_BENCH_BATCH = 8


def reproduce(model="reference", params_file=None, data_root=DEFAULT_ROOT, eval_split="val",
              calib_split="train", calib_mode="naive", num_calib_batches=5, batch_size=64,
              num_workers=1, exclude_match=DEFAULT_EXCLUDE_MATCH, model_dir="model",
              out_dir="reports", threads=None, progress=True, echo=print, eval_set=None,
              calib_set=None, backends=()):
    """Run the whole job; return the report dict. ``eval_set``/``calib_set``: datasets already
    opened (``open_dataset`` with ``--annotations``, say); by default the splits of
    ``data_root``. ``backends``: runtimes (``backends.BACKENDS``) on which fp32 and int8 are also
    evaluated and timed (report.json ``backends.NAME``, MXNet always among them)."""
    from ssdq.host.environment import format_environment

    if backends:
        from ssdq.backends import backend_module

        for name in backends:  # a missing runtime fails now, not after the evaluations
            if name != "mxnet":
                backend_module(name).runtime_info()
    if eval_set is None or calib_set is None:
        if os.path.normpath(data_root) == os.path.normpath(DEFAULT_ROOT):
            ensure_synthetic(data_root, progress=progress)
        eval_set = eval_set if eval_set is not None else open_dataset(data_root, eval_split)
        calib_set = calib_set if calib_set is not None else open_dataset(data_root, calib_split)
    eval_split, calib_split = eval_set.split, calib_set.split

    fp32_prefix = os.path.join(model_dir, "converted")
    int8_prefix = os.path.join(model_dir, "quantized")
    echo("[1/4] convert %s -> %s" % (model, fp32_prefix))
    convert(fp32_prefix, model=model, params_file=params_file)
    echo("[2/4] calibrate (%s, %d x %d images of %r) and quantize -> %s"
         % (calib_mode, num_calib_batches, batch_size, calib_split, int8_prefix))
    quantize(fp32_prefix, int8_prefix, calib_set, calib_mode=calib_mode,
             num_calib_batches=num_calib_batches, batch_size=batch_size,
             exclude_match=exclude_match, num_workers=num_workers, progress=progress)
    results = {}
    for step, (precision, prefix) in enumerate((("fp32", fp32_prefix), ("int8", int8_prefix)), 3):
        echo("[%d/4] evaluate %s on %d images of %r" % (step, precision, len(eval_set), eval_split))
        # no separate timing: the bench below times fp32 and int8 in turns
        results[precision] = evaluate_checkpoint(prefix, eval_set, batch_size, num_workers,
                                                 progress=progress, speed_repeats=0)
        echo(format_result(results[precision]))

    runtimes = list(dict.fromkeys(["mxnet"] + list(backends))) if backends else ["mxnet"]
    echo("[bench] fp32 vs int8, network and end to end, batch %d%s" % (
        REPRODUCE_BENCH_BATCH, "" if not backends else ", on " + ", ".join(runtimes)))
    bench = benchmark([(fp32_prefix, int8_prefix)], eval_set, precisions=("fp32", "int8"),
                      scopes=("network", "end_to_end", "end_to_end_gluoncv"),
                      batch_sizes=(REPRODUCE_BENCH_BATCH,), warmup=1, repeats=5,
                      num_workers=num_workers, progress=progress, backends=runtimes)
    write_bench(bench, os.path.join(out_dir, "bench.json"))

    environment = bench["environment"]
    calibration = {"mode": calib_mode, "batches": num_calib_batches, "batch_size": batch_size,
                   "images": num_calib_batches * batch_size,
                   "dataset": calib_set.subset(num_calib_batches * batch_size).describe(),
                   "same_split_as_eval": _same_images(calib_set, eval_set)}
    report = build_report(results["fp32"], results["int8"], environment, threads, calibration,
                          eval_set.describe(), bench={k: v for k, v in bench.items()
                                                      if k != "environment"})
    if backends:
        from ssdq.backends.evaluate import evaluate_backends, int8_map_spread, markdown_table

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
