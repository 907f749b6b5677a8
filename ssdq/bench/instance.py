"""One instance of a multi-instance benchmark: ``python -m ssdq.bench.instance SPEC.json``.

A fresh interpreter per instance, because the placement has to be in force before mxnet (and
its OpenMP runtime) loads: widen the affinity to the driver's allowed CPUs (it inherited the
driver's pinning), reset the inherited memory policy, then ``cpus.pin_threads`` to this
instance's cores and memory node. Then load the graph, warm up, write "ready" on the pipe the
driver passed, wait for "go" on stdin (the barrier: every instance starts timing together), time
``repeats`` forward passes, and read its own placement back from the kernel: every thread's
``Cpus_allowed_list`` (``/proc/self/task/*/status``), ``Mems_allowed_list``, the memory policy
(``get_mempolicy``) and pages per node (``numa_maps``). The result is a JSON file.

Start/end times are a ``timing.Stopwatch``'s (``time.perf_counter()``, CLOCK_MONOTONIC on
Linux), one clock for every process of the host, so the driver can take the common wall time
from them.
"""
import json
import os
import sys

from ssdq.backends.runners import prepare
from ssdq.bench.harness import runner_scope
from ssdq.errors import SsdqError
from ssdq.fileio import write_json
from ssdq.host import cpus, mempolicy
from ssdq.host.topology import read_status
from ssdq.model.checkpoint import load_checkpoint
from ssdq.timing import Stopwatch, timed


def run(spec):
    cpus.set_process_affinity(spec["allowed_cpus"])
    try:
        mempolicy.set_mempolicy(mempolicy.MPOL_DEFAULT)  # not the driver's, inherited
    except OSError:
        pass
    pinned = cpus.pin_threads(cores=spec["cpus"], threads=spec["threads"],
                              membind=spec["membind"], strict=spec["strict"])
    import mxnet as mx
    import numpy as np

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


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        spec = json.load(f)
    try:
        result = run(spec)
    except SsdqError as exc:
        print("ssdq: error: %s" % exc, file=sys.stderr)
        return 2
    if result is not None:
        write_json(spec["result"], result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
