"""Run a detector over a dataset split and score it: the one evaluation loop of ssdq.

``detect(forward, dataset, evaluator, ...)`` works for anything with the SSD output triple
``(class ids, scores, boxes)``: a training-time Gluon net or a runner of a loaded fp32/int8
checkpoint (``backends.prepare``). Batches come from ``data.loader.iterate_batches`` (decoded
one batch ahead, image ids carried, the last partial batch kept). ``score(checkpoint, ...)`` is
the short way for a checkpoint on MXNet: its metrics, nothing else.
"""
import numpy as np
from tqdm import tqdm

from ssdq.backends.runners import prepare
from ssdq.data.loader import iterate_batches
from ssdq.data.options import DEFAULT_BATCH_SIZE
from ssdq.data.transforms import INPUT_SIZE, preprocess
from ssdq.eval.metrics import evaluator_for
from ssdq.timing import Stopwatch, per_second, timed_call

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
    indices (the evaluator's class match maps them onto the dataset's). The timing holds the
    wall time, the time in ``forward`` and each batch's (``batches``).
    """
    evaluator.reset()
    compute_s, images, batch_seconds = 0.0, 0, []
    with Stopwatch() as wall:
        bar = tqdm(total=len(dataset), desc=desc, unit="img", disable=not progress, leave=False)
        for batch, records in iterate_batches(dataset, batch_size, num_workers, transform):
            (ids, scores, boxes), seconds = timed_call(forward, batch)
            compute_s += seconds
            batch_seconds.append((len(batch), seconds))
            labels_out, scores_out, boxes_out, input_boxes = [], [], [], []
            for k, rec in enumerate(records):
                keep = (ids[k, :, 0] >= 0) & (scores[k, :, 0] >= score_threshold)
                labels_out.append(ids[k, keep, 0].astype(np.int64))
                scores_out.append(scores[k, keep, 0])
                input_boxes.append(boxes[k, keep])
                boxes_out.append(to_image_coords(boxes[k, keep], rec))
            evaluator.process([r.image_id for r in records], labels_out, scores_out, boxes_out,
                              input_boxes=input_boxes,
                              image_sizes=[(r.width, r.height) for r in records])
            images += len(records)
            bar.update(len(records))
        bar.close()
    metrics = evaluator.evaluate()
    timing = {"images": images, "wall_s": wall.seconds, "compute_s": compute_s,
              "images_per_sec": per_second(images, wall.seconds),
              "network_images_per_sec": per_second(images, compute_s),
              "batches": [{"images": n, "seconds": sec} for n, sec in batch_seconds]}
    return metrics, timing


def score(ckpt, dataset, match=None, batch_size=DEFAULT_BATCH_SIZE, num_workers=1,
          precision=None, progress=False, desc="eval"):
    """The metrics of a loaded checkpoint on ``dataset`` (MXNet, end to end). ``match``: the
    dataset's ``ClassMatch`` onto the model's classes; ``precision``: how to run it (default:
    the checkpoint's own; ``fp32_unfused`` for a graph with simulated rounding ops)."""
    runner = prepare("mxnet", ckpt, precision or ckpt.precision,
                     max(1, min(batch_size, len(dataset))), "end_to_end")
    metrics, _ = detect(runner, dataset, evaluator_for(dataset, match), runner.batch_size,
                        num_workers, progress, desc=desc, transform=ckpt.input_format)
    return metrics
