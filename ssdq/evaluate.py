"""Run a detector over a dataset split and score it: the one evaluation loop of ssdq.

``detect(forward, dataset, evaluator, ...)`` works for anything with the SSD output triple
``(class ids, scores, boxes)``: a training-time Gluon net or a loaded fp32/int8 checkpoint.
Batches come from ``data.loader.iterate_batches`` (decoded one batch ahead, image ids carried,
the last partial batch kept).
"""
import time

import numpy as np
from tqdm import tqdm

from .data.loader import iterate_batches
from .data.transforms import INPUT_SIZE

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
           desc="eval", score_threshold=SCORE_THRESHOLD):
    """Feed every image through ``forward`` and return (metrics dict, timing dict).

    ``forward`` takes an NCHW float32 numpy batch and returns numpy (ids, scores, boxes) shaped
    (N, K, 1), (N, K, 1), (N, K, 4) in network-input pixels.
    """
    evaluator.reset()
    compute_s, images = 0.0, 0
    start = time.perf_counter()
    bar = tqdm(total=len(dataset), desc=desc, unit="img", disable=not progress, leave=False)
    for batch, records in iterate_batches(dataset, batch_size, num_workers):
        t0 = time.perf_counter()
        ids, scores, boxes = forward(batch)
        compute_s += time.perf_counter() - t0
        labels_out, scores_out, boxes_out = [], [], []
        for k, rec in enumerate(records):
            keep = (ids[k, :, 0] >= 0) & (scores[k, :, 0] >= score_threshold)
            labels_out.append(ids[k, keep, 0].astype(np.int64))
            scores_out.append(scores[k, keep, 0])
            boxes_out.append(to_image_coords(boxes[k, keep], rec))
        evaluator.process([r.image_id for r in records], labels_out, scores_out, boxes_out)
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
                        speed_repeats=5, backend="mxnet"):
    """Score a checkpoint on ``dataset`` and time its forward pass; return a result dict.
    ``backend``: the runtime it runs on (``backends.BACKENDS``)."""
    from .timing import time_forward
    from .checkpoint import checkpoint_size_mb, load_checkpoint
    from .data.dataset import check_classes
    from .metrics import evaluator_for
    from .predictor import Predictor
    from .quantize import deployed_weights_mb

    ckpt = load_checkpoint(prefix)
    check_classes(dataset, ckpt.classes)
    if backend == "mxnet":
        predictor = Predictor(ckpt, batch_size)
    else:
        from .backends import prepare

        predictor = prepare(backend, ckpt.prefix, ckpt.precision, batch_size, "end_to_end")
    metrics, timing = detect(predictor, dataset, evaluator_for(dataset), batch_size, num_workers,
                             progress, desc="eval %s %s" % (backend, ckpt.precision))
    speed_batch, _ = next(iterate_batches(dataset.subset(batch_size), batch_size, num_workers))
    speed = time_forward(predictor, speed_batch, warmup=1, repeats=speed_repeats)
    return {
        "checkpoint": ckpt.prefix, "precision": ckpt.precision, "graph": predictor.graph,
        "backend": backend,
        "dataset": dataset.describe(), "metric": "coco" if dataset.fmt == "coco" else "voc07",
        **{k: v for k, v in metrics.items() if k != "summary"},
        "images_per_sec": speed["images_per_sec"], "speed": speed,
        "eval_loop": timing, "size_mb": round(checkpoint_size_mb(ckpt.prefix), 3),
        "deployed_weights_mb": round(deployed_weights_mb(ckpt.symbol, ckpt.arg_params), 3),
        "coco_summary": metrics.get("summary"),
    }


def format_result(result):
    """The recipe's printout: the mAP block, AP50/AP75 and per-class AP, in percent."""
    if result["metric"] == "coco":
        lines = ["~~~~ MeanAP @ IoU=[0.50,0.95] ~~~~", "%.1f" % result["map"],
                 "AP50 %.1f   AP75 %.1f" % (result["ap50"], result["ap75"])]
    else:
        lines = ["~~~~ VOC07 mAP @ IoU=0.50 (11-point) ~~~~", "%.1f" % result["map"]]
    lines += ["%-16s %.1f" % (name, ap) for name, ap in result["per_class"].items()]
    lines.append("%s: %.1f img/s (batch %d, median of %d)" % (
        result["graph"], result["images_per_sec"], result["speed"]["batch_size"],
        result["speed"]["repeats"]))
    return "\n".join(lines)
