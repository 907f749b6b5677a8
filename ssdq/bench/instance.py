"""One instance of a multi-instance benchmark: ``python -m ssdq.bench.instance SPEC.json``.

A fresh interpreter per instance, because the placement has to be in force before mxnet (and
its OpenMP runtime) loads. ``main`` reads the spec, places the process (``place``: widen the
affinity to the driver's allowed CPUs, since it inherited the driver's pinning, reset the
inherited memory policy, then ``cpus.pin_threads`` to this instance's cores and memory node),
and only then imports what loads mxnet: ``instance_timing``, which times the graph and writes
the result. This module imports nothing that loads mxnet, as the command line's parser side.
"""
import importlib
import json
import sys

from ssdq.errors import SsdqError
from ssdq.host import cpus, mempolicy

TIMING = "ssdq.bench.instance_timing"


def place(spec):
    """Put this process on the instance's cores and memory node; -> the pinning record."""
    cpus.set_process_affinity(spec["allowed_cpus"])
    try:
        mempolicy.set_mempolicy(mempolicy.MPOL_DEFAULT)  # not the driver's, inherited
    except OSError:
        pass
    return cpus.pin_threads(cores=spec["cpus"], threads=spec["threads"],
                            membind=spec["membind"], strict=spec["strict"])


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    with open(argv[0]) as f:
        spec = json.load(f)
    try:
        pinned = place(spec)
        # the deferred import: the timing loads mxnet, which must come after the pinning
        return importlib.import_module(TIMING).run(spec, pinned)
    except SsdqError as exc:
        print("ssdq: error: %s" % exc, file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
