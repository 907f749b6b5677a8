"""Benchmarks that write JSON: img/s by precision, scope and batch size, measured, not assumed.

The machine is shared and noisy, so each figure is the median of ``repeats`` timed runs after
``warmup`` untimed ones (oneDNN creates its primitives and reorders int8 weights on the first
run), with min/max and latency percentiles beside it; the precisions of one scope and batch size
are timed in turns, so a slow spell hits them alike, and speed-ups are ratios of those medians.
Memory: ``peak_rss_mb`` is the process's peak while a graph is bound and warmed up (the graphs
of its scope and batch bound before it still alive), ``rss_increase_mb`` what that graph added.

Precisions: ``fp32`` (the oneDNN-fused graph, the honest baseline), ``fp32_unfused`` (what
GluonCV's published 5.96x was measured against), ``bf16`` (MXNet AMP; needs AVX512-BF16, else
the record holds oneDNN's error) and ``int8``. Scopes: ``network`` (up to the raw class and box
predictions), ``end_to_end`` (through decode + NMS, the fast vectorised tail ssdq evaluates
with), ``end_to_end_gluoncv`` (the checkpoint's own per-class tail, the "before"), and
``eval_loop`` (JPEG decode + resize + network + NMS over real images: img/s as a user sees it).

Other int8 graphs of the same fp32 weights (GluonCV's shipped ``*_int8-symbol.json``, say) are
timed in the same turns as extra precisions ``int8_LABEL``; ``speedup`` then also holds
``SCOPE_int8_LABEL_vs_fp32`` and ``SCOPE_int8_vs_int8_LABEL`` (ssdq's int8 over theirs).
Each graph is fed what its checkpoint's ``input_format`` says (a graph with GluonCV's
preprocessing baked in gets the resized 0..255 images, NHWC), cut from one pool of images.
"""
import dataclasses
import gc
import json
import os
import re
import time

import mxnet as mx
import numpy as np
from tqdm import tqdm

from ssdq.backends import mxnet_backend
from ssdq.backends.remote import Standalone, close_workers
from ssdq.backends.runners import check_installed, prepare, runtime_info, supports
from ssdq.bench.options import DEFAULT_BATCH_SIZES, PRECISIONS, SCOPES
from ssdq.bench.profile import markdown as profile_markdown
from ssdq.bench.profile import profile_ops
from ssdq.data.loader import iterate_batches
from ssdq.data.transforms import resize
from ssdq.errors import SsdqError, first_line
from ssdq.fileio import figure, markdown_table, utc_now, write_artifacts
from ssdq.host.cpus import read_thread_placement
from ssdq.host.environment import environment_report, format_environment
from ssdq.model.checkpoint import (
    checkpoint_files,
    checkpoint_size_mb,
    load_checkpoint,
    resolve_prefix,
)
from ssdq.model.convert import export_checkpoint
from ssdq.model.graph import deployed_weights_mb, quantized_conv_nodes
from ssdq.model.ssd import feature_convs, keep_ratios, pruned_zoo_ssd, random_zoo_ssd
from ssdq.model.tail import graph_tail
from ssdq.optional import MissingRuntimeError
from ssdq.quant.options import CalibOptions
from ssdq.quant.quantize import quantize
from ssdq.timing import PeakRss, Stopwatch, latency_percentiles, summarize, timed

SPEEDUP_BATCH_SIZE = 8


def runner_scope(scope):
    """The runner scope a bench scope times: the eval loop runs the end-to-end graph."""
    return "end_to_end" if scope == "eval_loop" else scope


def eval_loop_pass(runner, dataset, batch_size, num_workers=1, transform=None):
    """One pass over ``dataset`` as ``ssdq eval`` runs it (decode, resize, network, NMS);
    return (seconds for the pass, seconds for each batch). ``transform``: the checkpoint's
    ``input_format`` (default: the runner's own)."""
    batch_seconds = []
    transform = transform or runner.input_format
    with Stopwatch() as watch:
        for batch, _ in iterate_batches(dataset, batch_size, num_workers, transform):
            runner(batch)
            batch_seconds.append(watch.lap())
    return watch.seconds, batch_seconds


def nms_load(fp32_ckpt, batch):
    """How many (anchor, class) candidates pass the decoder's threshold per image, and how many
    of them enter NMS (its top-k): the post-processing work a benchmark really measured."""
    tail = graph_tail(fp32_ckpt.symbol)
    runner = prepare("mxnet", fp32_ckpt, "fp32", len(batch), "network")
    logits, _ = runner(fp32_ckpt.input_format.from_resized(batch))
    logits = logits.astype(np.float64)
    prob = np.exp(logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True))[..., 1:]
    above = (prob > tail["score_thresh"]).sum(axis=(1, 2))
    topk = tail["nms"]["topk"]
    into_nms = np.minimum(above, topk) if topk > 0 else above
    return {"candidates_per_image": int(prob.shape[1] * prob.shape[2]),
            "above_threshold_per_image_median": float(np.median(above)),
            "into_nms_per_image_median": float(np.median(into_nms)),
            "anchors_with_a_class_above_threshold": float((prob.max(-1) > tail["score_thresh"]).mean()),
            "score_threshold": tail["score_thresh"], "nms_topk": topk}


def graphs_of(fp32_ckpt, int8_ckpt, precisions, extra_int8=None, pruned=None):
    """The graphs a model's bench times: [(label, checkpoint, precision it runs as, backends
    that run it or None for all)]. ``fp32_unfused`` and ``bf16`` run from the fp32 checkpoint;
    ``int8_LABEL`` (``extra_int8``) and ``fp32_pruned``/``int8_pruned`` (``pruned``: an (fp32,
    int8) pair) are other MXNet graphs timed in the same turns."""
    graphs = []
    for precision in precisions:
        ckpt = int8_ckpt if precision == "int8" else fp32_ckpt
        graphs.append((precision, ckpt, precision, None))
    for label, ckpt in (extra_int8 or {}).items():
        graphs.append(("int8_" + label, ckpt, "int8", ("mxnet",)))
    for precision, ckpt in zip(("fp32", "int8"), pruned or ()):
        if precision in precisions:
            graphs.append((precision + "_pruned", ckpt, precision, ("mxnet",)))
    return graphs


@dataclasses.dataclass
class Case:
    """One graph to time: the record it fills (model, backend, precision label, scope, batch
    size), the checkpoint, and the precision it runs as."""
    record: dict
    checkpoint: object
    precision: str
    runner: object = None  # set while it is timed
    inputs: object = None


def time_in_turns(cases, images, warmup=2, repeats=5, eval_set=None, num_workers=1, bar=None,
                  standalone=False):
    """Time ``cases`` (of one scope and batch size) side by side, in turns: every case once per
    round, ``repeats`` rounds, so a slow spell on a shared machine hits them all alike; fill each
    case's record with the median img/s, its spread and latency percentiles, or the error that
    kept the graph from running. ``images``: resized RGB images the batch is cut from; the eval
    loop scope runs over ``eval_set`` instead. ``standalone``: each non-MXNet case's model is
    also timed in the same rounds by a fresh worker of its own, inside that process
    (``remote.Standalone``: the runtime's own speed, with nothing of ssdq's around it)."""
    live = []  # (record, one timed unit, timings)
    for case in cases:
        record, ckpt = case.record, case.checkpoint
        scope, batch_size = record["scope"], record["batch_size"]
        if bar is not None:
            bar.update(1)
        if ckpt is None:
            record["error"] = "no int8 checkpoint given"
            continue
        before = {t["tid"] for t in read_thread_placement()}
        try:
            with PeakRss() as rss:
                runner = prepare(record["backend"], ckpt, case.precision, batch_size,
                                 runner_scope(scope))
                inputs = runner.prepare_input(ckpt.input_format.from_resized(
                    _batch(images, batch_size)))
                for _ in range(max(1, warmup)):  # the first run creates oneDNN primitives
                    runner.run(inputs)
        except MissingRuntimeError:
            raise
        except (SsdqError, RuntimeError) as exc:  # MXNetError is a RuntimeError
            record["error"] = first_line(exc)
            continue
        started = [t for t in read_thread_placement(runner.pid) if t["tid"] not in before]
        record.update(graph=runner.graph, peak_rss_mb=round(rss.peak_mb, 1),
                      rss_increase_mb=round(rss.peak_mb - rss.start_mb, 1),
                      threads_started={"count": len(started), "cpus": sorted(
                          {c for t in started for c in t["cpus"] or ()})})
        case.runner, case.inputs = runner, inputs
        if scope == "eval_loop":
            unit = (lambda r, t, b: lambda: eval_loop_pass(r, eval_set, b, num_workers, t))(
                runner, ckpt.input_format, batch_size)
        else:
            unit = (lambda r, d: lambda: timed(r.run, d))(runner, inputs)
        live.append((record, unit, []))
        if standalone and record["backend"] != "mxnet" and scope != "eval_loop":
            alone = _standalone(runner, inputs, warmup)
            if isinstance(alone, str):
                record["standalone_error"] = alone
            else:
                live.append(({"standalone_of": record, "batch_size": batch_size,
                              "scope": scope, "alone": alone}, alone.timed_run, []))
    eval_loop = any(r["scope"] == "eval_loop" for r, _, _ in live)
    for _ in range(max(1, min(repeats, 3)) if eval_loop else repeats):
        for record, unit, timings in live:
            time.sleep(SETTLE_SECONDS)
            timings.append(unit())
    for record, _, timings in live:
        if "standalone_of" in record:
            record["alone"].close()
            _compare_standalone(record["standalone_of"],
                                summarize(record["batch_size"], timings, warmup))
        elif record["scope"] == "eval_loop":
            batch_size = record["batch_size"]
            record.update(summarize(len(eval_set), [t for t, _ in timings], warmup))
            # latency here: per batch, JPEG decoding included
            record.update(latency_percentiles([b for _, per_batch in timings for b in per_batch]),
                          batch_size=batch_size, images=len(eval_set))
        else:
            record.update(summarize(record["batch_size"], timings, warmup))
    for case in cases:
        case.runner = case.inputs = None
    live = runner = inputs = None  # free these executors before the next group binds its own
    gc.collect()
    return [case.record for case in cases]


STANDALONE_TOLERANCE = 0.05
# a pause before each timed turn: the threads of the turn before (libgomp's, ONNX Runtime's,
# OpenVINO's, in this process or a worker) spin a while after their work ends, and would take
# the cores from the next graph (on the thin model's short turns they made the ratios swing)
SETTLE_SECONDS = 0.05


def _standalone(runner, inputs, warmup):
    """A ``remote.Standalone`` of the runner's model, warmed up, or the line saying why not."""
    try:
        alone = Standalone(runner, np.asarray(inputs))
        for _ in range(max(1, warmup)):
            alone.timed_run()
        return alone
    except SsdqError as exc:
        return first_line(exc)


def _compare_standalone(record, alone):
    """Put the standalone figures (``alone``: ``summarize``'s) beside the record's own."""
    ratio = record["images_per_sec"] / alone["images_per_sec"]
    record.update(standalone_images_per_sec=alone["images_per_sec"],
                  standalone_images_per_sec_min=alone["images_per_sec_min"],
                  standalone_images_per_sec_max=alone["images_per_sec_max"],
                  in_process_vs_standalone=round(ratio, 3))
    if ratio < 1 - STANDALONE_TOLERANCE:
        record["warning"] = ("%s %s %s at batch %d runs at %.0f%% of its own speed in a fresh "
                             "process (%.2f vs %.2f img/s)" % (
                                 record["backend"], record["precision"], record["scope"],
                                 record["batch_size"], 100 * ratio, record["images_per_sec"],
                                 alone["images_per_sec"]))


def bench_model(name, fp32_ckpt, int8_ckpt, images, precisions=PRECISIONS, scopes=SCOPES,
                batch_sizes=DEFAULT_BATCH_SIZES, warmup=2, repeats=5, eval_set=None,
                num_workers=1, progress=True, extra_int8=None, backends=("mxnet",),
                pruned=None):
    """Time every (backend, graph, scope, batch size) of one model; return its records.

    For each (scope, batch size) the graphs of every backend are bound side by side and timed in
    turns (``time_in_turns``). ``images``: resized RGB images (N, H, W, 3) uint8 the timed
    batches are cut from, turned into each graph's input by its checkpoint's ``input_format``. A
    graph that cannot run (bf16 on a CPU without it, say) gets a record holding the error instead
    of a speed. ``extra_int8``: {label: int8 checkpoint} timed beside the others as precision
    ``int8_LABEL`` (on MXNet); ``pruned``: (fp32, int8) checkpoints of a pruned variant, timed
    as ``fp32_pruned`` and ``int8_pruned``. Every record names its ``backend``; a backend runs
    the precisions and scopes its module declares (``backends.supports``).
    """
    graphs = graphs_of(fp32_ckpt, int8_ckpt, precisions, extra_int8, pruned)
    groups = [[Case({"model": name, "backend": backend, "precision": label, "scope": scope,
                     "batch_size": batch_size}, ckpt, precision)
               for backend in backends for label, ckpt, precision, only in graphs
               if (only is None or backend in only)
               and supports(backend, precision, runner_scope(scope))]
              for scope in scopes for batch_size in batch_sizes
              if not (scope == "eval_loop" and eval_set is None)]
    records = []
    bar = tqdm(total=sum(len(cases) for cases in groups), desc="bench %s" % name,
               disable=not progress, unit="case")
    for cases in groups:
        standalone = bool(cases) and cases[0].record["batch_size"] == _nearest(
            batch_sizes, SPEEDUP_BATCH_SIZE)
        records += time_in_turns(cases, images, warmup, repeats, eval_set, num_workers, bar,
                                 standalone)
    bar.close()
    return records


def profile_model(name, fp32_ckpt, int8_ckpt, images, precisions, scopes, batch_size,
                  progress=True, extra_int8=None):
    """Per-operator profiles (``profile.profile_ops``, MXNet's profiler) of each graph and scope
    but the eval loop, at one batch size; a graph that cannot run is left out, as its bench
    record says."""
    batch = _batch(images, batch_size)
    cases = [(label, precision, s, ckpt)
             for s in scopes if s != "eval_loop"
             for label, ckpt, precision, _ in graphs_of(fp32_ckpt, int8_ckpt, precisions,
                                                         extra_int8)
             if ckpt is not None]
    profiles = []
    for label, precision, scope, ckpt in tqdm(cases, unit="case", desc="profile %s" % name,
                                              disable=not progress):
        try:
            data = mx.nd.array(ckpt.input_format.from_resized(batch))
            found = profile_ops(lambda: prepare("mxnet", ckpt, precision, batch_size,
                                                         scope), data)
        except mx.base.MXNetError:
            continue
        profiles.append({"model": name, "precision": label, "scope": scope,
                         "batch_size": batch_size, **found})
        gc.collect()
    return profiles


def _batch(images, batch_size):
    """The first ``batch_size`` images of the pool, cycling through it if it is smaller."""
    return np.resize(images, (batch_size,) + images.shape[1:])


def zoo_checkpoints(name, sample_set, model_dir="model", progress=True, widths_from=None,
                    widths_multiple=1):
    """fp32 and int8 checkpoints of a zoo SSD architecture with random weights (no download),
    made once and kept under ``model_dir``; the int8 one calibrated on 8 images of
    ``sample_set``, which also sets the class head's score distribution. ``widths_from``: a
    pruned checkpoint whose per-layer keep ratios the architecture gets (``pruned_zoo_ssd``),
    its widths rounded up to a multiple of ``widths_multiple`` channels."""

    fp32_prefix = os.path.join(model_dir, "bench-%s-random" % name)
    source = {"model": name}
    net = None
    if widths_from:
        ratios, num_scales = keep_ratios(load_checkpoint(widths_from).meta)
        net = pruned_zoo_ssd(name, ratios, num_scales, widths_multiple)
        fp32_prefix += "-pruned-%s" % os.path.basename(widths_from)
        if widths_multiple > 1:
            fp32_prefix += "-x%d" % widths_multiple
        source = {"model": name + " (pruned)", "widths_from": widths_from,
                  "keep_ratios": [round(r, 4) for r in ratios], "num_scales": num_scales,
                  "widths_multiple": widths_multiple,
                  "widths": [c._channels for c in feature_convs(net)]}
    int8_prefix = fp32_prefix + "-int8"
    sample = sample_set.subset(8)
    rebuilt = not _cached_matches(fp32_prefix, source)  # same name, other widths: stale
    if rebuilt:
        images, _ = next(iterate_batches(sample, 8))  # ssdq's NCHW normalisation, as exported
        net, share = random_zoo_ssd(name, images, net=net)
        export_checkpoint(net, dict(source, weights="random (ssdq bench), class head set "
                                    "so %.1f%% of anchors score a class above 0.01" % (100 * share)),
                          fp32_prefix)
    if rebuilt or not os.path.isfile(checkpoint_files(int8_prefix)["meta"]):
        quantize(fp32_prefix, int8_prefix, sample, CalibOptions(num_calib_batches=1), batch_size=8,
                 progress=progress)
    return fp32_prefix, int8_prefix


def _cached_matches(prefix, source):
    """Whether the checkpoint at ``prefix`` exists and was built from ``source`` (its meta holds
    the same model, widths, ...)."""
    meta_file = checkpoint_files(prefix)["meta"]
    if not os.path.isfile(meta_file):
        return False
    with open(meta_file) as f:
        meta = json.load(f)
    return all(meta.get(k) == v for k, v in source.items())


def benchmark(checkpoints, image_set, precisions=PRECISIONS, scopes=SCOPES,
              batch_sizes=DEFAULT_BATCH_SIZES, warmup=2, repeats=5, eval_images=64,
              num_workers=1, progress=True, profile=False, extra_int8=None, backends=("mxnet",),
              pruned=None):
    """Benchmark (fp32, int8 or None) pairs on images of ``image_set``; return the bench dict
    (records, speed-ups, models, environment) that ``write_bench`` saves. Each may be a prefix
    or a loaded ``Checkpoint``. ``extra_int8``: {label: int8 prefix or Checkpoint} of the same
    fp32 weights, timed beside the first pair's graphs. With ``profile``, it also holds
    per-operator ``profiles`` (MXNet's) at the speed-up batch size. ``backends``: the runtimes
    to time side by side (``backends.BACKENDS``). ``pruned``: an (fp32, int8) prefix pair timed
    in turns with the first model's graphs."""

    if not batch_sizes or min(batch_sizes) < 1 or warmup < 0 or repeats < 1:
        raise SsdqError("bench needs batch sizes >= 1, --warmup >= 0 and --repeats >= 1")
    unknown = sorted(set(precisions) - set(PRECISIONS)) + sorted(set(scopes) - set(SCOPES))
    if unknown:
        raise SsdqError("unknown precision or scope %s (precisions: %s; scopes: %s)" % (
            ", ".join(unknown), ", ".join(PRECISIONS), ", ".join(SCOPES)))
    check_installed(backends)  # an unknown or missing runtime fails here, before any work
    pool = image_set.subset(min(len(image_set), max(batch_sizes)))
    images = np.concatenate([b for b, _ in iterate_batches(pool, 64, num_workers, resize)])
    eval_set = image_set.subset(min(eval_images, len(image_set)))
    models, records, profiles = {}, [], []
    for index, (fp32_prefix, int8_prefix) in enumerate(checkpoints):
        fp32 = load_checkpoint(fp32_prefix)
        int8 = load_checkpoint(int8_prefix) if int8_prefix and "int8" in precisions else None
        extra = {label: load_checkpoint(p) for label, p in (extra_int8 or {}).items()} \
            if index == 0 else {}
        for label, ckpt in extra.items():
            if ckpt.precision != "int8":
                raise SsdqError("--extra-int8 %s=%s is a %s graph, not int8"
                                % (label, ckpt.prefix, ckpt.precision))
        name = fp32.meta.get("model", os.path.basename(fp32.prefix))
        if fp32.inferred:
            name = os.path.basename(fp32.prefix)
        models[name] = {
            "fp32": fp32.prefix, "int8": int8.prefix if int8 else None,
            "weights": fp32.meta.get("weights"),
            "classes": len(fp32.classes) or fp32.meta.get("num_classes"),
            "size_mb": {"fp32": round(checkpoint_size_mb(fp32.prefix, fp32.params_file), 2),
                        "int8": round(checkpoint_size_mb(int8.prefix, int8.params_file), 2)
                        if int8 else None},
            "deployed_weights_mb": {
                "fp32": round(deployed_weights_mb(fp32.symbol, fp32.arg_params), 2),
                "int8": round(deployed_weights_mb(int8.symbol, int8.arg_params), 2) if int8 else None},
            "nms_load": nms_load(fp32, images[:8]),
        }
        inferred = {k: c.meta_inferred for k, c in (("fp32", fp32), ("int8", int8))
                    if c is not None and c.inferred}
        if extra:
            models[name]["extra_int8"] = {label: extra_description(c) for label, c in extra.items()}
            inferred.update({"int8_" + label: c.meta_inferred for label, c in extra.items()
                             if c.inferred})
        if inferred:
            models[name]["meta_inferred"] = inferred
        pruned_pair = None
        if pruned and not records:
            pruned_pair = tuple(load_checkpoint(p) for p in pruned)
            models[name]["pruned"] = {"fp32": pruned[0], "int8": pruned[1],
                                      **{k: pruned_pair[0].meta.get(k) for k in
                                         ("widths_from", "keep_ratios", "num_scales",
                                          "widths_multiple", "widths")}}
        records += bench_model(name, fp32, int8, images, precisions, scopes, batch_sizes, warmup,
                               repeats, eval_set, num_workers, progress, extra, backends,
                               pruned=pruned_pair)
        if profile:
            batch = _nearest(batch_sizes, SPEEDUP_BATCH_SIZE)
            profiles += profile_model(name, fp32, int8, images, precisions, scopes, batch,
                                      progress, extra)
            if pruned_pair:
                profiles += profile_model(name + " (pruned)", *pruned_pair, images, precisions,
                                          scopes, batch, progress)
    by_model, batch = speedups(records)
    bench = {
        "created": utc_now(),
        "settings": {"backends": list(backends), "precisions": list(precisions),
                     "scopes": list(scopes),
                     "batch_sizes": list(batch_sizes), "warmup": warmup, "repeats": repeats,
                     "images": image_set.describe(), "eval_loop_images": len(eval_set)},
        "models": models, "records": records,
        "speedup": by_model.get(next(iter(models)), {}) if models else {},
        "speedup_by_model": by_model, "speedup_batch_size": batch,
        "environment": dict(environment_report(mxnet_backend.runtime_info()),
                            runtimes=runtime_info(backends)),
    }
    close_workers()  # the runtimes' worker processes: everything is timed and recorded
    bench["runtime_threads"] = runtime_threads(records)
    bench["runtime_threads"]["mxnet_openmp"] = {
        "threads": next((lib["num_threads"] for lib in bench["environment"]["openmp_runtimes"]),
                        None), "cores": bench["environment"]["cores_used"]}
    warnings = [r["warning"] for r in records if "warning" in r]
    if warnings:
        bench["warnings"] = warnings
    fastest = fastest_int8(records, batch)
    if fastest:
        bench["fastest_int8"] = fastest
    if profile:
        bench["profiles"] = profiles
    return bench


def bench_checkpoints(pairs, extra_specs=(), classes=None, params_file=None):
    """Load what ``ssdq bench`` was given: (fp32, int8) pairs and ``LABEL=PREFIX`` extra int8
    graphs. ``params_file`` binds a graph that has no weights of its own; an extra int8 graph
    without weights binds to the first fp32 checkpoint's. -> (pairs, {label: Checkpoint})."""
    def weights_for(prefix, fallback=None):
        own = checkpoint_files(resolve_prefix(prefix))["params"]
        return None if os.path.isfile(own) else (params_file or fallback)

    specs = []
    for spec in extra_specs:
        label, sep, prefix = spec.partition("=")
        if not sep or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9_.-]*", label) or not prefix:
            raise SsdqError("--extra-int8 %s: expected LABEL=PREFIX, e.g. "
                            "gluoncv=ssd_300_vgg16_atrous_voc_int8" % spec)
        if label in dict(specs):
            raise SsdqError("--extra-int8: label %r given twice" % label)
        specs.append((label, prefix))
    loaded = []
    for fp32_prefix, int8_prefix in pairs:
        fp32 = load_checkpoint(fp32_prefix, classes, weights_for(fp32_prefix))
        if int8_prefix and weights_for(int8_prefix) and \
                os.path.isfile(checkpoint_files(resolve_prefix(int8_prefix))["symbol"]):
            int8_prefix = load_checkpoint(int8_prefix, params_file=weights_for(int8_prefix))
        loaded.append((fp32, int8_prefix))
    extra = {}
    for label, prefix in specs:
        fp32 = loaded[0][0]
        fp32_weights = fp32.params_file or checkpoint_files(fp32.prefix)["params"]
        extra[label] = load_checkpoint(prefix, params_file=weights_for(prefix, fp32_weights))
    return loaded, extra


def extra_description(ckpt):
    """What the bench records of an extra int8 graph: where it came from and how it is made."""

    return {"symbol": ckpt.prefix + "-symbol.json", "params": ckpt.params_file,
            "quantized_conv_nodes": len(quantized_conv_nodes(ckpt.symbol)),
            "deployed_weights_mb": round(deployed_weights_mb(ckpt.symbol, ckpt.arg_params), 2),
            "nms": ckpt.meta.get("nms")}


def write_bench(bench, out_json):
    """``out_json`` plus the Markdown table and the plot beside it; return the three paths."""
    return tuple(write_artifacts(
        os.path.splitext(out_json)[0], bench,
        "# ssdq bench\n\n%s\n## Environment\n\n```\n%s\n```\n" % (
            markdown(bench), format_environment(bench["environment"])),
        lambda path: plot(bench, path)))


def speedups(records, batch_size=SPEEDUP_BATCH_SIZE):
    """Ratios of median img/s at ``batch_size`` (the nearest batch run if it was not), fused
    fp32 the denominator unless named otherwise."""
    ran = sorted({r["batch_size"] for r in records if "images_per_sec" in r})
    if not ran:
        return {}, None
    batch = _nearest(ran, batch_size)
    rate = {(r["model"], r["precision"], r["scope"]): r["images_per_sec"]
            for r in records if r["batch_size"] == batch and "images_per_sec" in r
            and r.get("backend", "mxnet") == "mxnet"}
    other = [r for r in records if r["batch_size"] == batch and "images_per_sec" in r
             and r.get("backend", "mxnet") != "mxnet"]
    out = {}
    for model in sorted({key[0] for key in rate}):
        figures = {}

        def ratio(name, numerator, denominator):
            if numerator in rate and denominator in rate:
                figures[name] = round(rate[numerator] / rate[denominator], 3)

        for scope in SCOPES:
            for precision in ("int8", "bf16"):
                ratio("%s_%s_vs_fp32" % (scope, precision), (model, precision, scope),
                      (model, "fp32", scope))
            ratio("%s_fp32_vs_fp32_unfused" % scope, (model, "fp32", scope),
                  (model, "fp32_unfused", scope))
            ratio("%s_int8_vs_fp32_unfused" % scope, (model, "int8", scope),
                  (model, "fp32_unfused", scope))
            for precision, dense in (("int8", "fp32"), ("int8", "int8"), ("fp32", "fp32")):
                ratio("%s_%s_pruned_vs_dense_%s" % (scope, precision, dense),  # timed in turns
                      (model, precision + "_pruned", scope), (model, dense, scope))
        extras = sorted({key[1] for key in rate if key[0] == model and key[1].startswith("int8_")})
        for scope in SCOPES:
            for extra in extras:
                ratio("%s_%s_vs_fp32" % (scope, extra), (model, extra, scope), (model, "fp32", scope))
                ratio("%s_int8_vs_%s" % (scope, extra), (model, "int8", scope), (model, extra, scope))
        for precision in list(PRECISIONS) + extras:
            ratio("fast_tail_vs_gluoncv_tail_%s" % precision, (model, precision, "end_to_end"),
                  (model, precision, "end_to_end_gluoncv"))
        for r in other:  # every other runtime against MXNet's fused fp32 in the same run
            if r["model"] == model and (model, "fp32", r["scope"]) in rate:
                figures["%s_%s_%s_vs_mxnet_fp32" % (r["scope"], r["backend"], r["precision"])] = \
                    round(r["images_per_sec"] / rate[model, "fp32", r["scope"]], 3)
            if r["model"] == model and r["precision"] == "int8" and \
                    (model, "int8", r["scope"]) in rate:  # MXNet's int8 against theirs
                figures["%s_mxnet_int8_vs_%s_int8" % (r["scope"], r["backend"])] = \
                    round(rate[model, "int8", r["scope"]] / r["images_per_sec"], 3)
        out[model] = figures
    return out, batch


def fastest_int8(records, batch):
    """Per model and scope, the backend whose int8 ran fastest at ``batch`` (the speed-up batch),
    and whether the same one is fastest when the other runtimes' standalone figures stand in
    for their in-process ones."""
    best, alone = {}, {}
    for r in records:
        if r["precision"] == "int8" and r["batch_size"] == batch and "images_per_sec" in r:
            key = "%s/%s" % (r["model"], r["scope"])
            backend = r.get("backend", "mxnet")
            if key not in best or r["images_per_sec"] > best[key]["images_per_sec"]:
                best[key] = {"backend": backend, "images_per_sec": r["images_per_sec"],
                             "batch_size": batch}
            rate = r.get("standalone_images_per_sec", r["images_per_sec"])
            if key not in alone or rate > alone[key][1]:
                alone[key] = (backend, rate)
    for key, entry in best.items():
        entry["fastest_standalone"] = alone[key][0]
        entry["agrees_with_standalone"] = alone[key][0] == entry["backend"]
    return best


def runtime_threads(records):
    """Per backend, the threads its runners started and the cores they may run on (read back
    from /proc), over every record that ran."""
    out = {}
    for r in records:
        started = r.get("threads_started")
        if started:
            entry = out.setdefault(r["backend"], {"threads_started_max": 0, "cpus": set()})
            entry["threads_started_max"] = max(entry["threads_started_max"], started["count"])
            entry["cpus"].update(started["cpus"])
    return {k: dict(v, cpus=sorted(v["cpus"])) for k, v in out.items()}


def _nearest(batch_sizes, batch_size):
    return min(batch_sizes, key=lambda b: (abs(b - batch_size), b))


def markdown(bench):
    """The records and speed-ups as Markdown tables."""
    rows = []
    for r in bench["records"]:
        head = [r["model"], r.get("backend", "mxnet"), r["precision"], r["scope"],
                str(r["batch_size"])]
        if "images_per_sec" in r:
            lat = r["latency_ms"]
            alone = r.get("standalone_images_per_sec")
            rows.append(head + ["%.2f" % r["images_per_sec"],
                                "%.2f-%.2f" % (r["images_per_sec_min"], r["images_per_sec_max"]),
                                "%.2f (%.2fx)" % (alone, r["in_process_vs_standalone"])
                                if alone else "-",
                                "%.0f / %.0f / %.0f" % (lat["p50"], lat["p90"], lat["p99"]),
                                "%.0f" % r["peak_rss_mb"]])
        else:
            rows.append(head + ["-", "-", "-", "-", "error: " + r["error"][:80]])
    lines = [markdown_table(("model", "backend", "precision", "scope", "batch", "img/s (median)",
                             "min-max", "standalone img/s (in-process ratio)",
                             "latency ms p50 / p90 / p99", "peak RSS MB"), rows),
             "", "Speed-ups at batch %s (ratios of median img/s within this run):"
             % bench["speedup_batch_size"], "",
             markdown_table(("model", "figure", "ratio"), [
                 (model, k, "%.2fx" % v) for model, figures in bench["speedup_by_model"].items()
                 for k, v in figures.items()])]
    if len(bench.get("settings", {}).get("backends", ["mxnet"])) > 1:
        lines += ["", runtime_table(bench)]
    for key, best in sorted(bench.get("fastest_int8", {}).items()):
        lines += ["", "Fastest int8 (%s, batch %d): **%s**, %.2f img/s%s." % (
            key, best["batch_size"], best["backend"], best["images_per_sec"],
            "" if best.get("agrees_with_standalone", True) else
            " (standalone, %s is faster)" % best["fastest_standalone"])]
    for warning in bench.get("warnings", ()):
        lines += ["", "**Warning:** %s." % warning]
    for model, info in bench["models"].items():
        load = info.get("nms_load")
        if load:
            lines += ["", "%s: %.0f of %d (anchor, class) candidates an image pass the %.2f score "
                      "threshold (median), %.0f enter NMS (top-k %d)." % (
                          model, load["above_threshold_per_image_median"],
                          load["candidates_per_image"], load["score_threshold"],
                          load["into_nms_per_image_median"], load["nms_topk"])]
    if bench.get("profiles"):
        lines += ["", "## Where the time goes (MXNet profiler, slowest operators)",
                  profile_markdown(bench["profiles"])]
    return "\n".join(lines) + "\n"


def runtime_table(bench):
    """One row per (model, scope, backend) at the speed-up batch: img/s of each precision and
    the speed-up of each against MXNet's fused fp32 of the same run."""
    batch = bench["speedup_batch_size"]
    rate = {}
    for r in bench["records"]:
        if r["batch_size"] == batch:
            rate[r["model"], r["scope"], r.get("backend", "mxnet"), r["precision"]] = \
                r.get("images_per_sec")
    precisions = [p for p in ("fp32", "bf16", "int8") if any(k[3] == p for k in rate)]
    rows = []
    for model, scope, backend in sorted({k[:3] for k in rate}, key=lambda k: (
            k[0], SCOPES.index(k[1]), k[2] != "mxnet", k[2])):
        base = rate.get((model, scope, "mxnet", "fp32"))
        cells = []
        for p in precisions:
            value = rate.get((model, scope, backend, p))
            cells.append("" if value is None else "%.2f (%.2fx)" % (value, value / base)
                         if base else "%.2f" % value)
        rows.append([model, scope, backend] + cells)
    table = markdown_table(["model", "scope", "backend"] + [
        "%s img/s (vs MXNet fp32)" % p for p in precisions], rows)
    return "Batch %s, img/s (median) and the ratio to MXNet's fused fp32 timed in turns in " \
           "this run:\n\n%s" % (batch, table)


def plot(bench, path):
    """img/s against batch size, one line per (model, backend, precision, scope)."""
    lines = {}
    for r in bench["records"]:
        if "images_per_sec" in r:
            lines.setdefault((r["model"], r.get("backend", "mxnet"), r["precision"], r["scope"]),
                             []).append((r["batch_size"], r["images_per_sec"]))
    with figure(path) as (_, ax):
        for (model, backend, precision, scope), points in sorted(lines.items()):
            points.sort()
            label = "%s%s %s %s" % ("" if backend == "mxnet" else backend + " ", precision,
                                    scope, "" if len(bench["models"]) == 1 else model)
            ax.plot([b for b, _ in points], [v for _, v in points], marker="o",
                    linestyle="-" if precision.startswith("int8") else "--", label=label.strip())
        ax.set_xscale("log", base=2)
        ax.set_xlabel("batch size")
        ax.set_ylabel("images/s (median)")
        ax.set_title("ssdq bench")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    return path
