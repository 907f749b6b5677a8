"""ssdq.multi_instance (and ssdq.instance): instance plans on fake hosts, and a real two-instance
run of the thin reference network whose placement is read back from the kernel."""
import csv
import json
import os

import psutil
import pytest

from ssdq.bench.multi_instance import plan_instances
from ssdq.errors import SsdqError
from ssdq.host.topology import read_topology
from ssdq.report.compare import compare

from helpers import assert_clean_error, run_cli


def rng(lo, hi):
    return list(range(lo, hi + 1))


def host(fake_host, nodes, cores, **kw):
    root = fake_host(nodes=nodes, siblings=lambda c: "%d,%d" % (c % cores, c % cores + cores), **kw)
    return read_topology(root, os.path.join(root, "status"))


@pytest.fixture
def two_sockets(fake_host):
    return host(fake_host, {0: "0-27,56-83", 1: "28-55,84-111"}, 56)


def test_throughput_mode_is_one_instance_per_socket(two_sockets):
    plan = plan_instances(two_sockets, mode="throughput")
    assert [p["cpus"] for p in plan] == [rng(0, 27), rng(28, 55)]
    assert [p["membind_nodes"] for p in plan] == [[0], [1]]


def test_latency_mode_is_four_cores_never_across_a_socket(two_sockets):
    plan = plan_instances(two_sockets, mode="latency")
    assert len(plan) == 14 and plan[0]["cpus"] == [0, 1, 2, 3]
    assert plan[6]["cpus"] == [24, 25, 26, 27] and plan[7]["cpus"] == [28, 29, 30, 31]
    assert all(len(p["nodes"]) == 1 and p["membind_nodes"] == p["nodes"] for p in plan)
    assert len(plan_instances(two_sockets, mode="latency", numa_node=1)) == 7


def test_uneven_sub_numa_clusters(fake_host):
    topo = host(fake_host, {0: "0-42,128-170", 1: "43-85,171-213", 2: "86-127,214-255"}, 128)
    assert [len(p["cpus"]) for p in plan_instances(topo, mode="throughput")] == [43, 43, 42]
    latency = plan_instances(topo, mode="latency")
    assert len(latency) == 30  # 10 + 10 + 10: the leftover 3, 3 and 2 cores stay idle
    assert latency[10]["cpus"] == [43, 44, 45, 46] and latency[20]["cpus"] == [86, 87, 88, 89]


def test_explicit_sizes_and_an_instance_larger_than_a_node(two_sockets):
    plan = plan_instances(two_sockets, instances=4, cores_per_instance=7, numa_node=0)
    assert [p["cpus"][0] for p in plan] == [0, 7, 14, 21] and {n for p in plan for n in p["nodes"]} == {0}
    big = plan_instances(two_sockets, instances=1, cores_per_instance=40)
    assert big[0]["cpus"] == rng(0, 39) and big[0]["membind_nodes"] == [0, 1]
    assert [len(p["cpus"]) for p in plan_instances(two_sockets, instances=2)] == [28, 28]


def test_container_cpuset_on_the_second_socket(fake_host):
    topo = host(fake_host, {0: "0-39,80-119", 1: "40-79,120-159"}, 80, cpus_allowed="40-79",
                mems_allowed="1")
    plan = plan_instances(topo, mode="latency")
    assert len(plan) == 10 and plan[0]["cpus"] == [40, 41, 42, 43]
    assert all(p["membind_nodes"] == [1] for p in plan)


def test_plan_errors(two_sockets):
    with pytest.raises(SsdqError, match="needs 60 cores.*56 physical"):
        plan_instances(two_sockets, instances=6, cores_per_instance=10)
    with pytest.raises(SsdqError, match="overlap on CPU 2-3"):
        plan_instances(two_sockets, instance_cores=["0-3", "2-5"])
    with pytest.raises(SsdqError, match="node 4 does not exist"):
        plan_instances(two_sockets, mode="latency", numa_node=4)
    with pytest.raises(SsdqError, match="one instance per node"):
        plan_instances(two_sockets, mode="throughput", instances=3)
    with pytest.raises(SsdqError, match="not available"):
        plan_instances(two_sockets, instance_cores=["0-3", "200"])


@pytest.mark.skipif(len(psutil.Process().cpu_affinity()) < 2, reason="needs two CPUs")
def test_two_instances_one_core_each(fp32_prefix, int8_prefix, tiny_data, tmp_path):
    out = str(tmp_path / "bench.json")
    proc = run_cli("bench", "--model-prefix", fp32_prefix, "--int8-prefix", int8_prefix,
                   "--data-root", tiny_data, "--precisions", "int8", "--scopes", "network",
                   "--batch-sizes", "2", "--warmup", "1", "--repeats", "2", "--instances", "2",
                   "--cores-per-instance", "1", "--out", out, "--quiet")
    assert proc.returncode == 0, proc.stderr[-3000:]
    with open(out) as f:
        bench = json.load(f)
    allowed = sorted(psutil.Process().cpu_affinity())
    instances = bench["instances"]
    assert [i["cpus"] for i in instances] == [[allowed[0]], [allowed[1]]]  # read back
    for inst in instances:
        assert inst["threads_on_own_cpus"] is True and len(inst["threads"]) > 1
        assert all(t["cpus"] == inst["cpus_list"] for t in inst["threads"])
        assert inst["omp"]["OMP_NUM_THREADS"] == "1"
        assert inst["images"] == 4 and inst["images_per_sec"] > 0
        lat = inst["latency_ms"]
        # two runs, nearest rank: p50 the faster, p90 and p99 the slower; the instance's timed
        # window holds both, so its img/s is at most the batches over their latencies
        assert lat["p50"] > 0 and lat["p90"] == lat["p99"]
        assert inst["images_per_sec"] <= inst["images"] * 1000 / (lat["p50"] + lat["p99"]) * 1.0001
        if inst["membind_requested"]["error"] is None:
            assert inst["membind"] == {"mode": "bind", "nodes": [inst["numa_node"]]}
        assert os.path.isfile(inst["log"])
    total = bench["total"]
    assert total["images"] == 8 and total["placement_ok"] is True
    assert total["sum_images_per_sec"] == pytest.approx(sum(i["images_per_sec"] for i in instances))
    assert total["images_per_sec"] <= total["sum_images_per_sec"] * 1.0001  # common wall time
    assert bench["single_instance"]["cpus"] == allowed[:2]
    assert len(bench["rounds"]) == 1 and set(bench["settings"]["load_average_1min"]) == {"before", "after"}
    with open(str(tmp_path / "bench.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [r["row"] for r in rows] == ["instance-0", "instance-1", "total", "single-instance"]
    assert rows[0]["cpus"] == str(allowed[0]) and float(rows[2]["images_per_sec"]) > 0
    assert os.path.isfile(str(tmp_path / "bench.md"))
    ok, lines = compare(out, min_throughput=0.001)
    assert ok and any("placement" in l for l in lines)
    ok, _ = compare(out, min_throughput=1e9)
    assert not ok
    gate = run_cli("compare", out, "--min-throughput", "1e9")
    assert gate.returncode == 1 and "FAIL multi-instance throughput" in gate.stdout


def test_compare_fails_on_placement_read_back(tmp_path):
    path = tmp_path / "bench.json"
    path.write_text(json.dumps({"instances": [], "total": {
        "images_per_sec": 5.0, "sum_images_per_sec": 5.5, "placement_ok": False}}))
    ok, lines = compare(str(path))
    assert not ok and lines[0].startswith("FAIL placement")


def test_cli_errors(tiny_data, fp32_prefix):
    common = ("bench", "--model-prefix", fp32_prefix, "--data-root", tiny_data,
              "--precisions", "fp32", "--quiet")
    n = len(psutil.Process().cpu_affinity())
    assert_clean_error(run_cli(*common, "--instances", str(n + 1), "--cores-per-instance", "1"),
                       "needs %d cores" % (n + 1))
    assert_clean_error(run_cli(*common, "--instance-cores", "0", "0"), "overlap")
    assert_clean_error(run_cli(*common, "--numa-node", "9", "--instances", "1"),
                       "NUMA node 9 does not exist")
