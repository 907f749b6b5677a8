"""Reading a split in batches: decode and resize one batch ahead of the network.

A thread pool decodes the next batch while the current one runs (OpenCV releases the GIL); each
batch carries its records (image ids, and the image size its boxes are mapped to: the decoded
one, checked against the annotation), and the last partial batch is kept. Each decoding thread
puts itself on every pinned core as it starts (``host.cpus.take_pinned_cores``), not on the one
core libgomp leaves the main thread once MXNet has run: the pool starts a thread only when no
idle one is free, so some start long after the first batch.
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ssdq.data.dataset import read_record_image
from ssdq.data.transforms import preprocess
from ssdq.host.cpus import take_pinned_cores


def iterate_batches(dataset, batch_size, num_workers=1, transform=preprocess):
    """Yield (array, records) for every image of ``dataset``, in order. ``transform`` turns a
    decoded RGB image into one network input: ssdq's NCHW normalisation unless a checkpoint's
    ``input_format`` says otherwise. Records come back with the decoded size when
    ``--allow-size-mismatch`` let it differ from the annotated one."""

    def load(record):
        img, record = read_record_image(record, getattr(dataset, "allow_size_mismatch", False))
        return transform(img), record

    records = dataset.records
    chunks = [records[i:i + batch_size] for i in range(0, len(records), batch_size)]
    with ThreadPoolExecutor(max(1, num_workers), initializer=take_pinned_cores) as pool:
        pending = [pool.map(load, chunks[0])] if chunks else []
        for i, chunk in enumerate(chunks):
            loaded = list(pending.pop())
            if i + 1 < len(chunks):
                pending.append(pool.map(load, chunks[i + 1]))
            yield np.stack([img for img, _ in loaded]), [rec for _, rec in loaded]
