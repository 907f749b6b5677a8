"""Memory binding without numactl: ``set_mempolicy`` / ``get_mempolicy`` through ctypes, and the
process's pages per node from ``/proc/self/numa_maps``.

The policy is the calling thread's; threads created later inherit it, so it is set on Python's
main thread before mxnet starts its OpenMP and engine threads (``cpus.pin_threads`` does it).

Kernel conventions (man 2 set_mempolicy): the node mask is an array of unsigned long, bit N for
node N; ``maxnode`` is one more than the number of bits passed (the kernel decrements it), and
``get_mempolicy`` refuses a ``maxnode`` below the kernel's node count, so a 1024-bit mask (the
x86_64 MAX_NUMNODES) is used both ways. MPOL_PREFERRED takes one node.
"""
import ctypes
import errno
import os
import platform
import re

from ssdq.errors import SsdqError

MPOL_DEFAULT, MPOL_PREFERRED, MPOL_BIND, MPOL_INTERLEAVE, MPOL_LOCAL = 0, 1, 2, 3, 4
MPOL_PREFERRED_MANY = 5
MODE_NAMES = {MPOL_DEFAULT: "default", MPOL_PREFERRED: "preferred", MPOL_BIND: "bind",
              MPOL_INTERLEAVE: "interleave", MPOL_LOCAL: "local",
              MPOL_PREFERRED_MANY: "preferred_many"}
MEMBIND_MODES = ("bind", "preferred", "none")
# (set_mempolicy, get_mempolicy) by machine
SYSCALLS = {"x86_64": (238, 239), "aarch64": (237, 236), "arm64": (237, 236),
            "ppc64le": (261, 260), "s390x": (270, 269)}
MASK_BITS = 1024
_ULONG_BITS = ctypes.sizeof(ctypes.c_ulong) * 8


def _syscall_numbers():
    numbers = SYSCALLS.get(platform.machine())
    if numbers is None:
        raise OSError(errno.ENOSYS, "no set_mempolicy syscall number known for %s"
                      % platform.machine())
    return numbers


def _libc():
    return ctypes.CDLL(None, use_errno=True)


def _mask(nodes):
    words = (ctypes.c_ulong * (MASK_BITS // _ULONG_BITS))()
    for n in nodes:
        if not 0 <= n < MASK_BITS:
            raise ValueError("node %d outside the %d-bit mask" % (n, MASK_BITS))
        words[n // _ULONG_BITS] |= 1 << (n % _ULONG_BITS)
    return words


def _nodes_of(words):
    return [i * _ULONG_BITS + b for i, w in enumerate(words) for b in range(_ULONG_BITS)
            if w >> b & 1]


def set_mempolicy(mode, nodes=()):
    """set_mempolicy(2) for the calling thread; raises OSError (errno set) if refused."""
    set_nr, _ = _syscall_numbers()
    words = _mask(nodes)
    maxnode = MASK_BITS + 1 if nodes else 0
    result = _libc().syscall(ctypes.c_long(set_nr), ctypes.c_int(mode),
                             words if nodes else None, ctypes.c_ulong(maxnode))
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


def get_mempolicy():
    """The calling thread's policy read back: {"mode": name, "nodes": [...]}."""
    _, get_nr = _syscall_numbers()
    mode = ctypes.c_int(-1)
    words = _mask(())
    result = _libc().syscall(ctypes.c_long(get_nr), ctypes.byref(mode), words,
                             ctypes.c_ulong(MASK_BITS + 1), None, ctypes.c_ulong(0))
    if result != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))
    flags = mode.value & ~0xFFFF  # MPOL_F_STATIC_NODES etc. ride in the high bits
    base = mode.value & 0xFFFF
    return {"mode": MODE_NAMES.get(base, str(base)), "nodes": _nodes_of(words),
            **({"flags": flags} if flags else {})}


def read_policy():
    """``get_mempolicy()`` or {"mode": None, "nodes": None, "error": why}."""
    try:
        return get_mempolicy()
    except OSError as exc:
        return {"mode": None, "nodes": None, "error": _why(exc)}


def _why(exc):
    name = errno.errorcode.get(exc.errno, "errno %s" % exc.errno)
    return "%s: %s" % (name, exc.strerror or os.strerror(exc.errno or 0))


def bind_memory(mode, nodes):
    """Apply ``--membind`` ``mode`` ("bind", "preferred", "none") to ``nodes`` for this thread
    and its future threads; return what was asked, what the kernel said and the read-back."""
    if mode not in MEMBIND_MODES:
        raise SsdqError("bad --membind %r: choose from %s" % (mode, ", ".join(MEMBIND_MODES)))
    nodes = sorted(set(nodes))
    target = nodes[:1] if mode == "preferred" else nodes
    result = {"requested": mode, "nodes": target, "error": None}
    if mode != "none":
        if not target:
            result["error"] = "no memory node this process may use"
        else:
            try:
                set_mempolicy(MPOL_BIND if mode == "bind" else MPOL_PREFERRED, target)
            except OSError as exc:
                result["error"] = "set_mempolicy(%s, nodes %s) refused (%s)" % (
                    "MPOL_BIND" if mode == "bind" else "MPOL_PREFERRED",
                    ",".join(map(str, target)), _why(exc))
    result["read_back"] = read_policy()
    return result


def numa_pages(path="/proc/self/numa_maps"):
    """Pages of the process on each node, summed over ``numa_maps``' N<node>=<pages> fields:
    {"pages": {"0": n, ...}, "error": None} or {"pages": None, "error": why}."""
    try:
        with open(path) as f:
            text = f.read()
    except OSError as exc:
        return {"pages": None, "error": "cannot read %s (%s)" % (path, _why(exc))}
    pages = {}
    for node, count in re.findall(r"\bN(\d+)=(\d+)", text):
        pages[node] = pages.get(node, 0) + int(count)
    return {"pages": {k: pages[k] for k in sorted(pages, key=int)}, "error": None}
