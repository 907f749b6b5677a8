"""ssdq.mempolicy and pin_threads' memory binding: set in a fresh process (the policy is the
process's own), read back from the kernel, and the refusal path."""
import json
import os
import subprocess
import sys
import textwrap

import pytest

from ssdq.host import mempolicy

from helpers import REPO

MARK = "@@RESULT@@"


def child(code):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OMP_", "GOMP_", "KMP_"))}
    env["PYTHONPATH"] = REPO
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    lines = [l for l in proc.stdout.splitlines() if l.startswith(MARK)]
    assert lines, proc.stdout[-2000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len(MARK):]), proc


BIND_CHILD = """
import json, sys
from ssdq.host import cpus, mempolicy
before = mempolicy.read_policy()
result = cpus.pin_threads(cores=[0], threads=1, membind=%r)
import mxnet as mx
x = mx.nd.ones((256, 256))
mx.nd.dot(x, x).wait_to_read()
from ssdq.host.environment import numa_record
print("@@RESULT@@" + json.dumps({"before": before, "pinned": result["numa"],
                                 "after_mxnet": mempolicy.read_policy(),
                                 "record": numa_record()}))
"""


def test_bind_reads_back_from_the_kernel():
    out, proc = child(BIND_CHILD % "bind")
    membind = out["pinned"]["membind"]
    if membind["error"]:
        pytest.skip("the kernel refused set_mempolicy here: %s" % membind["error"])
    assert out["before"]["mode"] == "default"
    node = out["pinned"]["nodes"][0]
    assert membind["read_back"] == {"mode": "bind", "nodes": [node]}
    assert out["after_mxnet"] == {"mode": "bind", "nodes": [node]}
    record = out["record"]
    assert record["memory_policy"] == {"mode": "bind", "nodes": [node]}
    assert record["node_used"] == [node]
    if record["pages_per_node"] is None:
        assert "numa_maps" in record["pages_per_node_error"]
    else:
        assert record["pages_per_node"].get(str(node), 0) > 1000  # mxnet's pages live there
    assert "warning" not in proc.stderr


def test_preferred_and_none():
    out, _ = child(BIND_CHILD % "preferred")
    if out["pinned"]["membind"]["error"]:
        pytest.skip("the kernel refused set_mempolicy here: %s" % out["pinned"]["membind"]["error"])
    assert out["after_mxnet"]["mode"] == "preferred"
    out, _ = child(BIND_CHILD % "none")
    assert out["pinned"]["membind"]["error"] is None
    assert out["after_mxnet"] == {"mode": "default", "nodes": []}


REFUSED_CHILD = """
import errno, json
from ssdq.host import cpus, mempolicy
from ssdq.errors import SsdqError
def refuse(mode, nodes=()):
    raise OSError(errno.EPERM, "Operation not permitted")
mempolicy.set_mempolicy = refuse
try:
    cpus.pin_threads(cores=[0], membind="bind", strict=%s)
    out = {"pinned": cpus.pinning()["numa"], "error": None}
except SsdqError as exc:
    out = {"pinned": None, "error": str(exc)}
print("@@RESULT@@" + json.dumps(out))
"""


def test_refusal_is_one_warning_line_or_an_error_with_strict():
    out, proc = child(REFUSED_CHILD % "False")
    assert "EPERM" in out["pinned"]["membind"]["error"]
    assert out["pinned"]["membind"]["read_back"]["mode"] == "default"
    warnings = [l for l in proc.stderr.splitlines() if l.startswith("ssdq: warning:")]
    assert len(warnings) == 1 and "EPERM" in warnings[0] and "--strict" in warnings[0]
    out, _ = child(REFUSED_CHILD % "True")
    assert out["pinned"] is None and "EPERM" in out["error"] and "MPOL_BIND" in out["error"]


def test_numa_maps_pages(tmp_path):
    maps = tmp_path / "numa_maps"
    maps.write_text("7f00 default file=/lib/x.so mapped=3 N0=2 N1=1 kernelpagesize_kB=4\n"
                    "7f10 bind:1 anon=5 dirty=5 N1=5 kernelpagesize_kB=4\n"
                    "7f20 default\n")
    assert mempolicy.numa_pages(str(maps)) == {"pages": {"0": 2, "1": 6}, "error": None}
    missing = mempolicy.numa_pages(str(tmp_path / "absent"))
    assert missing["pages"] is None and "ENOENT" in missing["error"]


def test_masks_round_trip():
    words = mempolicy._mask([0, 3, 64, 1023])
    assert mempolicy._nodes_of(words) == [0, 3, 64, 1023]
    with pytest.raises(ValueError):
        mempolicy._mask([1024])


def test_every_command_takes_the_numa_flags(fp32_prefix, tiny_data, tmp_path):
    from helpers import assert_clean_error, run_cli

    out = str(tmp_path / "eval.json")
    proc = run_cli("eval", "--model-prefix", fp32_prefix, "--data-root", tiny_data, "--numa-node",
                   "0", "--membind", "preferred", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr[-2000:]
    with open(out) as f:
        numa = json.load(f)["threads"]["numa"]
    assert numa["requested_node"] == 0 and numa["nodes"] == [0]
    if numa["membind"]["error"] is None:
        assert numa["membind"]["read_back"] == {"mode": "preferred", "nodes": [0]}
    assert_clean_error(run_cli("convert", "--numa-node", "7", "--out", str(tmp_path / "c")),
                       "NUMA node 7 does not exist")
    assert_clean_error(run_cli("convert", "--numa-node", "x", "--out", str(tmp_path / "c")),
                       "bad --numa-node")
