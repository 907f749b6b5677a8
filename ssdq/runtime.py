"""Thread pinning without numactl, and the environment record for reports.

``pin_threads`` must run before anything imports mxnet: the wheel's OpenMP runtime (GNU libgomp)
reads OMP_* / GOMP_* once, when it is loaded. It sets the process CPU affinity with psutil and
exports the OpenMP variables; ``environment_report`` (after mxnet is imported) records what is
really in effect: CPU and ISA, affinity, the OpenMP runtime threadpoolctl finds, and versions.

Facts this module relies on (mxnet 1.9.1 wheel):

* libmxnet.so links libgomp, so KMP_AFFINITY / KMP_BLOCKTIME do nothing for it; they are set
  only for an Intel/LLVM OpenMP build (``kmp_variables_effective`` says whether one is loaded).
* With OMP_PROC_BIND set, libgomp binds the thread that loads it (Python's main thread) to the
  first place at import time, so the main thread's affinity shrinks to the first pinned core;
  ``cores_used`` is therefore the union over all threads of the process.
* oneDNN (v2.4.4) is linked in statically and ``dnnl_version`` is not exported, so its version
  is read from the ``dnnl_verbose,info,oneDNN vX.Y.Z`` line of a tiny DNNL_VERBOSE=1 subprocess
  (once per process); a build that exports ``dnnl_version`` is read through ctypes instead.
"""
import copy
import functools
import os
import platform
import re
import subprocess
import sys
from importlib import metadata

from .errors import SsdqError

NUMPY_LIMIT = (1, 24)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
THREAD_VARS = ("OMP_NUM_THREADS", "GOMP_CPU_AFFINITY", "OMP_PROC_BIND", "OMP_PLACES",
               "KMP_AFFINITY", "KMP_BLOCKTIME")
PLACEMENT_VARS = ("GOMP_CPU_AFFINITY", "OMP_PLACES")  # derived from the cores; set together
FIXED_DEFAULTS = (("OMP_PROC_BIND", "close"),
                  ("KMP_AFFINITY", "granularity=fine,compact,1,0"),
                  ("KMP_BLOCKTIME", "1"))
MXNET_FEATURES = ("MKLDNN", "OPENMP", "BLAS_OPEN", "BLAS_MKL", "BLAS_ATLAS", "BLAS_APPLE",
                  "LAPACK", "INT64_TENSOR_SIZE", "CUDA", "DEBUG")
INTEL_OPENMP_PREFIXES = ("libiomp", "libomp")

_pinned = None  # (key, result) of the first successful pin_threads call in this process


def _dist_version(name):
    """Installed version of a distribution, without importing it (None if not installed)."""
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def check_numpy():
    """Fail early, with the fix, if numpy is too new for mxnet 1.9.1 (``np.bool`` is gone)."""
    version = _dist_version("numpy")
    if version is None:
        raise SsdqError("numpy is not installed; mxnet 1.9.1 needs numpy<1.24: "
                        "pip install numpy==1.23.5 (or install with -c constraints.txt)")
    match = re.match(r"(\d+)\.(\d+)", version)
    if match and (int(match.group(1)), int(match.group(2))) >= NUMPY_LIMIT:
        raise SsdqError("numpy %s is installed but mxnet 1.9.1 needs numpy<1.24: pip install "
                        "numpy==1.23.5 (or install with -c constraints.txt)" % version)
    return version


# ---------------------------------------------------------------------------- CPU lists

def format_cpu_list(cpus):
    """[0, 1, 2, 3, 6] -> "0-3,6" (the syntax ``--cores`` accepts)."""
    cpus = sorted(set(cpus))
    parts, i = [], 0
    while i < len(cpus):
        j = i
        while j + 1 < len(cpus) and cpus[j + 1] == cpus[j] + 1:
            j += 1
        parts.append(str(cpus[i]) if i == j else "%d-%d" % (cpus[i], cpus[j]))
        i = j + 1
    return ",".join(parts)


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


def _read(path):
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def physical_cores(allowed=None):
    """One logical CPU per physical core among ``allowed`` (default: the current affinity).

    Hyper-thread siblings are skipped using sysfs ``thread_siblings_list``; without SMT, or
    without sysfs, the affinity list is returned as it is.
    """
    import psutil

    allowed = sorted(allowed if allowed is not None else psutil.Process().cpu_affinity())
    physical, logical = psutil.cpu_count(logical=False), psutil.cpu_count(logical=True)
    if physical is not None and physical == logical:
        return allowed
    allowed_set, chosen = set(allowed), []
    for cpu in allowed:
        text = _read("/sys/devices/system/cpu/cpu%d/topology/thread_siblings_list" % cpu)
        try:
            siblings = set(_parse_cpu_syntax(text.strip())) if text else set()
        except SsdqError:
            siblings = set()
        siblings = (siblings & allowed_set) or {cpu}
        if cpu == min(siblings):
            chosen.append(cpu)
    return chosen


# ---------------------------------------------------------------------------- pinning

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
    maps = _read("/proc/self/maps") or ""
    found = set(re.findall(r"/[^\s]*/(lib(?:gomp|iomp5|omp)[^/\s]*\.so[^/\s]*)", maps))
    return sorted(found)


def pin_threads(cores=None, threads=None):
    """Pin this process to ``cores`` and export OpenMP settings; call before importing mxnet.

    ``cores``: list of CPU numbers or a string like "0-3,6"; default: one logical CPU per
    physical core in the current affinity mask. ``threads``: OpenMP threads; default: the
    user's OMP_NUM_THREADS if set, else ``len(cores)``. Precedence for every variable: explicit
    arguments, then variables the user already exported, then our defaults; each value's
    source is recorded. If the user exported OMP_PLACES or GOMP_CPU_AFFINITY and gave no
    ``cores``, their placement is kept and the affinity mask is left alone.

    A second call with the same arguments returns the first result; anything else after the
    first call or after mxnet is imported raises RuntimeError (a programming error).
    Bad ``cores`` / ``threads`` raise SsdqError before anything is changed.
    """
    global _pinned
    import psutil

    if threads is not None:
        threads = _parse_threads(threads)
    proc = psutil.Process()
    allowed = sorted(proc.cpu_affinity())
    parsed_cores = None if cores is None else parse_cores(cores, allowed)
    key = (None if cores is None else tuple(parsed_cores), threads)
    if _pinned is not None and _pinned[0] == key:
        return copy.deepcopy(_pinned[1])
    if "mxnet" in sys.modules:
        raise RuntimeError("pin_threads() must run before mxnet is imported: its OpenMP "
                           "runtime has already read OMP_* and cannot be re-pinned")
    if _pinned is not None:
        raise RuntimeError("pin_threads() already ran in this process with cores=%r, "
                           "threads=%r" % (_pinned[1]["requested"]["cores"],
                                           _pinned[1]["requested"]["threads"]))

    if cores is not None:
        chosen, cores_source = parsed_cores, "argument"
    else:
        chosen, cores_source = physical_cores(allowed), "default"

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

    if set_affinity:
        proc.cpu_affinity(chosen)
    for name, entry in env.items():
        if entry["value"] is not None:
            os.environ[name] = entry["value"]

    result = {"requested": {"cores": cores if cores is None or isinstance(cores, str)
                            else list(cores), "threads": threads},
              "cores": list(cpus_after), "cores_source": cores_source,
              "allowed_before": allowed, "affinity_set": set_affinity,
              "threads": n_threads, "env": env, "warnings": warnings}
    _pinned = (key, result)
    return copy.deepcopy(result)


# ---------------------------------------------------------------------------- report

def _cpuinfo():
    text = _read("/proc/cpuinfo") or ""
    model = re.search(r"^model name\s*:\s*(.*)$", text, re.M)
    flags = re.search(r"^flags\s*:\s*(.*)$", text, re.M)
    flag_set = set(flags.group(1).split()) if flags else None
    isa = {f: (None if flag_set is None else f in flag_set) for f in ISA_FLAGS}
    return (model.group(1).strip() if model else platform.processor() or None), isa


def _thread_affinities():
    """(main thread's affinity, union over all threads of the process), via psutil."""
    import psutil

    proc = psutil.Process()
    main = sorted(proc.cpu_affinity())
    union = set(main)
    for thread in proc.threads():
        try:
            union.update(psutil.Process(thread.id).cpu_affinity())
        except (psutil.Error, OSError):
            pass  # thread exited meanwhile
    return main, sorted(union)


def _libmxnet_path():
    import mxnet

    lib = getattr(getattr(mxnet, "base", None), "_LIB", None)
    path = getattr(lib, "_name", None)
    if path and os.path.exists(path):
        return path
    path = os.path.join(os.path.dirname(mxnet.__file__), "libmxnet.so")
    return path if os.path.exists(path) else None


_VERBOSE_PROBE = """
import mxnet as mx
x = mx.nd.ones((1, 1, 4, 4))
mx.nd.Convolution(x, mx.nd.ones((1, 1, 1, 1)), kernel=(1, 1), num_filter=1,
                  no_bias=True).wait_to_read()
"""


@functools.lru_cache(maxsize=None)
def onednn_info():
    """oneDNN version (and, from verbose mode, the ISA it dispatches to); cached per process."""
    import ctypes

    info = {"version": None, "commit": None, "isa": None, "method": None, "error": None}
    path = _libmxnet_path()
    try:
        fn = ctypes.CDLL(path).dnnl_version if path else None
    except (OSError, AttributeError):
        fn = None
    if fn is not None:
        class DnnlVersion(ctypes.Structure):
            _fields_ = [("major", ctypes.c_int), ("minor", ctypes.c_int),
                        ("patch", ctypes.c_int), ("hash", ctypes.c_char_p)]

        fn.restype = ctypes.POINTER(DnnlVersion)
        v = fn().contents
        info.update(version="%d.%d.%d" % (v.major, v.minor, v.patch),
                    commit=(v.hash or b"").decode() or None, method="ctypes dnnl_version")
        return info

    env = dict(os.environ, DNNL_VERBOSE="1", MKLDNN_VERBOSE="1", MXNET_MKLDNN_ENABLED="1",
               OMP_NUM_THREADS="1")
    for name in THREAD_VARS[1:]:
        env.pop(name, None)  # our affinity may be narrower than the places they name
    info["method"] = "DNNL_VERBOSE=1 subprocess"
    try:
        out = subprocess.run([sys.executable, "-c", _VERBOSE_PROBE], env=env, timeout=120,
                             stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             universal_newlines=True).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        info["error"] = "verbose probe failed: %s" % exc
        return info
    match = re.search(r"(?:dnnl|onednn|mkldnn)_verbose,info,(?:oneDNN|DNNL|MKL-DNN) "
                      r"v(\d+\.\d+\.\d+)(?: \(commit ([0-9a-f]+)\))?", out)
    isa = re.search(r"(?:dnnl|onednn|mkldnn)_verbose,info,cpu,isa:(.*)", out)
    if match:
        info.update(version=match.group(1), commit=match.group(2))
    else:
        info["error"] = "no oneDNN version line in verbose output: %s" % out.strip()[-200:]
    if isa:
        info["isa"] = isa.group(1).strip()
    return info


def _runtimes():
    from threadpoolctl import threadpool_info

    openmp, blas = [], []
    for lib in threadpool_info():
        entry = {k: lib.get(k) for k in ("prefix", "filepath", "version", "num_threads")}
        if lib.get("user_api") == "openmp":
            openmp.append(entry)
        elif lib.get("user_api") == "blas":
            entry["threading_layer"] = lib.get("threading_layer")
            blas.append(entry)
    return openmp, blas


def environment_report():
    """What the run really used; call after mxnet is imported (it imports mxnet itself)."""
    import mxnet
    import numpy
    import psutil

    model, isa = _cpuinfo()
    main_affinity, cores_used = _thread_affinities()
    openmp, blas = _runtimes()
    features = mxnet.runtime.Features()
    onednn = dict(onednn_info())
    return {
        "cpu_model": model,
        "isa": isa,
        "logical_cpus": psutil.cpu_count(logical=True),
        "physical_cores": psutil.cpu_count(logical=False),
        "cores_used": cores_used,
        "main_thread_affinity": main_affinity,
        "threads": {name: os.environ.get(name) for name in THREAD_VARS},
        "openmp_runtimes": openmp,
        "kmp_variables_effective": any((lib["prefix"] or "").startswith(INTEL_OPENMP_PREFIXES)
                                       for lib in openmp),
        "blas_runtimes": blas,
        "versions": {"python": platform.python_version(), "mxnet": mxnet.__version__,
                     "numpy": numpy.__version__, "gluoncv": _dist_version("gluoncv"),
                     "oneDNN": onednn["version"]},
        "onednn": onednn,
        "mxnet_features": {name: features.is_enabled(name) for name in MXNET_FEATURES
                           if name in features},
        "pinning": copy.deepcopy(_pinned[1]) if _pinned else None,
    }


def _yes(value):
    return "?" if value is None else ("yes" if value else "no")


def format_environment(report):
    """A few human lines (Markdown bullets) summarising ``environment_report()``."""
    isa, threads, versions = report["isa"], report["threads"], report["versions"]
    amx = [isa.get("amx_tile"), isa.get("amx_int8"), isa.get("amx_bf16")]
    amx_text = "?" if None in amx else ("yes" if all(amx) else ("partial" if any(amx) else "no"))
    onednn = report.get("onednn") or {}
    lines = [
        "- CPU: %s (%s logical CPUs, %s physical cores)"
        % (report["cpu_model"], report["logical_cpus"], report["physical_cores"]),
        "- ISA: AVX2 %s, AVX-512 %s, AVX512-VNNI %s, AVX512-BF16 %s, AMX %s"
        % (_yes(isa.get("avx2")), _yes(isa.get("avx512f")), _yes(isa.get("avx512_vnni")),
           _yes(isa.get("avx512_bf16")), amx_text)
        + ("; oneDNN dispatches to %s" % onednn["isa"] if onednn.get("isa") else ""),
        "- Cores: %s (%d in use); OMP_NUM_THREADS=%s, OMP_PROC_BIND=%s, OMP_PLACES=%s"
        % (format_cpu_list(report["cores_used"]) or "?", len(report["cores_used"]),
           threads.get("OMP_NUM_THREADS"), threads.get("OMP_PROC_BIND"),
           threads.get("OMP_PLACES")),
    ]
    runtimes = ", ".join("%s%s with %s thread(s)" % (lib["prefix"], " " + lib["version"]
                                               if lib["version"] else "", lib["num_threads"])
                         for lib in report["openmp_runtimes"]) or "none found"
    lines.append("- OpenMP: %s; KMP_* variables %s"
                 % (runtimes, "in effect" if report["kmp_variables_effective"]
                    else "have no effect"))
    lines.append("- Versions: Python %s, mxnet %s, numpy %s, gluoncv %s, oneDNN %s"
                 % (versions["python"], versions["mxnet"], versions["numpy"],
                    versions["gluoncv"], versions["oneDNN"]))
    return "\n".join(lines)
