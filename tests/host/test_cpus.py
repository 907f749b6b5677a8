"""ssdq.cpus and ssdq.environment: thread pinning before mxnet loads, and the record of it.

Pinning only works before mxnet (and its libgomp) is loaded, and it changes the whole process,
so the real-effect tests run in a fresh ``python -c`` subprocess; argument parsing and the
pure helpers are tested in-process with the environment and affinity restored afterwards.
"""
import json
import os
import subprocess
import sys
import textwrap
import types

import psutil
import pytest

from ssdq.errors import SsdqError
from ssdq.host import cpus, environment

from helpers import REPO, needs_two_cpus

MARK = "@@RESULT@@"
CLEARED = cpus.THREAD_VARS + ("DNNL_VERBOSE", "MKLDNN_VERBOSE", "ONEDNN_VERBOSE",
                                 "OMP_DISPLAY_ENV", "OMP_DYNAMIC")


def run_child(code, **extra_env):
    """Run ``code`` in a fresh interpreter; it must print MARK + json as its last line."""
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env["PYTHONPATH"] = REPO
    env.update(extra_env)
    proc = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO,
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                          universal_newlines=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = [l for l in proc.stdout.splitlines() if l.startswith(MARK)]
    assert lines, proc.stdout[-3000:] + proc.stderr[-3000:]
    return json.loads(lines[-1][len(MARK):])


PINNED_CHILD = """
import json, subprocess, sys
from ssdq.host import cpus, environment
out = {"mxnet_loaded_before": "mxnet" in sys.modules}
first = cpus.pin_threads(cores=[0], threads=1)
out["first"] = first
out["second_equal"] = cpus.pin_threads(cores=[0], threads=1) == first
import mxnet, psutil, threadpoolctl
from ssdq.backends import mxnet_backend
x = mxnet.nd.ones((128, 128))
mxnet.nd.dot(x, x).wait_to_read()
out["threadpool"] = threadpoolctl.threadpool_info()
out["affinity"] = psutil.Process().cpu_affinity()
out["thread_affinities"] = sorted({c for t in psutil.Process().threads()
                                   for c in psutil.Process(t.id).cpu_affinity()})
out["same_after_import"] = cpus.pin_threads(cores=[0], threads=1) == first
try:
    cpus.pin_threads(cores=[0], threads=2)
    out["repin_error"] = None
except RuntimeError as exc:
    out["repin_error"] = str(exc)
spawned = []
run = subprocess.run
def counted_run(*args, **kwargs):
    spawned.append(args[0])
    return run(*args, **kwargs)
subprocess.run = counted_run
report = environment.environment_report(mxnet_backend.runtime_info())
out["first_report_spawned"] = list(spawned)
del spawned[:]
again = environment.environment_report(mxnet_backend.runtime_info())
out["second_report_spawned"] = list(spawned)
subprocess.run = run
out["report"] = report
def steady(r):  # pages per node is a live count: it grows between two reports
    return dict(r, numa={k: v for k, v in r["numa"].items() if k != "pages_per_node"})
out["reports_equal"] = (json.dumps(steady(report), sort_keys=True)
                        == json.dumps(steady(again), sort_keys=True))
out["text"] = environment.format_environment(report)
print("%s" + json.dumps(out))
""" % MARK


@pytest.fixture(scope="module")
def pinned():
    return run_child(PINNED_CHILD)


def test_pinning_takes_effect_in_mxnet_openmp(pinned):
    assert pinned["mxnet_loaded_before"] is False
    assert pinned["second_equal"] is True
    openmp = [lib for lib in pinned["threadpool"] if lib["user_api"] == "openmp"]
    assert [lib["prefix"] for lib in openmp] == ["libgomp"]
    assert openmp[0]["num_threads"] == 1
    # mxnet's OpenBLAS is built on the same libgomp, so it follows OMP_NUM_THREADS too
    mx_blas = [lib for lib in pinned["threadpool"]
               if lib["user_api"] == "blas" and "mxnet" in lib["filepath"]]
    assert mx_blas and all(lib["num_threads"] == 1 for lib in mx_blas)
    assert pinned["affinity"] == [0]
    assert pinned["thread_affinities"] == [0]


def test_pin_result_records_values_and_sources(pinned):
    first = pinned["first"]
    assert first["cores"] == [0] and first["threads"] == 1 and first["affinity_set"] is True
    assert first["requested"] == {"cores": [0], "threads": 1}
    env = first["env"]
    assert env["OMP_NUM_THREADS"] == {"value": "1", "source": "argument"}
    assert env["GOMP_CPU_AFFINITY"] == {"value": "0", "source": "argument"}
    assert env["OMP_PLACES"] == {"value": "{0}", "source": "argument"}
    assert env["OMP_PROC_BIND"] == {"value": "close", "source": "default"}
    assert env["KMP_AFFINITY"]["value"] == "granularity=fine,compact,1,0"
    assert env["KMP_BLOCKTIME"]["value"] == "1"
    assert "MXNET_USE_OPERATOR_TUNING" not in env


def test_repin_after_mxnet_import_is_a_runtime_error(pinned):
    assert pinned["same_after_import"] is True  # same arguments: idempotent
    assert pinned["repin_error"] and "mxnet" in pinned["repin_error"]


def test_environment_report(pinned):
    report = pinned["report"]
    for key in ("cpu_model", "isa", "logical_cpus", "physical_cores", "cores_used", "threads",
                "openmp_runtimes", "kmp_variables_effective", "versions", "mxnet_features"):
        assert key in report, key
    assert "hostname" not in json.dumps(report).lower()
    assert set(report["isa"]) == set(environment.ISA_FLAGS)
    assert all(isinstance(v, bool) for v in report["isa"].values())
    assert report["cores_used"] == [0]
    assert report["threads"]["OMP_NUM_THREADS"] == "1"
    assert report["threads"]["OMP_PLACES"] == "{0}"
    assert set(report["threads"]) == set(cpus.THREAD_VARS)
    assert [lib["prefix"] for lib in report["openmp_runtimes"]] == ["libgomp"]
    assert report["openmp_runtimes"][0]["num_threads"] == 1
    assert "libgomp" in report["openmp_runtimes"][0]["filepath"]
    assert report["kmp_variables_effective"] is False
    versions = report["versions"]
    assert versions["mxnet"] == "1.9.1" and versions["numpy"] == "1.23.5"
    assert versions["oneDNN"].startswith("2."), report["onednn"]
    assert versions["gluoncv"] and versions["python"] == "%d.%d.%d" % sys.version_info[:3]
    assert report["onednn"]["method"] and report["onednn"]["error"] is None
    assert report["mxnet_features"]["MKLDNN"] is True
    assert report["mxnet_features"]["OPENMP"] is True
    assert report["pinning"] == pinned["first"]
    with open("/proc/cpuinfo") as f:
        cpuinfo = f.read()
    assert report["cpu_model"] in cpuinfo
    assert report["isa"]["avx2"] == (" avx2" in cpuinfo)


def test_environment_report_is_cached(pinned):
    assert pinned["reports_equal"] is True
    # the oneDNN version probe (a DNNL_VERBOSE=1 interpreter) runs once a process, not a report
    probes = [cmd for cmd in pinned["first_report_spawned"] if "-c" in cmd]
    if pinned["report"]["onednn"]["method"] == "DNNL_VERBOSE=1 subprocess":
        assert len(probes) == 1, pinned["first_report_spawned"]
    assert pinned["second_report_spawned"] == []


def test_format_environment_from_real_report(pinned):
    text = pinned["text"]
    assert "libgomp" in text and "KMP_* variables have no effect" in text
    assert "oneDNN %s" % pinned["report"]["versions"]["oneDNN"] in text
    assert "mxnet 1.9.1" in text and "VNNI" in text and "AMX" in text
    assert len(text.splitlines()) <= 8


DEFAULT_CHILD = """
import json, os, psutil
from ssdq.host import cpus, environment
allowed = psutil.Process().cpu_affinity()
result = cpus.pin_threads()
print("%s" + json.dumps({"result": result, "allowed": allowed,
                         "affinity": psutil.Process().cpu_affinity(),
                         "env": {k: os.environ.get(k) for k in cpus.THREAD_VARS}}))
""" % MARK


def test_defaults_respect_user_environment():
    out = run_child(DEFAULT_CHILD, OMP_NUM_THREADS="1", KMP_BLOCKTIME="200")
    result, env = out["result"], out["result"]["env"]
    assert result["cores"] == cpus.physical_cores(out["allowed"])
    assert result["cores_source"] == "default"
    assert out["affinity"] == result["cores"]
    assert env["OMP_NUM_THREADS"] == {"value": "1", "source": "environment"}
    assert env["KMP_BLOCKTIME"] == {"value": "200", "source": "environment"}
    assert env["OMP_PLACES"]["source"] == "default"
    assert out["env"]["OMP_PLACES"] == ",".join("{%d}" % c for c in result["cores"])
    assert out["env"]["OMP_NUM_THREADS"] == "1" and out["env"]["KMP_BLOCKTIME"] == "200"


def test_user_placement_is_kept_without_cores_argument():
    out = run_child(DEFAULT_CHILD, OMP_PLACES="{0}")
    result = out["result"]
    assert result["affinity_set"] is False
    assert out["affinity"] == out["allowed"]
    assert result["env"]["OMP_PLACES"] == {"value": "{0}", "source": "environment"}
    assert out["env"]["OMP_PLACES"] == "{0}" and out["env"]["GOMP_CPU_AFFINITY"] is None
    assert result["warnings"]


def test_cores_argument_overrides_user_placement():
    code = DEFAULT_CHILD.replace("cpus.pin_threads()", "cpus.pin_threads(cores='0')")
    out = run_child(code, OMP_PLACES="{1}")
    assert out["result"]["env"]["OMP_PLACES"] == {"value": "{0}", "source": "argument"}
    assert out["env"]["OMP_PLACES"] == "{0}" and out["affinity"] == [0]
    assert any("OMP_PLACES" in w for w in out["result"]["warnings"])


# ---------------------------------------------------------------- in-process: parsing, helpers

@pytest.fixture
def untouched(monkeypatch):
    """Run pin_threads in-process safely: restore env, affinity and runtime state afterwards."""
    def ours():  # pytest itself rewrites PYTEST_CURRENT_TEST between phases
        return {k: v for k, v in os.environ.items() if k != "PYTEST_CURRENT_TEST"}

    proc = psutil.Process()
    affinity, environ = proc.cpu_affinity(), ours()
    monkeypatch.setattr(cpus, "_pinned", None)
    yield
    changed = (proc.cpu_affinity() != affinity, ours() != environ)
    proc.cpu_affinity(affinity)
    for name in set(ours()) - set(environ):
        del os.environ[name]
    os.environ.update(environ)
    assert changed == (False, False), "a rejected call changed the process"


@pytest.mark.parametrize("cores", ["abc", "0-", "3-1", "1,,2", "", [], ["0"], [-1], 0])
def test_bad_core_syntax(untouched, cores):
    with pytest.raises(SsdqError) as err:
        cpus.pin_threads(cores=cores)
    assert "\n" not in str(err.value)


def test_cores_outside_affinity(untouched):
    allowed = psutil.Process().cpu_affinity()
    specs = ["%d" % (max(allowed) + 1), "0-%d" % (max(allowed) + 1)]
    if 99 not in allowed:
        specs.append("99")
    for spec in specs:
        with pytest.raises(SsdqError, match="not available"):
            cpus.pin_threads(cores=spec)


@pytest.mark.parametrize("threads", [0, -2, "x", "1.5", 1.5, True])
def test_bad_threads(untouched, threads):
    with pytest.raises(SsdqError, match="--threads"):
        cpus.pin_threads(cores="0", threads=threads)


def test_pin_after_mxnet_import_in_process(untouched, monkeypatch):
    monkeypatch.setitem(sys.modules, "mxnet", types.ModuleType("mxnet"))
    with pytest.raises(RuntimeError, match="before mxnet is imported"):
        cpus.pin_threads()


def test_parse_and_format_cpu_lists():
    allowed = list(range(16))
    assert cpus.parse_cores("0-3,6", allowed) == [0, 1, 2, 3, 6]
    assert cpus.parse_cores(" 6, 0-3 ,2", allowed) == [0, 1, 2, 3, 6]
    assert cpus.parse_cores([5, 1, 5], allowed) == [1, 5]
    assert cpus.format_cpu_list([6, 0, 1, 2, 3]) == "0-3,6"
    assert cpus.format_cpu_list([0, 2, 4]) == "0,2,4"
    with pytest.raises(SsdqError):
        cpus.parse_cores("0-3", [0, 1])


def test_physical_cores_skips_hyperthread_siblings(fake_host):
    root = fake_host(nodes={0: "0-7"}, siblings=["0,4", "1,5", "2,6", "3,7"] * 2)
    assert cpus.physical_cores(range(8), sysfs_root=root) == [0, 1, 2, 3]
    assert cpus.physical_cores([4, 5, 6, 7], sysfs_root=root) == [4, 5, 6, 7]  # siblings not allowed
    assert cpus.physical_cores([1, 4, 5], sysfs_root=root) == [1, 4]
    bare = fake_host(nodes={0: "0-7"}, siblings=None)  # no topology files: affinity as is
    assert cpus.physical_cores([0, 4], sysfs_root=bare) == [0, 4]


def test_check_numpy_passes_with_pinned_numpy():
    loaded = "mxnet" in sys.modules
    assert environment.check_numpy() == "1.23.5"
    assert ("mxnet" in sys.modules) == loaded  # no mxnet import to find out


@pytest.mark.parametrize("version", ["1.26.0", "1.24.0rc1", "2.0.2"])
def test_check_numpy_rejects_new_numpy(monkeypatch, version):
    monkeypatch.setattr(environment, "_dist_version", lambda name: version)
    with pytest.raises(SsdqError) as err:
        environment.check_numpy()
    message = str(err.value)
    assert "numpy==1.23.5" in message and version in message and "\n" not in message


def test_check_numpy_accepts_older(monkeypatch):
    monkeypatch.setattr(environment, "_dist_version", lambda name: "1.23.1")
    assert environment.check_numpy() == "1.23.1"


def test_format_environment_on_an_amx_xeon():
    report = {
        "cpu_model": "Intel(R) Xeon(R) Platinum 8480+",
        "isa": {f: True for f in environment.ISA_FLAGS},
        "logical_cpus": 224, "physical_cores": 112, "cores_used": [0, 1, 2, 3],
        "threads": {"OMP_NUM_THREADS": "4", "OMP_PROC_BIND": "close",
                    "OMP_PLACES": "{0},{1},{2},{3}"},
        "openmp_runtimes": [{"prefix": "libiomp", "version": None, "num_threads": 4,
                             "filepath": "/opt/libiomp5.so"}],
        "kmp_variables_effective": True,
        "versions": {"python": "3.11.7", "mxnet": "1.9.1", "numpy": "1.23.5",
                     "gluoncv": "0.10.5.post0", "oneDNN": "2.4.4"},
        "onednn": {"isa": "Intel AVX-512 with Intel AMX"},
    }
    text = environment.format_environment(report)
    assert "AVX512-VNNI yes" in text and "AVX512-BF16 yes" in text and "AMX yes" in text
    assert "0-3 (4 in use)" in text and "KMP_* variables in effect" in text
    assert "Intel AMX" in text and "Xeon" in text


@needs_two_cpus
def test_cores_off_the_requested_node(untouched, fake_host, monkeypatch):
    monkeypatch.setitem(sys.modules, "mxnet", types.ModuleType("mxnet"))  # bad input comes first
    root = fake_host(nodes={0: "0", 1: "1"}, siblings=["0", "1"])
    with pytest.raises(SsdqError, match="not all on --numa-node 1"):
        cpus.pin_threads(cores="0", numa_node=1, sysfs_root=root)
    with pytest.raises(SsdqError, match="--membind"):
        cpus.pin_threads(cores="0", membind="interleave", sysfs_root=root)
