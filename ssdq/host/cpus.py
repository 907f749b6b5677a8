"""CPU placement without numactl: CPU lists, physical cores, and pinning OpenMP threads.

``pin_threads`` must run before anything imports mxnet: the wheel's OpenMP runtime (GNU libgomp)
reads OMP_* / GOMP_* once, when it is loaded. It picks cores by NUMA node (``topology.py``), sets
the process CPU affinity with psutil and the memory policy with set_mempolicy (``mempolicy.py``:
threads created later inherit it) and exports the OpenMP variables; ``environment.py`` records afterwards what was really in effect.

Facts this module relies on (mxnet 1.9.1 wheel):

* libmxnet.so links libgomp, so KMP_AFFINITY / KMP_BLOCKTIME do nothing for it; they are set
  only for an Intel/LLVM OpenMP build (the environment's ``kmp_variables_effective``).
* With OMP_PROC_BIND set, libgomp binds the thread that loads it (Python's main thread) to the
  first place at import time, so the main thread's affinity shrinks to the first pinned core.
"""
import contextlib
import copy
import glob
import os
import re
import sys

import psutil

from ssdq.errors import SsdqError
from ssdq.host.mempolicy import MEMBIND_MODES, bind_memory
from ssdq.host.topology import (
    check_node,
    choose_cores,
    format_cpu_list,
    parse_cpu_list,
    parse_node,
    read_file,
    read_topology,
)

THREAD_VARS = ("OMP_NUM_THREADS", "GOMP_CPU_AFFINITY", "OMP_PROC_BIND", "OMP_PLACES",
               "KMP_AFFINITY", "KMP_BLOCKTIME")
PLACEMENT_VARS = ("GOMP_CPU_AFFINITY", "OMP_PLACES")  # derived from the cores; set together
FIXED_DEFAULTS = (("OMP_PROC_BIND", "close"),
                  ("KMP_AFFINITY", "granularity=fine,compact,1,0"),
                  ("KMP_BLOCKTIME", "1"))

_pinned = None  # (key, result) of the first successful pin_threads call in this process


def pinning():
    """The result of this process's ``pin_threads`` call (a copy), or None."""
    return copy.deepcopy(_pinned[1]) if _pinned else None


@contextlib.contextmanager
def pinned_affinity():
    """Run the block with the calling thread on every core ``pin_threads`` pinned to, then give
    it its own mask back.

    With OMP_PROC_BIND set, libgomp binds the thread that enters MXNet's first parallel region
    to the first pinned core, and every thread created afterwards inherits that one core. Thread
    pools created inside this block (ONNX Runtime's, OpenVINO's, the image decoding threads)
    start on all the pinned cores instead. Without a pinning in this process it does nothing."""
    saved = os.sched_getaffinity(0)  # pid 0: the calling thread
    if not take_pinned_cores():
        yield
        return
    try:
        yield
    finally:
        os.sched_setaffinity(0, saved)


def take_pinned_cores():
    """Put the calling thread on every core ``pin_threads`` pinned to (a thread pool's
    ``initializer``: its workers start whenever the pool needs them, possibly after MXNet left
    the creating thread on one core). Returns whether there was a pinning to take."""
    cores = _pinned[1]["cores"] if _pinned and _pinned[1]["affinity_set"] else None
    if cores:
        os.sched_setaffinity(0, cores)
    return bool(cores)


def _parse_cpu_syntax(spec):
    """A list of ints or a string like "0-3,6" -> sorted unique CPU numbers (syntax only)."""
    if isinstance(spec, str):
        cpus = []
        for item in spec.split(","):
            item = item.strip()
            match = re.fullmatch(r"(\d+)(?:\s*-\s*(\d+))?", item)
            if not match:
                raise SsdqError("bad --cores %r: expected CPU numbers and ranges like 0-3,6"
                                % spec)
            lo = int(match.group(1))
            hi = int(match.group(2)) if match.group(2) is not None else lo
            if hi < lo:
                raise SsdqError("bad --cores %r: range %s goes backwards" % (spec, item))
            cpus.extend(range(lo, hi + 1))
        return sorted(set(cpus))
    try:
        items = list(spec)
    except TypeError:
        raise SsdqError("bad --cores %r: expected a list of CPU numbers or a string like 0-3,6"
                        % (spec,)) from None
    if not items or not all(isinstance(c, int) and not isinstance(c, bool) and c >= 0
                            for c in items):
        raise SsdqError("bad --cores %r: expected non-negative CPU numbers" % (spec,))
    return sorted(set(items))


def parse_cores(spec, allowed):
    """Parse ``spec`` and check every CPU is in ``allowed`` (this process's affinity set)."""
    cpus = _parse_cpu_syntax(spec)
    outside = [c for c in cpus if c not in set(allowed)]
    if outside:
        raise SsdqError("--cores %s: CPU %s not available to this process (allowed: %s)"
                        % (format_cpu_list(cpus) if isinstance(spec, str) else spec,
                           format_cpu_list(outside), format_cpu_list(allowed)))
    return cpus


def physical_cores(allowed=None, sysfs_root="/sys"):
    """One logical CPU per physical core among ``allowed`` (default: the current affinity),
    from the siblings ``topology.read_topology`` reads; without sysfs, ``allowed`` as it is."""
    allowed = sorted(allowed if allowed is not None else psutil.Process().cpu_affinity())
    return read_topology(sysfs_root, allowed_cpus=allowed).physical_cores(allowed)


def _parse_threads(threads):
    if isinstance(threads, str) and re.fullmatch(r"\s*-?\d+\s*", threads):
        threads = int(threads)
    if isinstance(threads, bool) or not isinstance(threads, int):
        raise SsdqError("--threads must be a whole number, got %r" % (threads,))
    if threads < 1:
        raise SsdqError("--threads must be at least 1, got %d" % threads)
    return threads


def _openmp_libraries_mapped():
    """OpenMP runtimes already mapped into this process (their env vars are already read)."""
    maps = read_file("/proc/self/maps") or ""
    found = set(re.findall(r"/[^\s]*/(lib(?:gomp|iomp5|omp)[^/\s]*\.so[^/\s]*)", maps))
    return sorted(found)


def set_process_affinity(cpus):
    """Restrict every thread of this process to ``cpus``. sched_setaffinity on the pid moves
    only the main thread; threads already running (numpy's OpenBLAS pool starts at import)
    keep the old mask unless each is moved too."""
    cpus = list(cpus)
    for tid in os.listdir("/proc/self/task"):
        try:
            os.sched_setaffinity(int(tid), cpus)
        except (ProcessLookupError, FileNotFoundError):
            pass  # the thread ended meanwhile


def pin_threads(cores=None, threads=None, numa_node=None, membind="bind", strict=False,
                sysfs_root="/sys"):
    """Pin this process to ``cores``, bind its memory, export OpenMP settings; call before
    importing mxnet.

    ``cores``: list of CPU numbers or a string like "0-3,6"; default: one logical CPU per
    physical core of one NUMA node (``topology.choose_cores``: ``numa_node`` N or "all", else
    the node with the most allowed cores, more nodes only when ``threads`` need them).
    ``membind`` ("bind", "preferred", "none"): memory policy for the nodes of those cores, set
    with set_mempolicy(2); if the kernel refuses, one warning line on stderr, or SsdqError with
    ``strict``. ``threads``: OpenMP threads; default: the
    user's OMP_NUM_THREADS if set, else ``len(cores)``. Precedence for every variable: explicit
    arguments, then variables the user already exported, then our defaults; each value's
    source is recorded. If the user exported OMP_PLACES or GOMP_CPU_AFFINITY and gave no
    ``cores``, their placement is kept and the affinity mask is left alone.

    A second call with the same arguments returns the first result; anything else after the
    first call or after mxnet is imported raises RuntimeError (a programming error).
    Bad ``cores`` / ``threads`` raise SsdqError before anything is changed.
    """
    global _pinned
    if threads is not None:
        threads = _parse_threads(threads)
    if membind not in MEMBIND_MODES:
        raise SsdqError("bad --membind %r: choose from %s" % (membind, ", ".join(MEMBIND_MODES)))
    numa_node = parse_node(numa_node)
    proc = psutil.Process()
    allowed = sorted(proc.cpu_affinity())
    parsed_cores = None if cores is None else parse_cores(cores, allowed)
    key = (None if cores is None else tuple(parsed_cores), threads, numa_node, membind,
           bool(strict))
    if _pinned is not None and _pinned[0] == key:
        return copy.deepcopy(_pinned[1])
    topology = read_topology(sysfs_root, allowed_cpus=allowed)
    if cores is not None:
        chosen, cores_source = parsed_cores, "argument"
        nodes = sorted({topology.node_of(c) for c in chosen} - {None})
        if isinstance(numa_node, int):
            check_node(topology, numa_node)
            if nodes != [numa_node]:
                raise SsdqError("--cores %s are not all on --numa-node %d (node %d: CPUs %s)" % (
                    format_cpu_list(chosen), numa_node, numa_node,
                    format_cpu_list(topology.nodes[numa_node].cpus)))
    else:
        chosen, nodes = choose_cores(topology, numa_node, threads)
        cores_source = "default" if numa_node is None else "numa_node"
    if "mxnet" in sys.modules:
        raise RuntimeError("pin_threads() must run before mxnet is imported: its OpenMP "
                           "runtime has already read OMP_* and cannot be re-pinned")
    if _pinned is not None:
        raise RuntimeError("pin_threads() already ran in this process with cores=%r, "
                           "threads=%r" % (_pinned[1]["requested"]["cores"],
                                           _pinned[1]["requested"]["threads"]))

    env, warnings = {}, []

    def decide(name, value, source):
        previous = os.environ.get(name)
        if source == "default" and previous is not None:
            value, source = previous, "environment"
        elif previous is not None and previous != value:
            warnings.append("%s=%s from the environment replaced by %s" % (name, previous, value))
        env[name] = {"value": value, "source": source}

    if threads is not None:
        decide("OMP_NUM_THREADS", str(threads), "argument")
    else:
        decide("OMP_NUM_THREADS", str(len(chosen)), "default")

    user_placement = [n for n in PLACEMENT_VARS if n in os.environ]
    placement = {"GOMP_CPU_AFFINITY": " ".join(str(c) for c in chosen),
                 "OMP_PLACES": ",".join("{%d}" % c for c in chosen)}
    set_affinity = True
    if cores_source == "default" and user_placement:
        set_affinity = False  # the user's places may name CPUs outside our default choice
        for name in PLACEMENT_VARS:
            env[name] = {"value": os.environ.get(name), "source": "environment"}
        warnings.append("%s set in the environment: kept, CPU affinity left at %s"
                        % (" and ".join(user_placement), format_cpu_list(allowed)))
    else:
        for name in PLACEMENT_VARS:
            decide(name, placement[name], cores_source)
    for name, value in FIXED_DEFAULTS:
        decide(name, value, "default")

    try:
        n_threads = int(env["OMP_NUM_THREADS"]["value"])
    except ValueError:
        n_threads = None
    cpus_after = chosen if set_affinity else allowed
    if n_threads is not None and n_threads > len(cpus_after):
        warnings.append("%d OpenMP threads on %d cores: oversubscribed"
                        % (n_threads, len(cpus_after)))
    mapped = _openmp_libraries_mapped()
    if mapped:
        warnings.append("OpenMP already loaded (%s): it may ignore these settings"
                        % ", ".join(mapped))

    if not set_affinity:
        nodes = topology.cpu_nodes()
    memory = bind_memory(membind, topology.memory_for(nodes))
    if memory["error"]:
        if strict:
            raise SsdqError("--membind %s: %s" % (membind, memory["error"]))
        line = "%s; memory not bound (--strict makes this an error)" % memory["error"]
        warnings.append(line)
        print("ssdq: warning: %s" % line, file=sys.stderr)
    if set_affinity:
        set_process_affinity(chosen)
    for name, entry in env.items():
        if entry["value"] is not None:
            os.environ[name] = entry["value"]

    result = {"requested": {"cores": cores if cores is None or isinstance(cores, str)
                            else list(cores), "threads": threads},
              "cores": list(cpus_after), "cores_source": cores_source,
              "allowed_before": allowed, "affinity_set": set_affinity,
              "threads": n_threads, "env": env, "warnings": warnings,
              "numa": {"requested_node": numa_node, "nodes": nodes, "membind": memory,
                       "strict": bool(strict)}}
    _pinned = (key, result)
    return copy.deepcopy(result)


def read_thread_placement(pid="self"):
    """[{"tid", "name", "cpus"}] for every thread of ``pid``, from /proc/PID/task/*/status."""
    threads = []
    for status in sorted(glob.glob("/proc/%s/task/*/status" % pid)):
        try:
            with open(status) as f:
                text = f.read()
        except OSError:
            continue  # the thread exited meanwhile
        name = re.search(r"^Name:\s*(.*)$", text, re.M)
        cpus = re.search(r"^Cpus_allowed_list:\s*(\S*)$", text, re.M)
        threads.append({"tid": int(status.split("/")[-2]),
                        "name": name.group(1).strip() if name else None,
                        "cpus": parse_cpu_list(cpus.group(1)) if cpus else None})
    return threads
