"""One runtime alone: ``python -m ssdq.bench.standalone SPEC.json`` times an ONNX model on ONNX
Runtime or OpenVINO in a fresh interpreter that never loads MXNet.

``ssdq bench --backends`` runs it for each non-MXNet record at the speed-up batch size, right
after timing the same model in its own process, with the same cores, thread count, batch,
warm-up and repeats: the in-process figure must be within a few percent of it, or something in
ssdq's process (libgomp's binding of the main thread, which thread pools inherit) costs that
runtime speed. The result (img/s, the cores its threads ran on, whether mxnet was loaded) is a
JSON file.
"""
import sys

import numpy as np

from ssdq.backends import prepare
from ssdq.fileio import read_json, write_json
from ssdq.host import cpus
from ssdq.timing import summarize, timed


def run(spec):
    pinned = cpus.pin_threads(cores=spec["cores"], threads=spec["threads"])
    runner = prepare(spec["backend"], spec["model"], spec["precision"], spec["batch_size"],
                     spec["scope"])
    data = runner.prepare_input(np.load(spec["input"]))
    for _ in range(max(1, spec["warmup"])):
        runner.run(data)
    seconds = [timed(runner.run, data) for _ in range(spec["repeats"])]
    threads = cpus.read_thread_placement()
    return dict(summarize(len(data), seconds, spec["warmup"]), graph=runner.graph,
                threads=len(threads), pinned_cores=pinned["cores"],
                threads_cpus=sorted({c for t in threads for c in t["cpus"] or ()}),
                mxnet_loaded="mxnet" in sys.modules)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    spec = read_json(argv[0], "standalone bench spec")
    write_json(spec["result"], run(spec))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
