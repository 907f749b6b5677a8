"""Reading a split in batches: decode and resize one batch ahead of the network.

A thread pool decodes the next batch while the current one runs (OpenCV releases the GIL); each
batch carries its records (image ids, and the image size its boxes are mapped to: the decoded
one, checked against the annotation), and the last partial batch is kept.
"""
from concurrent.futures import ThreadPoolExecutor
from functools import partial

import numpy as np

from .dataset import read_record_image
from .transforms import preprocess


def _load(record, allow_size_mismatch=False):
    img, record = read_record_image(record, allow_size_mismatch)
    return preprocess(img), record


def iterate_batches(dataset, batch_size, num_workers=1):
    """Yield (NCHW float32 array, records) for every image of ``dataset``, in order."""
    records = dataset.records
    load = partial(_load, allow_size_mismatch=getattr(dataset, "allow_size_mismatch", False))
    chunks = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
    with ThreadPoolExecutor(max(1, num_workers)) as pool:
        pending = [pool.map(load, chunks[0])] if chunks else []
        for i, chunk in enumerate(chunks):
            loaded = list(pending.pop())
            if i + 1 < len(chunks):
                pending.append(pool.map(load, chunks[i + 1]))
            yield np.stack([img for img, _ in loaded]), [rec for _, rec in loaded]
