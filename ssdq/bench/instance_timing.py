"""What one multi-instance process times, once ``instance.place`` has pinned it: load the
graph, warm up, write "ready" on the pipe the driver passed, wait for "go" on stdin (the
barrier: every instance starts timing together), time ``repeats`` forward passes, and read its
own placement back from the kernel: every thread's ``Cpus_allowed_list``
(``/proc/self/task/*/status``), ``Mems_allowed_list``, the memory policy (``get_mempolicy``) and
pages per node (``numa_maps``). The result is a JSON file.

Start/end times are a ``timing.Stopwatch``'s (``time.perf_counter()``, CLOCK_MONOTONIC on
Linux), one clock for every process of the host, so the driver can take the common wall time
from them.
"""
import os
import sys

import mxnet as mx
import numpy as np

from ssdq.backends.runners import prepare
from ssdq.bench.harness import runner_scope
from ssdq.fileio import write_json
from ssdq.host import cpus, mempolicy
from ssdq.host.topology import read_status
from ssdq.model.checkpoint import load_checkpoint
from ssdq.timing import Stopwatch, timed


def time_graph(spec, pinned):
    """The instance's measurements as a dict, or None if the driver gave up."""
    batch = mx.nd.array(np.load(spec["images"]))
    predictor = prepare("mxnet", load_checkpoint(spec["prefix"]), spec["precision"], len(batch),
                        runner_scope(spec["scope"]))
    for _ in range(max(1, spec["warmup"])):  # the first run creates oneDNN primitives
        predictor.run(batch)
    os.write(spec["ready_fd"], b"ready\n")
    os.close(spec["ready_fd"])
    if sys.stdin.readline().strip() != "go":
        return None  # the driver gave up (another instance failed)
    with Stopwatch() as window:
        seconds = [timed(predictor.run, batch) for _ in range(spec["repeats"])]

    threads = cpus.read_thread_placement()
    _, mems_allowed = read_status()
    return {"index": spec["index"], "pid": os.getpid(), "start": window.start, "end": window.end,
            "images": len(batch) * spec["repeats"], "batch_size": len(batch), "seconds": seconds,
            "threads": threads, "cpus_read_back": sorted({c for t in threads for c in t["cpus"]
                                                           or []}),
            "mems_allowed": mems_allowed, "memory_policy": mempolicy.read_policy(),
            "pages_per_node": mempolicy.numa_pages(), "pinning": pinned}


def run(spec, pinned):
    """Time the graph and write the result where the spec says; -> exit status."""
    result = time_graph(spec, pinned)
    if result is not None:
        write_json(spec["result"], result)
    return 0
