"""The runtime worker: a process that runs ONNX Runtime or OpenVINO and never loads MXNet.

In a process where MXNet has run, OpenVINO ran at half its speed on two idle cores though its
threads sat on both (docs/results.md, "Other runtimes"); so ssdq runs every other runtime here,
in a fresh interpreter started by ``backends.remote`` with the same pinning (cores, threads,
memory policy). The parent drives it over a socket: ``pin``, then ``open`` a
model (a runner of ``onnxruntime_backend`` or ``openvino_backend``), ``run`` it on the batch
the parent wrote into a shared-memory file, whose outputs it writes into another, ``time`` a
run here (the runtime on its own, for the benchmark's comparison), ``info``, ``close`` and
``exit``. Every reply is ("ok", value) or ("error", one line).

This module and everything it imports stay free of MXNet (``tests/backends/test_worker.py``
checks it in a fresh interpreter).

    python -m ssdq.backends.worker FD DIR    # FD: the socket to the parent; DIR: its buffers
"""
import mmap
import os
import sys
from multiprocessing.connection import Connection

import numpy as np

from ssdq.backends import backend_module
from ssdq.errors import SsdqError, first_line
from ssdq.host import cpus
from ssdq.timing import timed

ALIGN = 64


def map_file(path, size):
    """A writable mmap of ``path``, grown to at least ``size`` bytes."""
    with open(path, "r+b" if os.path.exists(path) else "w+b") as f:
        if os.fstat(f.fileno()).st_size < size:
            f.truncate(size)
        return mmap.mmap(f.fileno(), max(size, os.fstat(f.fileno()).st_size))


def layout(arrays):
    """[(offset, shape, dtype string)] of ``arrays`` packed one after the other, and the bytes
    they take (each start aligned to ``ALIGN``)."""
    out, offset = [], 0
    for a in arrays:
        out.append((offset, tuple(a.shape), a.dtype.str))
        offset += -(-a.nbytes // ALIGN) * ALIGN
    return out, offset


class Worker:
    """The child's state: the pinning, the open runners, the shared buffers."""

    def __init__(self, folder):
        self.folder, self.runners, self.maps = folder, {}, {}

    def buffer(self, name, size):
        """The mmap of buffer file ``name`` holding at least ``size`` bytes."""
        current = self.maps.get(name)
        if current is None or len(current) < size:
            self.maps[name] = map_file(os.path.join(self.folder, name), size)
        return self.maps[name]

    def pin(self, cores, threads, membind):
        if cores:
            cpus.pin_threads(cores=cores, threads=threads, membind=membind)
        return {"pid": os.getpid(), "cores": sorted(os.sched_getaffinity(0))}

    def open(self, key, backend, path, precision, batch_size, scope):
        runner = backend_module(backend).Runner(path, precision, batch_size, scope)
        self.runners[key] = runner
        return {"graph": runner.graph, "threads": runner.threads, "meta_input":
                (runner.meta.get("input") or {})}

    def run(self, key, shape):
        size = int(np.prod(shape)) * 4
        data = np.ndarray(shape, np.float32, buffer=self.buffer("input", size))
        outputs = [np.asarray(o) for o in self.runners[key].run(data)]
        places, total = layout(outputs)
        out = self.buffer("out-%s" % key, total)
        for (offset, shape_, dtype), value in zip(places, outputs):
            np.copyto(np.ndarray(shape_, dtype, buffer=out, offset=offset), value)
        return places

    def time(self, key, shape):
        """Seconds one ``run`` of the batch in the input buffer takes here, timed in this
        process (no message crosses in the timed region): a runtime on its own."""
        data = np.ndarray(shape, np.float32, buffer=self.buffer("input", int(np.prod(shape)) * 4))
        return timed(self.runners[key].run, data)

    def info(self, backend):
        return backend_module(backend).runtime_info()

    def close(self, key):
        self.runners.pop(key, None)
        self.maps.pop("out-%s" % key, None)


def serve(conn, folder):
    """Answer the parent's calls until it says ``exit`` or goes away."""
    worker = Worker(folder)
    while True:
        try:
            name, args = conn.recv()
        except (EOFError, OSError):
            return 0  # the parent is gone
        if name == "exit":
            conn.send(("ok", None))
            return 0
        try:
            reply = ("ok", getattr(worker, name)(*args))
        except SsdqError as exc:
            reply = ("error", first_line(exc))
        except Exception as exc:  # a runtime's own failure: one line for the parent to show
            reply = ("error", "%s: %s" % (type(exc).__name__, first_line(exc)))
        conn.send(reply)


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    conn = Connection(int(argv[0]))
    return serve(conn, argv[1])


if __name__ == "__main__":
    raise SystemExit(main())
