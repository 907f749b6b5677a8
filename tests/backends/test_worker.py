"""ONNX Runtime and OpenVINO run in a worker process that never loads MXNet: what it imports,
what a dead worker or a broken model looks like to the user, and its speed against the same
runtime on its own, in turns, after MXNet has run in ssdq's process."""
import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

from ssdq.backends import remote
from ssdq.backends.runners import prepare
from ssdq.errors import SsdqError

from helpers import REPO

OTHERS = ("onnxruntime", "openvino")


def test_the_worker_and_the_runtimes_never_import_mxnet():
    code = ("import sys, ssdq.backends.worker, ssdq.backends.onnxruntime_backend, "
            "ssdq.backends.openvino_backend; "
            "print(sorted(m for m in ('mxnet', 'gluoncv', 'cv2') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, env=dict(os.environ, PYTHONPATH=REPO))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[]"


@pytest.mark.parametrize("backend", OTHERS)
def test_a_runner_runs_in_a_worker_without_libmxnet(backend, int8_prefix):
    runner = prepare(backend, int8_prefix, "int8", 2, "network")
    try:
        assert runner.pid != os.getpid()
        with open("/proc/%d/maps" % runner.pid) as f:
            maps = f.read()
        assert "libmxnet" not in maps and backend in maps  # the runtime is there, MXNet is not
        logits, offsets = runner(np.zeros((2, 3, 300, 300), np.float32))
        assert logits.shape[0] == 2 and offsets.shape[-1] == 4
    finally:
        remote.close_workers()


def test_a_worker_that_dies_is_one_line_naming_the_runtime(int8_prefix):
    runner = prepare("openvino", int8_prefix, "int8", 2, "network")
    batch = runner.prepare_input(np.zeros((2, 3, 300, 300), np.float32))
    runner.run(batch)
    os.kill(runner.pid, signal.SIGKILL)
    with pytest.raises(SsdqError) as err:
        runner.run(batch)
    message = str(err.value)
    assert "openvino worker process" in message and "SIGKILL" in message
    assert "\n" not in message
    # the next runner gets a new worker
    again = prepare("openvino", int8_prefix, "int8", 2, "network")
    assert again.pid != runner.pid
    folder = again.worker.folder
    remote.close_workers()  # and closing removes its shared buffers
    assert not os.path.exists(folder)


def test_a_model_the_runtime_cannot_read_is_one_line(tmp_path):
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(b"not a model")
    with pytest.raises(SsdqError) as err:
        prepare("onnxruntime", str(broken), "int8", 2, "network")
    assert str(err.value).startswith("onnxruntime: ") and "\n" not in str(err.value)
    remote.close_workers()


SPEED = r"""
import json, os, sys
from ssdq.host import cpus
cpus.pin_threads(cores=sorted(os.sched_getaffinity(0)))
import mxnet as mx
from ssdq.bench.harness import benchmark
from ssdq.data.dataset import open_dataset
bench = benchmark([(sys.argv[1], sys.argv[2])], open_dataset(sys.argv[3], "val"),
                  precisions=("fp32", "int8"), scopes=("network",), batch_sizes=(16,),
                  warmup=2, repeats=15, progress=False,
                  backends=("mxnet", "onnxruntime", "openvino"))
print("@@" + json.dumps({"records": bench["records"], "fastest": bench["fastest_int8"]}))
"""


def _speed_run(fp32_prefix, int8_prefix, tiny_data):
    proc = subprocess.run([sys.executable, "-c", SPEED, fp32_prefix, int8_prefix, tiny_data],
                          capture_output=True, text=True, cwd=REPO,
                          env=dict(os.environ, PYTHONPATH=REPO), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.split("@@", 1)[1])


def _slower(out):
    """The records of other runtimes under 0.9 of their own speed, and a fastest-int8 choice the
    standalone figures contradict."""
    slow = [r for r in out["records"] if r["backend"] in OTHERS
            and r["in_process_vs_standalone"] < 0.9]
    fastest = next(iter(out["fastest"].values()))
    return slow + ([fastest] if not fastest["agrees_with_standalone"] else [])


def test_other_runtimes_run_at_their_own_speed_in_ssdq(fp32_prefix, int8_prefix, tiny_data):
    """After MXNet has run in ssdq's process (pinned, two cores), each runtime's figure and the
    same model timed alone in a fresh process, in turns: within 10%, and the fastest int8
    runtime is the one the standalone figures name. Batch 16: on this thin model a batch of 8
    takes OpenVINO int8 about 24 ms, of which the message each way and the outputs' copy into
    shared memory take about 1.3 ms. A shared host can slow one turn more than the other: a run
    that misses is measured once more, and the second run decides (a loss of ssdq's own, like
    the half speed OpenVINO had beside MXNet, misses both)."""
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("one CPU: the thread-placement loss this guards against cannot show")
    out = _speed_run(fp32_prefix, int8_prefix, tiny_data)
    if _slower(out):
        out = _speed_run(fp32_prefix, int8_prefix, tiny_data)
    assert not _slower(out), _slower(out)
    assert all("without MXNet" in r["graph"] for r in out["records"] if r["backend"] in OTHERS)
