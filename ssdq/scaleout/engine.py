"""Run independent trials serially here, or as Ray tasks across one or many hosts.

A trial is a pure, module-level function ``fn(context, item) -> plain data``: ``context`` is the
shared, read-only input of a sweep (a checkpoint, the calibration statistics, a dataset), put in
Ray's object store once; ``item`` says which variant to build. The driver keeps the control flow
(which trials, in what order, when to stop) and gets results back in the order it asked, so a
run with or without Ray computes the same thing.

With Ray, trials run on actors (``TrialWorker``), one per ``cpus_per_task`` CPUs of the
cluster. Ray reserves CPUs by count but does not say which, so each worker claims a free slot of
``cpus_per_task`` physical cores on its host (a lock file held for the worker's life) and pins
its OpenMP threads to them with ssdq's own pinning, before mxnet is imported in that process:
two trials on one host never share cores. The worker is built from this module, which imports
nothing that loads mxnet; a trial's function (and its module, which imports mxnet at its top)
reaches the worker as an argument of its first ``run``, after the constructor has pinned. A
trial that raises or whose worker dies is retried once (on a fresh worker if it died); a second
failure is reported in its result, never dropped.
"""
import fcntl
import os
import socket
import time
import traceback

import psutil
from tqdm import tqdm

from ssdq.errors import SsdqError, first_line
from ssdq.host import cpus
from ssdq.host.cpus import physical_cores, pinning, read_thread_placement

SLOT_DIR = os.path.join("/tmp", "ssdq-ray-core-slots")
MAX_ATTEMPTS = 2


class TrialFailed(SsdqError):
    pass


def _where(cpus=None, pinned=None):
    return {"host": socket.gethostname(), "pid": os.getpid(), "cpus": cpus, "pinned": pinned}


class LocalEngine:
    """Trials one after another in this process (the default: nothing to set up)."""

    name = "local"
    parallelism = 1

    def map(self, fn, context, items, progress=False, desc="trials"):
        results = []
        for item in tqdm(items, desc=desc, unit="trial", disable=not progress, leave=False):
            start = time.perf_counter()
            value = fn(context, item)
            results.append({"value": value, "wall_s": time.perf_counter() - start,
                            "attempts": 1, "where": _where()})
        return results

    def describe(self):
        return None

    def close(self):
        pass


def claim_core_slot(cpus_per_task, slot_dir=SLOT_DIR):
    """Claim the first free slot of ``cpus_per_task`` physical cores on this host.

    Returns (cores, lock file object); the lock lives as long as the file object (the worker
    process). Returns (None, None) when every slot is taken.
    """
    cores = physical_cores()
    os.makedirs(slot_dir, exist_ok=True)
    for i in range(len(cores) // cpus_per_task):
        slot = cores[i * cpus_per_task:(i + 1) * cpus_per_task]
        handle = open(os.path.join(slot_dir, "cores-%s.lock" % "_".join(map(str, slot))), "w")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            handle.close()
            continue
        return slot, handle
    return None, None


class _Worker:
    """The body of a Ray actor: pin once, then run trials (``run``) until the driver is done."""

    def __init__(self, cpus_per_task, slot_dir=SLOT_DIR, cwd=None):
        if cwd and os.path.isdir(cwd):
            os.chdir(cwd)  # relative data paths resolve as on the driver (same path on every node)
        self.cores, self._lock = claim_core_slot(cpus_per_task, slot_dir)
        # Ray exports OMP_NUM_THREADS for its workers; ssdq's pinning sets it from the slot.
        os.environ.pop("OMP_NUM_THREADS", None)
        pinned = cpus.pin_threads(cores=self.cores, threads=cpus_per_task)
        self.where = _where(pinned["cores"], self.cores is not None)

    def run(self, fn, context, item):
        start = time.perf_counter()
        try:
            value, error = fn(context, item), None
        except Exception as exc:  # reported to the driver, which retries once
            value, error = None, "%s: %s" % (type(exc).__name__, exc)
            error += "\n" + traceback.format_exc(limit=3)
        where = dict(self.where, threads_cpus=_threads_cpus())
        return {"value": value, "error": error, "wall_s": time.perf_counter() - start,
                "where": where}


def _threads_cpus():
    """The CPUs any thread of this process may run on, read back from the kernel."""

    return sorted({c for thread in read_thread_placement() for c in thread["cpus"] or ()})


class RayEngine:
    """Trials as Ray actor tasks; ``address=None`` starts a local Ray on this machine."""

    name = "ray"

    def __init__(self, address=None, cpus_per_task=1, workers=None, slot_dir=SLOT_DIR):
        try:
            import ray
        except ImportError:
            raise SsdqError("--ray needs Ray: pip install -e '.[ray]'") from None
        if cpus_per_task < 1:
            raise SsdqError("--cpus-per-task must be at least 1")
        self._ray = ray
        self.address = address or "local"
        started = time.perf_counter()
        init = dict(include_dashboard=False, log_to_driver=False, configure_logging=False)
        try:
            if address in (None, "local"):
                _init_local_ray(ray, init)
            else:
                _check_reachable(address)
                ray.init(address=address, **init)
        except (ConnectionError, ValueError, RuntimeError) as exc:
            raise SsdqError("cannot join the Ray cluster at %s: %s"
                            % (address, str(exc).splitlines()[0] if str(exc) else exc)) from None
        self.startup_s = time.perf_counter() - started
        self.cpus_per_task = cpus_per_task
        total = int(ray.cluster_resources().get("CPU", 0))
        self.parallelism = workers or max(1, total // cpus_per_task)
        if total < cpus_per_task:
            self.close()
            raise SsdqError("--cpus-per-task %d: the Ray cluster has %d CPUs"
                            % (cpus_per_task, total))
        self._actor_class = ray.remote(num_cpus=cpus_per_task, max_restarts=0)(_Worker)
        self._slot_dir = slot_dir
        self._workers = [self._new_worker() for _ in range(self.parallelism)]

    def _new_worker(self):
        return self._actor_class.remote(self.cpus_per_task, self._slot_dir, os.getcwd())

    def map(self, fn, context, items, progress=False, desc="trials"):
        """Run ``fn(context, item)`` for every item; results in the order of ``items``."""
        ray = self._ray
        context_ref = ray.put(context)
        items = list(items)
        results = [None] * len(items)
        attempts = [0] * len(items)
        queue = list(range(len(items)))
        running = {}  # object ref -> (item index, worker index)
        idle = list(range(len(self._workers)))
        bar = tqdm(total=len(items), desc=desc, unit="trial", disable=not progress, leave=False)
        while queue or running:
            while queue and idle:
                i, w = queue.pop(0), idle.pop(0)
                attempts[i] += 1
                ref = self._workers[w].run.remote(fn, context_ref, items[i])
                running[ref] = (i, w)
            done, _ = ray.wait(list(running), num_returns=1)
            i, w = running.pop(done[0])
            try:
                result = ray.get(done[0])
            except (ray.exceptions.RayActorError, ray.exceptions.WorkerCrashedError) as exc:
                result = {"value": None, "error": "worker lost: %s" % first_line(exc),
                          "wall_s": None, "where": None}
                self._workers[w] = self._new_worker()
            except ray.exceptions.RayError as exc:  # e.g. the trial's inputs did not unpickle
                result = {"value": None, "error": first_line(exc), "wall_s": None,
                          "where": None}
            idle.append(w)
            if result["error"] and attempts[i] < MAX_ATTEMPTS:
                queue.insert(0, i)
                continue
            result["attempts"] = attempts[i]
            results[i] = result
            bar.update(1)
        bar.close()
        failed = [(items[i], r["error"]) for i, r in enumerate(results) if r["error"]]
        if failed:
            raise TrialFailed("%d trial(s) failed twice; first: %r: %s"
                              % (len(failed), failed[0][0], failed[0][1].splitlines()[0]))
        return results

    def describe(self):
        nodes = [{"node_id": n["NodeID"], "address": n["NodeManagerAddress"],
                  "cpus": n["Resources"].get("CPU", 0)}
                 for n in self._ray.nodes() if n.get("Alive")]
        return {"address": self.address, "nodes": nodes, "cpus_per_task": self.cpus_per_task,
                "workers": len(self._workers), "startup_s": round(self.startup_s, 2)}

    def close(self):
        self._ray.shutdown()


def _check_reachable(address, timeout_s=5):
    """Fail fast on a HOST:PORT nobody listens on (Ray itself retries for minutes)."""
    host, sep, port = address.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto" or a ray:// URL: Ray resolves and reports it
    try:
        socket.create_connection((host.strip("[]"), int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise SsdqError("cannot reach the Ray cluster at %s (%s); start one with "
                        "`ray start --head` or drop the address to run Ray here"
                        % (address, exc.strerror or exc)) from None


def _init_local_ray(ray, init):
    """Start Ray here with one CPU per core this process was pinned to.

    libgomp binds the main thread to the first pinned core when mxnet loads, and Ray's
    processes inherit the affinity of the thread that starts them, so the main thread is given
    back all pinned cores while Ray starts (its workers then claim their own cores)."""
    pinned = pinning()
    cores = pinned["cores"] if pinned else physical_cores()
    main = psutil.Process()
    saved = main.cpu_affinity()
    main.cpu_affinity(cores)
    try:
        ray.init(num_cpus=len(cores), **init)
    finally:
        main.cpu_affinity(saved)


def make_engine(options):
    """The engine ``options`` (``ScaleoutOptions``) name (close it when done): the local serial
    engine without ``ray``; with ``ray`` "local", a Ray started here, else the cluster at that
    address (``auto``, ``HOST:PORT``)."""
    if options.ray is None:
        return LocalEngine()
    return RayEngine(None if options.ray == "local" else options.ray, options.cpus_per_task)


def ray_block(engine, results, wall_s):
    """Where a sweep ran: the engine, per trial host/pid/CPUs/wall time, and the serial estimate
    (the sum of the trials' own times) beside the wall time."""
    info = engine.describe()
    if info is None:
        return None
    info["tasks"] = [{"where": r["where"], "wall_s": r["wall_s"] and round(r["wall_s"], 3),
                      "attempts": r["attempts"]} for r in results]
    info["wall_s"] = round(wall_s, 2)
    info["serial_estimate_s"] = round(sum(r["wall_s"] or 0 for r in results), 2)
    return info


def where_ran(info):
    """One Markdown line from ``ray_block``'s dict: where the trials ran, and how long."""
    return ("Trials ran on Ray (%s, %d node(s), %d workers of %d CPU(s)): %d trials, %.1f s "
            "wall against %.1f s run one after another (serial estimate)."
            % (info["address"], len(info["nodes"]), info["workers"], info["cpus_per_task"],
               len(info["tasks"]), info["wall_s"], info["serial_estimate_s"]))
