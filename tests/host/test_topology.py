"""ssdq.topology: fake hosts built as sysfs trees; each test asserts what an engineer would pick
by hand (the cores numactl --physcpubind and the node --membind would name)."""
import os

import pytest

from ssdq.errors import SsdqError
from ssdq.host.topology import choose_cores, parse_cpu_list, read_status, read_topology


def rng(lo, hi):
    return list(range(lo, hi + 1))


def intel_siblings(cores):
    """Intel numbering: CPU N and N + cores are the two threads of core N."""
    return lambda cpu: "%d,%d" % (cpu % cores, cpu % cores + cores)


def load(root, **kw):
    return read_topology(root, os.path.join(root, "status"), **kw)


@pytest.fixture
def two_sockets(fake_host):
    """2 x 28 cores with hyper-threading, as the recipe's Xeon 8180 host."""
    return load(fake_host(nodes={0: "0-27,56-83", 1: "28-55,84-111"},
                          siblings=intel_siblings(56)))


def test_two_sockets_default_is_one_socket_like_the_recipe(two_sockets):
    cores, nodes = choose_cores(two_sockets)
    assert (cores, nodes) == (rng(0, 27), [0])  # numactl --physcpubind=0-27 --membind=0
    assert two_sockets.memory_for(nodes) == [0]


def test_two_sockets_explicit_node_all_and_a_job_too_big_for_one(two_sockets):
    assert choose_cores(two_sockets, numa_node=1) == (rng(28, 55), [1])
    assert choose_cores(two_sockets, numa_node="1") == (rng(28, 55), [1])
    assert choose_cores(two_sockets, numa_node="all") == (rng(0, 55), [0, 1])
    assert choose_cores(two_sockets, threads=28) == (rng(0, 27), [0])  # fits: one node
    assert choose_cores(two_sockets, threads=40) == (rng(0, 55), [0, 1])
    assert two_sockets.memory_for([0, 1]) == [0, 1]
    assert two_sockets.node_of(84) == 1 and two_sockets.siblings[84] == {28, 84}


def test_vm_with_adjacent_siblings(fake_host):
    topo = load(fake_host(nodes={0: "0-7"}, siblings=lambda c: "%d-%d" % (c - c % 2, c - c % 2 + 1)))
    assert choose_cores(topo) == ([0, 2, 4, 6], [0])  # not 0-3, which is two cores twice


def test_uneven_sub_numa_clusters(fake_host):
    topo = load(fake_host(nodes={0: "0-42,128-170", 1: "43-85,171-213", 2: "86-127,214-255"},
                          siblings=intel_siblings(128)))
    assert [len(topo.nodes[n].cores) for n in (0, 1, 2)] == [43, 43, 42]
    assert choose_cores(topo) == (rng(0, 42), [0])  # largest cluster, lowest on a tie
    assert choose_cores(topo, numa_node=2) == (rng(86, 127), [2])
    assert choose_cores(topo, threads=60) == (rng(0, 85), [0, 1])


def test_memory_only_node_gets_no_cores(fake_host):
    topo = load(fake_host(nodes={0: "0-3", 1: ""}, siblings=lambda c: str(c)))
    assert topo.cpu_nodes() == [0] and topo.memory_nodes() == [0, 1]
    assert choose_cores(topo) == ([0, 1, 2, 3], [0])
    assert choose_cores(topo, numa_node="all") == ([0, 1, 2, 3], [0])
    assert topo.memory_for([0]) == [0]  # not the far memory-only node
    with pytest.raises(SsdqError, match="node 1 has no CPU"):
        choose_cores(topo, numa_node=1)


def test_cpu_node_without_memory_binds_the_nearest_memory(fake_host):
    topo = load(fake_host(nodes={0: "0-3", 1: "", 2: ""}, has_memory=[1, 2],
                          distances={0: [10, 30, 20], 1: [30, 10, 40], 2: [20, 40, 10]}))
    assert choose_cores(topo) == ([0, 1, 2, 3], [0])
    assert topo.memory_for([0]) == [2]


def test_container_cpuset_on_the_second_socket(fake_host):
    topo = load(fake_host(nodes={0: "0-39,80-119", 1: "40-79,120-159"},
                          siblings=intel_siblings(80), cpus_allowed="40-79", mems_allowed="1"))
    assert topo.allowed_cpus == rng(40, 79) and topo.allowed_mems == [1]
    assert choose_cores(topo) == (rng(40, 79), [1])
    assert choose_cores(topo, numa_node="all") == (rng(40, 79), [1])
    assert topo.memory_for([1]) == [1] and topo.memory_nodes() == [1]
    with pytest.raises(SsdqError, match="node 0 has no CPU this process may use"):
        choose_cores(topo, numa_node=0)
    with pytest.raises(SsdqError, match="NUMA node 5 does not exist"):
        choose_cores(topo, numa_node=5)


def test_allowed_cpus_argument_overrides_the_status_file(fake_host):
    root = fake_host(nodes={0: "0-3,8-11", 1: "4-7,12-15"}, siblings=intel_siblings(8))
    topo = load(root, allowed_cpus=[4, 5, 12, 13])
    assert choose_cores(topo) == ([4, 5], [1])


def test_kernel_without_numa_is_one_node(tmp_path):
    (tmp_path / "devices" / "system" / "cpu").mkdir(parents=True)
    (tmp_path / "devices" / "system" / "cpu" / "online").write_text("0-3\n")
    topo = read_topology(str(tmp_path), str(tmp_path / "missing"), allowed_cpus=[0, 1, 2, 3])
    assert topo.numa_sysfs is False and choose_cores(topo) == ([0, 1, 2, 3], [0])
    assert topo.memory_for([0]) == [0]


def test_bad_node_specs(two_sockets):
    for spec in ("x", "-1", "1.5", True):
        with pytest.raises(SsdqError, match="--numa-node"):
            choose_cores(two_sockets, numa_node=spec)


def test_this_host_and_its_status():
    cpus, mems = read_status()
    topo = read_topology()
    assert cpus == topo.allowed_cpus and mems == topo.allowed_mems
    cores, nodes = choose_cores(topo)
    assert cores and set(cores) <= set(cpus) and nodes
    assert parse_cpu_list("0-2,5\n") == [0, 1, 2, 5] and parse_cpu_list("") == []
