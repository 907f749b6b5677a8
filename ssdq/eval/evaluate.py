"""Score a checkpoint on a dataset (``ssdq eval``): mAP in both COCO conventions or VOC07, the
checkpoint's size, and the speed of its forward pass at the batch size it ran.

The images go through ``eval.loop.detect`` on a runner of the checkpoint's backend
(``backends.prepare``), or in shards on a scale-out engine (``eval.sharded``).
"""
from ssdq.backends.runners import prepare
from ssdq.data.classmap import match_classes
from ssdq.data.loader import iterate_batches
from ssdq.data.options import DEFAULT_BATCH_SIZE
from ssdq.eval.loop import detect
from ssdq.eval.metrics import evaluator_for
from ssdq.eval.sharded import sharded_detect
from ssdq.fileio import write_json
from ssdq.model.checkpoint import checkpoint_size_mb, load_checkpoint
from ssdq.model.graph import deployed_weights_mb
from ssdq.scaleout.engine import LocalEngine, ray_block
from ssdq.timing import Stopwatch, summarize, time_forward


def evaluate_checkpoint(prefix, dataset, batch_size=DEFAULT_BATCH_SIZE, num_workers=1,
                        progress=True, speed_repeats=None, model_classes=None, shards=1,
                        engine=None, backend="mxnet", save_detections=None):
    """Score a checkpoint (a prefix or a loaded ``Checkpoint``) on ``dataset`` and time its
    forward pass; return a result dict.

    Dataset classes are matched to the model's by name (``data.classmap``); ``model_classes``
    overrides the checkpoint's list. The speed (``speed``, ``images_per_sec``) is by default
    the median of the eval loop's own full batches through the network (the first left out as
    a warm-up), which costs nothing more; ``speed_repeats=N`` times N rounds at the batch size
    after scoring instead, ``0`` leaves the speed out (``reproduce`` times fp32 and int8 in
    turns instead); the eval loop's own img/s is always in ``eval_loop``.
    ``save_detections``: write the detections there as a COCO results list under the
    dataset's own ids (``ssdq score`` reads it).
    ``shards`` > 1 splits the images into shards run by ``engine`` (``scaleout.engine``: here,
    one after another, or as Ray tasks) and scores the merged detections once. ``backend``: the
    runtime it runs on (``backends.BACKENDS``)."""
    ckpt = load_checkpoint(prefix)
    match = match_classes(dataset, model_classes if model_classes is not None
                          else ckpt.require_classes())
    # bound for the largest batch it will run: a 3-image set costs 3 images, not a padded 64
    runner = prepare(backend, ckpt, ckpt.precision, max(1, min(batch_size, len(dataset))),
                     "end_to_end")
    scaleout = {}
    evaluator = evaluator_for(dataset, match)
    if shards > 1 or engine is not None:
        engine = engine or LocalEngine()
        metrics, timing, ranges, results = sharded_detect(
            ckpt, dataset, evaluator, engine, shards, batch_size, num_workers, progress, backend)
        scaleout = {"shards": [list(r) for r in ranges],
                    "ray": ray_block(engine, results, timing["wall_s"])}
    else:
        metrics, timing = detect(runner, dataset, evaluator, batch_size, num_workers, progress,
                                 desc="eval %s %s" % (backend, ckpt.precision),
                                 transform=ckpt.input_format)
    if save_detections:
        write_json(save_detections, evaluator.results())
    result = {
        "checkpoint": ckpt.prefix, "precision": ckpt.precision, "graph": runner.graph,
        "backend": backend,
        "dataset": dataset.describe(), "metric": "coco" if dataset.fmt == "coco" else "voc07",
        **{k: v for k, v in metrics.items() if k != "summary"},
        "eval_loop": timing, "eval_loop_images_per_sec": timing["images_per_sec"],
        "size_mb": round(checkpoint_size_mb(ckpt.prefix, ckpt.params_file), 3),
        "deployed_weights_mb": round(deployed_weights_mb(ckpt.symbol, ckpt.arg_params), 3),
        "coco_summary": metrics.get("summary"),
        "input": ckpt.input_format.describe(), **scaleout,
    }
    if ckpt.params_file:
        result["params_file"] = ckpt.params_file
    if ckpt.meta_inferred:
        result["meta_inferred"] = ckpt.meta_inferred
    if speed_repeats:
        with Stopwatch() as watch:
            speed_batch, _ = next(iterate_batches(dataset.subset(batch_size), batch_size,
                                                  num_workers, ckpt.input_format))
            speed = time_forward(runner, speed_batch, warmup=1, repeats=speed_repeats)
        speed.update(seconds=round(watch.seconds, 2), source="rounds after scoring")
    else:
        speed = None if speed_repeats == 0 else loop_speed(timing.get("batches", ()))
    if speed:
        result.update(images_per_sec=speed["images_per_sec"], speed=speed)
    return result


def loop_speed(batches):
    """The speed of the network as the eval loop ran it: the median over its full batches (the
    largest size it ran; the first left out as a warm-up when there are others), or None when
    no batch was timed."""
    if not batches:
        return None
    size = max(b["images"] for b in batches)
    full = [b["seconds"] for b in batches if b["images"] == size]
    timed_batches = full[1:] if len(full) > 1 else full
    return dict(summarize(size, timed_batches, warmup=len(full) - len(timed_batches)),
                seconds=0.0, source="eval loop")


def format_result(result):
    """The recipe's printout: the mAP block, AP50/AP75 and per-class AP, in percent.

    For COCO the ``MeanAP`` block is in GluonCV's convention (the one Intel's 24.059 is printed
    in, to three decimals); pycocotools' continuous convention follows, labelled."""
    if result["metric"] == "coco":
        lines = ["~~~~ MeanAP @ IoU=[0.50,0.95] ~~~~", "%.3f" % result["map_gluoncv"],
                 "AP50 %.3f   AP75 %.3f   (GluonCV's COCODetectionMetric convention: boxes "
                 "clipped to the 300x300 input, w/h + 1; compare with the recipe's 24.059)" % (
                     result["ap50_gluoncv"], result["ap75_gluoncv"]),
                 "pycocotools convention (w = x2 - x1): mAP %.3f   AP50 %.3f   AP75 %.3f" % (
                     result["map"], result["ap50"], result["ap75"])]
    else:
        lines = ["~~~~ VOC07 mAP @ IoU=0.50 (11-point) ~~~~", "%.1f" % result["map"]]
    lines += ["%-16s %.1f" % (name, ap) for name, ap in result["per_class"].items()]
    if result.get("model_classes_not_scored"):
        lines.append("scored on the dataset's %d classes only; detections of the model's other "
                     "%d classes dropped" % (len(result["classes_scored"]),
                                             result["model_classes_not_scored"]))
    speed = result.get("speed")
    if speed and speed.get("source") == "eval loop":
        lines.append("%s: %.1f img/s (network + NMS, batch %d, median of the eval loop's %d "
                     "timed batches, image decoding running beside them; --speed-repeats N "
                     "times N rounds after scoring, --no-speed drops this line)" % (
                         result["graph"], result["images_per_sec"], speed["batch_size"],
                         speed["repeats"]))
    elif speed:
        lines.append("%s: %.1f img/s (network + NMS, batch %d, median of %d; timed in %.1f s "
                     "after scoring, --no-speed skips it)" % (
                         result["graph"], result["images_per_sec"], speed["batch_size"],
                         speed["repeats"], speed["seconds"]))
    lines.append("eval loop (JPEG decode included): %.1f img/s" % result["eval_loop_images_per_sec"])
    return "\n".join(lines)
