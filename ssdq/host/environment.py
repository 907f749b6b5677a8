"""The environment record for reports: CPU and ISA, the cores and OpenMP runtime really in use,
versions. ``environment_report`` is called after mxnet is imported.

oneDNN (v2.4.4) is linked into libmxnet statically and ``dnnl_version`` is not exported, so its
version is read from the ``dnnl_verbose,info,oneDNN vX.Y.Z`` line of a tiny DNNL_VERBOSE=1
subprocess (once per process); a build that exports ``dnnl_version`` is read through ctypes.
"""
import functools
import os
import platform
import re
import subprocess
import sys
from importlib import metadata

from ssdq import __version__
from ssdq.errors import SsdqError
from ssdq.host.cpus import THREAD_VARS, pinning
from ssdq.host.mempolicy import numa_pages, read_policy
from ssdq.host.topology import format_cpu_list, read_file, read_topology

NUMPY_LIMIT = (1, 24)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
MXNET_FEATURES = ("MKLDNN", "OPENMP", "BLAS_OPEN", "BLAS_MKL", "BLAS_ATLAS", "BLAS_APPLE",
                  "LAPACK", "INT64_TENSOR_SIZE", "CUDA", "DEBUG")
INTEL_OPENMP_PREFIXES = ("libiomp", "libomp")


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


def _cpuinfo():
    text = read_file("/proc/cpuinfo") or ""
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


def numa_record():
    """Nodes (through this process's cpuset), the nodes pinned to, the memory policy read back
    from the kernel and the process's pages per node (``numa_maps``)."""

    pinned = pinning() or {}
    topology = read_topology(allowed_cpus=pinned.get("allowed_before"))
    pages = numa_pages()
    return {"nodes": topology.describe(), "numa_sysfs": topology.numa_sysfs,
            "mems_allowed": topology.allowed_mems,
            "node_used": (pinned.get("numa") or {}).get("nodes"),
            "memory_policy": read_policy(),
            "pages_per_node": pages["pages"], "pages_per_node_error": pages["error"]}


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
        "ssdq_version": __version__,
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
        "pinning": pinning(),
        "numa": numa_record(),
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
    numa = report.get("numa")
    if numa:
        policy = numa["memory_policy"]
        pages = numa["pages_per_node"]
        lines.append("- NUMA: %d node(s) (%s); pinned to node %s; memory policy read back: %s; "
                     "pages per node: %s" % (
                         len(numa["nodes"]), "; ".join(
                             "%d: CPUs %s%s" % (n["node"], n["allowed_cpus"] or "none",
                                                 "" if n["has_memory"] else ", no memory")
                             for n in numa["nodes"]),
                         ",".join(map(str, numa["node_used"] or [])) or "?",
                         ("%s %s" % (policy["mode"], ",".join(map(str, policy["nodes"]))))
                         if policy.get("mode") else "unknown (%s)" % policy.get("error"),
                         ", ".join("N%s=%d" % kv for kv in pages.items()) if pages is not None
                         else "unknown (%s)" % numa["pages_per_node_error"]))
    lines.append("- Versions: Python %s, mxnet %s, numpy %s, gluoncv %s, oneDNN %s"
                 % (versions["python"], versions["mxnet"], versions["numpy"],
                    versions["gluoncv"], versions["oneDNN"]))
    for name, info in sorted((report.get("runtimes") or {}).items()):
        if "error" in info:
            lines.append("- %s: %s" % (name, info["error"]))
        elif "optimization_capabilities" in info:
            lines.append("- %s %s on %s: OPTIMIZATION_CAPABILITIES %s" % (
                name, info["version"], info.get("device_name"),
                ", ".join(info["optimization_capabilities"])))
        else:
            lines.append("- %s %s: providers %s (runs %s)" % (
                name, info["version"], ", ".join(info.get("providers", [])),
                info.get("used_provider")))
    return "\n".join(lines)
