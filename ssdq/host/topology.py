"""NUMA topology as the kernel reports it, seen through this process's cpuset.

Read from sysfs (``devices/system/node/node*/cpulist``, ``has_cpu``, ``has_memory``, ``distance``
and ``devices/system/cpu/cpu*/topology/thread_siblings_list``) and intersected with the CPUs and
memory nodes this process may use (``Cpus_allowed_list`` / ``Mems_allowed_list`` of
``/proc/self/status``: a container's cpuset). ``sysfs_root`` and ``status_path`` are parameters so
tests build fake hosts as directory trees.

Sibling numbering is read, never assumed: Intel hosts number the second hyper-thread of core N as
N + cores (0 and 56 share a core), many VMs number siblings adjacently (0 and 1 share a core).
"""
import dataclasses
import os
import re

import psutil

from ssdq.errors import SsdqError


def parse_cpu_list(text):
    """Kernel list syntax "0-3,8,10-11" -> sorted ints; empty text -> []."""
    out = set()
    for item in (text or "").strip().split(","):
        item = item.strip()
        if not item:
            continue
        match = re.fullmatch(r"(\d+)(?:-(\d+))?", item)
        if not match:
            raise ValueError("not a kernel CPU/node list: %r" % text)
        lo = int(match.group(1))
        hi = int(match.group(2)) if match.group(2) else lo
        out.update(range(lo, hi + 1))
    return sorted(out)


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


def read_file(path):
    """A kernel file's text, or None where it is missing or unreadable."""
    try:
        with open(path) as f:
            return f.read()
    except OSError:
        return None


def _read_list(path):
    text = read_file(path)
    if text is None:
        return None
    try:
        return parse_cpu_list(text)
    except ValueError:
        return None


def read_status(status_path="/proc/self/status"):
    """(Cpus_allowed_list, Mems_allowed_list) of a /proc status file; None where missing."""
    text = read_file(status_path) or ""
    found = {}
    for key in ("Cpus_allowed_list", "Mems_allowed_list"):
        match = re.search(r"^%s:\s*(\S*)\s*$" % key, text, re.M)
        found[key] = parse_cpu_list(match.group(1)) if match else None
    return found["Cpus_allowed_list"], found["Mems_allowed_list"]


@dataclasses.dataclass
class Node:
    node: int
    cpus: list  # every CPU of the node the kernel lists
    allowed_cpus: list  # those this process may run on
    cores: list  # one allowed CPU per physical core (the lowest allowed sibling)
    has_memory: bool
    memory_allowed: bool  # in Mems_allowed_list
    distances: dict  # node -> distance (sysfs ``distance``); {} when not given


@dataclasses.dataclass
class Topology:
    nodes: dict  # node number -> Node
    siblings: dict  # cpu -> set of CPUs sharing its core (itself included)
    allowed_cpus: list
    allowed_mems: list
    numa_sysfs: bool  # False: the kernel has no node directory; one node 0 was assumed

    def node_of(self, cpu):
        for node in self.nodes.values():
            if cpu in node.cpus:
                return node.node
        return None

    def cpu_nodes(self):
        """Nodes that have CPUs this process may use, in order."""
        return [n for n in sorted(self.nodes) if self.nodes[n].cores]

    def memory_nodes(self):
        """Nodes with memory this process may allocate from."""
        return [n for n in sorted(self.nodes)
                if self.nodes[n].has_memory and self.nodes[n].memory_allowed]

    def cores(self, nodes=None):
        """One CPU per allowed physical core, node by node (all CPU nodes by default)."""
        nodes = self.cpu_nodes() if nodes is None else nodes
        return [c for n in nodes for c in self.nodes[n].cores]

    def physical_cores(self, cpus):
        """One CPU per physical core among ``cpus``: the lowest sibling of each core in ``cpus``."""
        cpus = sorted(set(cpus))
        allowed = set(cpus)
        return [c for c in cpus if c == min((self.siblings.get(c) or {c}) & allowed or {c})]

    def memory_for(self, nodes):
        """Memory nodes to bind ``nodes``' CPUs to: each node itself when it has memory this
        process may use, otherwise the nearest such node by sysfs distance."""
        usable = self.memory_nodes()
        if not usable:
            return []
        out = set()
        for n in nodes:
            if n in usable:
                out.add(n)
                continue
            distances = self.nodes[n].distances if n in self.nodes else {}
            out.add(min(usable, key=lambda m: (distances.get(m, 255), m)))
        return sorted(out)

    def describe(self):
        """JSON-ready summary for the environment record."""
        return [{"node": n.node, "cpus": _fmt(n.cpus), "allowed_cpus": _fmt(n.allowed_cpus),
                 "physical_cores": len(n.cores), "has_memory": n.has_memory,
                 "memory_allowed": n.memory_allowed} for n in self.nodes.values()]


def _fmt(cpus):
    return format_cpu_list(cpus)


def read_topology(sysfs_root="/sys", status_path="/proc/self/status", allowed_cpus=None):
    """The host's nodes and SMT siblings, restricted to what this process may use.

    ``allowed_cpus``: default the ``Cpus_allowed_list`` of ``status_path`` (else psutil's
    affinity). Without a node directory (a kernel built without NUMA) all online CPUs form node 0.
    """
    status_cpus, status_mems = read_status(status_path)
    if allowed_cpus is None:
        allowed_cpus = status_cpus
    if allowed_cpus is None:
        allowed_cpus = psutil.Process().cpu_affinity()
    allowed_cpus = sorted(set(allowed_cpus))
    node_dir = os.path.join(sysfs_root, "devices", "system", "node")
    cpu_dir = os.path.join(sysfs_root, "devices", "system", "cpu")
    node_cpus = {}
    if os.path.isdir(node_dir):
        for name in os.listdir(node_dir):
            match = re.fullmatch(r"node(\d+)", name)
            if match:
                node_cpus[int(match.group(1))] = _read_list(os.path.join(node_dir, name,
                                                                          "cpulist")) or []
    numa_sysfs = bool(node_cpus)
    if not numa_sysfs:
        node_cpus = {0: _read_list(os.path.join(cpu_dir, "online")) or list(allowed_cpus)}
    has_cpu = _read_list(os.path.join(node_dir, "has_cpu"))
    has_memory = _read_list(os.path.join(node_dir, "has_memory"))
    if has_cpu is not None:  # has_cpu is authoritative: a listed cpulist of an offline node
        node_cpus = {n: (c if n in has_cpu else []) for n, c in node_cpus.items()}
    if has_memory is None:
        has_memory = sorted(node_cpus)  # no information: assume every node has memory
    allowed_mems = status_mems if status_mems is not None else sorted(node_cpus)

    all_cpus = sorted({c for cpus in node_cpus.values() for c in cpus} | set(allowed_cpus))
    siblings = {}
    for cpu in all_cpus:
        found = _read_list(os.path.join(cpu_dir, "cpu%d" % cpu, "topology",
                                        "thread_siblings_list"))
        siblings[cpu] = set(found) | {cpu} if found else {cpu}
    allowed = set(allowed_cpus)
    nodes = {}
    for n in sorted(node_cpus):
        cpus = node_cpus[n]
        mine = [c for c in cpus if c in allowed]
        mine_set = set(mine)
        cores = [c for c in mine if c == min(siblings[c] & mine_set)]
        distances = {}
        row = (read_file(os.path.join(node_dir, "node%d" % n, "distance")) or "").split()
        if len(row) == len(node_cpus) and all(x.isdigit() for x in row):
            distances = dict(zip(sorted(node_cpus), map(int, row)))
        nodes[n] = Node(node=n, cpus=cpus, allowed_cpus=mine, cores=cores,
                        has_memory=n in has_memory, memory_allowed=n in allowed_mems,
                        distances=distances)
    return Topology(nodes=nodes, siblings=siblings, allowed_cpus=allowed_cpus,
                    allowed_mems=allowed_mems, numa_sysfs=numa_sysfs)


def parse_node(spec):
    """``--numa-node`` value: None, "all", or a node number (int or digit string)."""
    if spec is None or spec == "all":
        return spec
    if isinstance(spec, int) and not isinstance(spec, bool) and spec >= 0:
        return spec
    if isinstance(spec, str) and spec.strip().isdigit():
        return int(spec)
    raise SsdqError("bad --numa-node %r: expected a node number or 'all'" % (spec,))


def check_node(topology, node):
    """Refuse a node that does not exist or has no CPU this process may use."""
    if node not in topology.nodes:
        raise SsdqError("NUMA node %d does not exist (nodes: %s)" % (
            node, ",".join(str(n) for n in sorted(topology.nodes))))
    if not topology.nodes[node].cores:
        raise SsdqError("NUMA node %d has no CPU this process may use (its CPUs: %s; allowed: "
                        "%s)" % (node, _fmt(topology.nodes[node].cpus) or "none",
                                 _fmt(topology.allowed_cpus)))


def choose_cores(topology, numa_node=None, threads=None):
    """The cores and nodes an engineer would pin a job to: (cores, nodes).

    ``numa_node`` N: node N's physical cores; "all": every allowed physical core. Default: one
    node, the one with the most allowed physical cores (the lowest-numbered on a tie), unless
    ``threads`` asks for more cores than it has; then whole nodes are added in that order.
    """
    numa_node = parse_node(numa_node)
    if numa_node == "all":
        nodes = topology.cpu_nodes()
    elif numa_node is not None:
        check_node(topology, numa_node)
        nodes = [numa_node]
    else:
        ranked = sorted(topology.cpu_nodes(), key=lambda n: (-len(topology.nodes[n].cores), n))
        if not ranked:
            raise SsdqError("no CPU of this process's affinity (%s) is listed in any NUMA node"
                            % _fmt(topology.allowed_cpus))
        nodes = [ranked[0]]
        for n in ranked[1:]:
            if threads is None or len(topology.cores(nodes)) >= threads:
                break
            nodes.append(n)
        nodes.sort()
    return topology.cores(nodes), nodes
