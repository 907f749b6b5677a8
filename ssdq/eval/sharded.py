"""Sharded evaluation: split the image list, detect shard by shard (as Ray tasks or here), merge
the detections in image order and score them once with the dataset's evaluator.

Shards are contiguous and cut at multiples of the batch size, so every shard's batches are the
very batches the unsharded loop feeds the network, and the merged detections (and so the mAP)
are the same to the last digit.
"""
from ssdq.backends.runners import prepare
from ssdq.eval.loop import detect
from ssdq.timing import Stopwatch, per_second


class DetectionRecorder:
    """An evaluator that keeps the detections instead of scoring them (for merging later)."""

    def reset(self):
        self.batches = []

    def process(self, image_ids, labels, scores, boxes, **extra):
        self.batches.append(((list(image_ids), labels, scores, boxes), extra))

    def evaluate(self):
        return {"batches": self.batches}


def shard_ranges(images, shards, batch_size):
    """[(start, stop), ...]: ``shards`` contiguous ranges of whole batches (fewer if the split has
    fewer batches than shards)."""
    batches = -(-images // batch_size)
    shards = max(1, min(shards, batches))
    bounds = [round(i * batches / shards) * batch_size for i in range(shards + 1)]
    return [(lo, min(hi, images)) for lo, hi in zip(bounds, bounds[1:]) if lo < hi]


def detect_shard(context, shard):
    """Ray task / local trial: the detections of images [start, stop) of the dataset."""
    checkpoint, dataset, batch_size, num_workers, backend = context
    start, stop = shard
    runner = prepare(backend, checkpoint, checkpoint.precision, batch_size, "end_to_end")
    metrics, timing = detect(runner, dataset.shard(start, stop), DetectionRecorder(),
                             batch_size, num_workers, progress=False,
                             transform=checkpoint.input_format)
    return {"batches": metrics["batches"], "timing": timing}


def sharded_detect(checkpoint, dataset, evaluator, engine, shards, batch_size=64,
                   num_workers=1, progress=True, backend="mxnet"):
    """Like ``evaluate.detect`` over ``shards`` shards run by ``engine``; returns
    (metrics, timing, shard ranges, per-shard engine results)."""
    ranges = shard_ranges(len(dataset), shards, batch_size)
    with Stopwatch() as wall:
        results = engine.map(detect_shard, (checkpoint, dataset, batch_size, num_workers,
                                            backend), ranges, progress=progress, desc="eval shards")
    evaluator.reset()
    for result in results:
        for args, extra in result["value"]["batches"]:
            evaluator.process(*args, **extra)
    metrics = evaluator.evaluate()
    images = sum(r["value"]["timing"]["images"] for r in results)
    timing = {"images": images, "wall_s": wall.seconds,
              "images_per_sec": per_second(images, wall.seconds),
              "shard_seconds": [r["value"]["timing"]["wall_s"] for r in results]}
    return metrics, timing, ranges, results
