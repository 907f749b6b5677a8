"""The environment record for reports: CPU and ISA, the cores and OpenMP runtime really in use,
versions. ``environment_report`` is called after mxnet is imported, with MXNet's own record
(``backends.mxnet_backend.runtime_info``: its version, build features and oneDNN): nothing in
``host`` loads MXNet, since pinning runs before it loads.
"""
import os
import platform
import re
from importlib import metadata

import psutil
from threadpoolctl import threadpool_info

from ssdq import __version__
from ssdq.errors import SsdqError
from ssdq.host.cpus import THREAD_VARS, pinning
from ssdq.host.mempolicy import numa_pages, read_policy
from ssdq.host.topology import format_cpu_list, read_file, read_topology

NUMPY_LIMIT = (1, 24)
ISA_FLAGS = ("avx2", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile", "amx_int8", "amx_bf16")
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
    proc = psutil.Process()
    main = sorted(proc.cpu_affinity())
    union = set(main)
    for thread in proc.threads():
        try:
            union.update(psutil.Process(thread.id).cpu_affinity())
        except (psutil.Error, OSError):
            pass  # thread exited meanwhile
    return main, sorted(union)


def _runtimes():
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


def environment_report(mxnet_info):
    """What the run really used; call after mxnet is imported, with ``mxnet_info`` its own record
    (``backends.mxnet_backend.runtime_info()``)."""
    model, isa = _cpuinfo()
    main_affinity, cores_used = _thread_affinities()
    openmp, blas = _runtimes()
    onednn = dict(mxnet_info["onednn"])
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
        "versions": {"python": platform.python_version(), "mxnet": mxnet_info["version"],
                     "numpy": _dist_version("numpy"), "gluoncv": _dist_version("gluoncv"),
                     "oneDNN": onednn["version"]},
        "onednn": onednn,
        "mxnet_features": dict(mxnet_info["features"]),
        "pinning": pinning(),
        "numa": numa_record(),
    }


def _yes(value):
    return "?" if value is None else ("yes" if value else "no")


def format_environment(report):
    """A few human lines (Markdown bullets) summarising ``environment_report``'s record."""
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
