"""ONNX Runtime and OpenVINO runners that run in a worker process (``backends.worker``).

``Runner`` has the interface of every runner (``backends``): ``prepare_input`` writes the batch
into the worker's shared-memory input file (once, outside the timed region, as MXNet's runner
makes its NDArray there), ``run`` asks the worker to run it and returns numpy views of the
outputs it wrote into shared memory (valid until this runner's next run; ``__call__`` returns
copies). What crosses the process boundary in ``run`` is a short message each way and the
outputs' copy into shared memory: part of the timed figure, and small.

One worker process per runtime and batch size serves every model of that runtime (precisions,
scopes), started on first use with this process's pinning and kept until ``close_workers``
(or exit). A worker that dies is a one-line ``SsdqError`` naming the runtime, never a hang. The
checkpoint's ONNX model is exported here (``onnx_export.onnx_model_for``), where MXNet is.
"""
import atexit
import itertools
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from multiprocessing.connection import Connection

import numpy as np

from ssdq.backends.onnx_export import onnx_model_for
from ssdq.backends.worker import map_file
from ssdq.errors import SsdqError
from ssdq.host.cpus import THREAD_VARS, pinned_affinity, pinning

SHM_ROOT = "/dev/shm"
POLL_SECONDS = 0.2
_workers = {}  # (backend, batch size) -> WorkerProcess
_keys = itertools.count()


class WorkerProcess:
    """A started worker: its process, the socket to it, its buffer folder."""

    def __init__(self, backend):
        self.backend = backend
        self.folder = tempfile.mkdtemp(prefix="ssdq-%s-" % backend,
                                       dir=SHM_ROOT if os.path.isdir(SHM_ROOT) else None)
        self._log = tempfile.TemporaryFile()
        ours, theirs = socket.socketpair()
        # the runtimes pin themselves from what ``pin`` passes, as a fresh ``ssdq`` process would
        env = {k: v for k, v in os.environ.items() if k not in THREAD_VARS}
        try:
            with pinned_affinity():  # the child starts on every pinned core, not MXNet's one
                self.proc = subprocess.Popen(
                    [sys.executable, "-m", "ssdq.backends.worker", str(theirs.fileno()),
                     self.folder], pass_fds=[theirs.fileno()], stdin=subprocess.DEVNULL,
                    stdout=self._log, stderr=self._log, env=env)
        finally:
            theirs.close()
        self.conn = Connection(ours.detach())
        self.input, self.input_owner, self.outputs = None, None, {}
        pinned = pinning() or {}
        membind = ((pinned.get("numa") or {}).get("membind") or {}).get("requested", "none")
        self.pid = self.call("pin", pinned.get("cores"), pinned.get("threads"), membind)["pid"]

    def call(self, name, *args):
        """Send a call and wait for its reply, watching the process: -> the reply's value."""
        try:
            self.conn.send((name, args))
            while not self.conn.poll(POLL_SECONDS):
                if self.proc.poll() is not None:
                    raise EOFError
            status, value = self.conn.recv()
        except (EOFError, OSError):
            raise self._died() from None
        if status == "error":
            raise SsdqError("%s: %s" % (self.backend, value))
        return value

    def _died(self):
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            code = None
        self.close()
        how = ("killed by %s" % signal.Signals(-code).name if code is not None and code < 0
               else "exit code %s" % code)
        return SsdqError("the %s worker process (pid %d) died (%s)%s"
                         % (self.backend, self.proc.pid, how, self._last_line()))

    def _last_line(self):
        try:
            self._log.seek(0)
            lines = [ln.strip() for ln in self._log.read().decode(errors="replace").splitlines()
                     if ln.strip()]
        except (OSError, ValueError):
            return ""
        return ": " + lines[-1][:300] if lines else ""

    def write_input(self, batch, owner):
        """Put ``batch`` (contiguous float32) into the shared input file for ``owner``."""
        if self.input is None or len(self.input) < batch.nbytes:
            self.input = map_file(os.path.join(self.folder, "input"), batch.nbytes)
        np.copyto(np.ndarray(batch.shape, np.float32, buffer=self.input), batch)
        self.input_owner = owner

    def output(self, key, places):
        """Views of the outputs the worker wrote for runner ``key``."""
        size = max(offset + int(np.prod(shape)) * np.dtype(dtype).itemsize
                   for offset, shape, dtype in places)
        mapped = self.outputs.get(key)
        if mapped is None or len(mapped) < size:  # the worker grew the file for these outputs
            mapped = self.outputs[key] = map_file(os.path.join(self.folder, "out-%s" % key),
                                                  size)
        return [np.ndarray(shape, dtype, buffer=mapped, offset=offset)
                for offset, shape, dtype in places]

    def close(self):
        """Ask the worker to exit (kill it if it does not), remove its buffers."""
        if self.proc.poll() is None:
            try:
                self.conn.send(("exit", ()))
                self.proc.wait(timeout=10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait()
        try:
            self.conn.close()
        except OSError:
            pass
        shutil.rmtree(self.folder, ignore_errors=True)
        for key, worker in list(_workers.items()):
            if worker is self:
                del _workers[key]


def worker_for(backend, batch_size):
    """The live worker of ``backend`` for ``batch_size``, started if there is none."""
    key = (backend, batch_size)
    worker = _workers.get(key)
    if worker is None or worker.proc.poll() is not None:
        worker = _workers[key] = WorkerProcess(backend)
    return worker


def close_workers():
    """Stop every worker this process started."""
    for worker in list(_workers.values()):
        worker.close()


atexit.register(close_workers)


class PreparedInput:
    """A batch written into a worker's input file (``np.asarray`` gives the batch back)."""

    def __init__(self, batch):
        self.batch = batch
        self.shape = batch.shape

    def __array__(self, dtype=None):
        return self.batch if dtype is None else self.batch.astype(dtype)

    def __len__(self):
        return len(self.batch)


class Runner:
    """A model on ONNX Runtime or OpenVINO, run by the worker of that runtime and batch size."""

    def __init__(self, backend, checkpoint, precision, batch_size, scope, per_channel=True):
        self.name, self.precision, self.batch_size, self.scope = (backend, precision,
                                                                   batch_size, scope)
        self.path = onnx_model_for(checkpoint, per_channel)
        self.worker = worker_for(backend, batch_size)
        self.key = "%d" % next(_keys)
        opened = self.worker.call("open", self.key, backend, self.path, precision, batch_size,
                                  scope)
        self.graph, self.threads = opened["graph"], opened["threads"]
        self.graph += ", in a worker process without MXNet"
        self.pid = self.worker.pid

    def prepare_input(self, batch):
        if len(batch) > self.batch_size:
            raise SsdqError("a batch of %d images is more than the %d this runner was made for"
                            % (len(batch), self.batch_size))
        prepared = PreparedInput(np.ascontiguousarray(batch, dtype=np.float32))
        self.worker.write_input(prepared.batch, prepared)
        return prepared

    def run(self, data):
        """The timed unit: the worker runs the prepared batch; -> views of its outputs."""
        if self.worker.input_owner is not data:  # another runner's batch is in the file
            self.worker.write_input(data.batch, data)
        places = self.worker.call("run", self.key, data.shape)
        return self.worker.output(self.key, places)

    def __call__(self, batch):
        return tuple(np.array(o) for o in self.run(self.prepare_input(batch)))

    def close(self):
        worker, self.worker = getattr(self, "worker", None), None
        if worker is not None and worker.proc.poll() is None:
            worker.outputs.pop(self.key, None)
            try:
                worker.call("close", self.key)
            except SsdqError:
                pass

    def __del__(self):
        try:
            self.close()
        except Exception:  # pylint: disable=broad-except  # interpreter shutting down
            pass


class Standalone:
    """The same model on the same runtime in a fresh worker of its own, timed inside that
    process: the runtime's own speed, which ``Runner``'s must match (``ssdq bench`` times both
    in turns)."""

    def __init__(self, runner, batch):
        self.worker = WorkerProcess(runner.name)
        self.key = "alone"
        self.worker.call("open", self.key, runner.name, runner.path, runner.precision,
                         runner.batch_size, runner.scope)
        self.batch = np.ascontiguousarray(batch, dtype=np.float32)
        self.worker.write_input(self.batch, self)
        self.pid = self.worker.pid

    def timed_run(self):
        """Seconds one run takes in the standalone worker."""
        return self.worker.call("time", self.key, self.batch.shape)

    def close(self):
        self.worker.close()


def runtime_info(backend):
    """The runtime's version and device record, as a worker of it reads it."""
    live = [w for (name, _), w in _workers.items() if name == backend and w.proc.poll() is None]
    return (live[0] if live else worker_for(backend, 1)).call("info", backend)
