"""Run a detector over a dataset split and score it: the one evaluation loop of ssdq.

``detect(forward, dataset, evaluator, ...)`` works for anything with the SSD output triple
``(class ids, scores, boxes)``: a training-time Gluon net or a loaded fp32/int8 checkpoint.
Batches come from ``data.loader.iterate_batches`` (decoded one batch ahead, image ids carried,
the last partial batch kept).
"""
import time

import numpy as np
from tqdm import tqdm

from ssdq.data.loader import iterate_batches
from ssdq.data.transforms import INPUT_SIZE, preprocess
from ssdq.errors import SsdqError

# gluoncv's COCODetectionMetric drops detections under this score before scoring.
SCORE_THRESHOLD = 0.05


def to_image_coords(boxes, record, size=INPUT_SIZE):
    """Network-input boxes -> boxes in the record's original pixels, clipped to the image."""
    scale = np.array([record.width, record.height, record.width, record.height], np.float32) / size
    out = boxes * scale
    np.clip(out[:, 0::2], 0, record.width, out=out[:, 0::2])
    np.clip(out[:, 1::2], 0, record.height, out=out[:, 1::2])
    return out


def detect(forward, dataset, evaluator, batch_size=64, num_workers=1, progress=True,
           desc="eval", score_threshold=SCORE_THRESHOLD, transform=preprocess):
    """Feed every image through ``forward`` and return (metrics dict, timing dict).

    ``forward`` takes a float32 numpy batch of ``transform``'d images (NCHW normalised by
    default; a checkpoint's ``input_format`` otherwise) and returns numpy (ids, scores, boxes)
    shaped (N, K, 1), (N, K, 1), (N, K, 4) in network-input pixels; ids are the model's class
    indices (the evaluator's class match maps them onto the dataset's).
    """
    evaluator.reset()
    compute_s, images = 0.0, 0
    start = time.perf_counter()
    bar = tqdm(total=len(dataset), desc=desc, unit="img", disable=not progress, leave=False)
    for batch, records in iterate_batches(dataset, batch_size, num_workers, transform):
        t0 = time.perf_counter()
        ids, scores, boxes = forward(batch)
        compute_s += time.perf_counter() - t0
        labels_out, scores_out, boxes_out, input_boxes = [], [], [], []
        for k, rec in enumerate(records):
            keep = (ids[k, :, 0] >= 0) & (scores[k, :, 0] >= score_threshold)
            labels_out.append(ids[k, keep, 0].astype(np.int64))
            scores_out.append(scores[k, keep, 0])
            input_boxes.append(boxes[k, keep])
            boxes_out.append(to_image_coords(boxes[k, keep], rec))
        evaluator.process([r.image_id for r in records], labels_out, scores_out, boxes_out,
                          input_boxes=input_boxes, image_sizes=[(r.width, r.height) for r in records])
        images += len(records)
        bar.update(len(records))
    bar.close()
    wall_s = time.perf_counter() - start
    metrics = evaluator.evaluate()
    timing = {"images": images, "wall_s": wall_s, "compute_s": compute_s,
              "images_per_sec": images / wall_s if wall_s else 0.0,
              "network_images_per_sec": images / compute_s if compute_s else 0.0}
    return metrics, timing


def evaluate_checkpoint(prefix, dataset, batch_size=64, num_workers=1, progress=True,
                        speed_repeats=5, model_classes=None, shards=1, engine=None,
                        backend="mxnet"):
    """Score a checkpoint (a prefix or a loaded ``Checkpoint``) on ``dataset`` and time its
    forward pass; return a result dict.

    Dataset classes are matched to the model's by name (``data.classmap``); ``model_classes``
    overrides the checkpoint's list. ``speed_repeats=0`` skips the timing (``reproduce`` times
    fp32 and int8 in turns instead); the eval loop's own img/s is always in ``eval_loop``.
    ``shards`` > 1 splits the images into shards run by ``engine`` (``scaleout.engine``: here,
    one after another, or as Ray tasks) and scores the merged detections once. ``backend``: the
    runtime it runs on (``backends.BACKENDS``)."""
    from ssdq.bench.timing import time_forward
    from ssdq.model.checkpoint import checkpoint_size_mb, load_checkpoint
    from ssdq.data.classmap import match_classes
    from ssdq.eval.metrics import evaluator_for
    from ssdq.model.predictor import Predictor
    from ssdq.quant.quantize import deployed_weights_mb

    ckpt = load_checkpoint(prefix)
    match = match_classes(dataset, model_classes if model_classes is not None
                          else ckpt.require_classes())
    sharded = shards > 1 or engine is not None
    if backend == "mxnet":
        predictor = Predictor(ckpt, batch_size)
    else:
        from ssdq.backends import prepare

        if sharded:
            raise SsdqError("--shards and --ray run MXNet; drop them for --backend %s" % backend)
        predictor = prepare(backend, ckpt.prefix, ckpt.precision, batch_size, "end_to_end")
    scaleout = {}
    if sharded:
        from ssdq.scaleout.engine import LocalEngine, ray_block
        from ssdq.scaleout.sharded_eval import sharded_detect

        engine = engine or LocalEngine()
        metrics, timing, ranges, results = sharded_detect(
            ckpt, dataset, evaluator_for(dataset, match), engine, shards, batch_size, num_workers,
            progress)
        scaleout = {"shards": [list(r) for r in ranges],
                    "ray": ray_block(engine, results, timing["wall_s"])}
    else:
        metrics, timing = detect(predictor, dataset, evaluator_for(dataset, match), batch_size,
                                 num_workers, progress,
                                 desc="eval %s %s" % (backend, ckpt.precision),
                                 transform=ckpt.input_format)
    result = {
        "checkpoint": ckpt.prefix, "precision": ckpt.precision, "graph": predictor.graph,
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
        speed_batch, _ = next(iterate_batches(dataset.subset(batch_size), batch_size, num_workers,
                                              ckpt.input_format))
        speed = time_forward(predictor, speed_batch, warmup=1, repeats=speed_repeats)
        result.update(images_per_sec=speed["images_per_sec"], speed=speed)
    return result


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
    if "speed" in result:
        lines.append("%s: %.1f img/s (network + NMS, batch %d, median of %d)" % (
            result["graph"], result["images_per_sec"], result["speed"]["batch_size"],
            result["speed"]["repeats"]))
    lines.append("eval loop (JPEG decode included): %.1f img/s" % result["eval_loop_images_per_sec"])
    return "\n".join(lines)
