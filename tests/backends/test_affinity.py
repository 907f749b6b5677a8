"""Every runtime gets the cores ssdq pinned, whatever ran before it: after MXNet's first parallel
region libgomp leaves the main thread on one core, and threads created afterwards would inherit
that one core (the image decoding threads; a runtime worker process started from it)."""
import json
import os
import subprocess
import sys

import pytest

from helpers import REPO

CODE = r"""
import json, os, sys
from ssdq.host import cpus
allowed = sorted(os.sched_getaffinity(0))
cpus.pin_threads(cores=allowed)
import mxnet as mx
import numpy as np
x = mx.nd.ones((8, 16, 64, 64))
mx.nd.Convolution(x, mx.nd.ones((16, 16, 3, 3)), kernel=(3, 3), num_filter=16,
                  no_bias=True).wait_to_read()
main_after_mxnet = sorted(os.sched_getaffinity(0))
from ssdq.backends.runners import prepare
runner = prepare(sys.argv[2], sys.argv[1], "int8", 2, "network")
assert runner.pid != os.getpid()  # the runtime runs in its worker process
started = {t["tid"]: t["cpus"] for t in cpus.read_thread_placement(runner.pid)}
main_now = sorted(os.sched_getaffinity(0))
def cpu_ticks(tid):
    try:
        with open("/proc/%d/task/%d/stat" % (runner.pid, tid)) as f:
            fields = f.read().rsplit(")", 1)[1].split()
        return int(fields[11]) + int(fields[12])  # utime + stime
    except OSError:
        return 0
ticks = {tid: cpu_ticks(tid) for tid in started}
# run until the pool threads gain clock ticks (10 ms each): ten batches on a quiet host, more
# when another process shares the cores (the CPU time a batch takes is the same, but a tick
# goes to whichever thread is running when the timer fires)
for done in range(1, 301):
    runner(np.zeros((2, 3, 300, 300), np.float32))
    if done >= 10 and any(cpu_ticks(tid) > ticks[tid] for tid in started):
        break
# the runtime's threads are the worker's threads that ran the inference
working = [started[tid] for tid in started if cpu_ticks(tid) > ticks[tid]]
from ssdq.data.dataset import open_dataset
from ssdq.data.loader import iterate_batches
seen = []
def transform(img):
    seen.append(sorted(os.sched_getaffinity(0)))
    return np.zeros((3, 8, 8), np.float32)
for _ in iterate_batches(open_dataset(sys.argv[3], "val").subset(4), 2, 2, transform):
    pass
print("@@" + json.dumps({"allowed": allowed, "main": main_after_mxnet,
                         "started": list(started.values()), "working": working,
                         "main_now": main_now, "decoders": seen}))
"""


@pytest.mark.parametrize("backend", ["onnxruntime", "openvino"])
def test_threads_started_after_mxnet_get_every_pinned_core(backend, int8_prefix, tiny_data):
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two CPUs to tell one core from all of them")
    from ssdq.backends.onnx_export import onnx_model_for

    model = onnx_model_for(int8_prefix)
    proc = subprocess.run([sys.executable, "-c", CODE, model, backend, tiny_data],
                          capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.split("@@", 1)[1])
    assert len(out["main"]) == 1  # what libgomp does to the main thread: the trap itself
    assert out["working"], "no thread the runtime started ran the inference"
    assert all(set(cores) <= set(out["allowed"]) for cores in out["working"]), out
    # the trap: every thread the runtime works on sits on the one core libgomp left the main
    # thread. A runtime may pin a thread to one of the pinned cores itself: OpenVINO does when
    # the host is busy (its one working thread then sits on [1] of [0, 1]); that is not the trap
    assert any(cores != out["main"] for cores in out["working"]), out
    assert out["decoders"] and all(cores == out["allowed"] for cores in out["decoders"]), out
    assert out["main_now"] == out["main"]  # and ssdq leaves MXNet's own binding as it was
