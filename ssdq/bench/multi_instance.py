"""Multi-instance benchmark, as Intel's launchers run CI on Xeon hosts, without numactl.

N instances (``instance.py``, a fresh interpreter each), each pinned to its own physical cores
and bound to its node's memory, its own OpenMP settings; all load and warm up, then start
together behind a barrier. Per instance: img/s over its timed window and latency p50/p90/p99
(nearest rank); overall: all images / (last end - first start), and the sum of the instances'
img/s. Each round also runs one instance on all those cores (the single-instance figure of the
same run) just before the N instances, so the two are compared in turns on a shared machine.

Placement is read back by each instance from the kernel, never echoed from what was asked:
``cpus`` is the union of its threads' ``Cpus_allowed_list``, ``membind`` its get_mempolicy.
Presets: ``latency`` = 4 cores an instance, never across nodes; ``throughput`` = one instance
per node with all its cores.
"""
import csv
import io
import json
import os
import select
import statistics
import subprocess
import sys
import time

import numpy as np
from tqdm import tqdm

from ssdq.backends import mxnet_backend
from ssdq.bench.harness import _batch
from ssdq.bench.options import MODES
from ssdq.data.loader import iterate_batches
from ssdq.errors import SsdqError
from ssdq.fileio import utc_now, write_json, write_text
from ssdq.host.cpus import THREAD_VARS, parse_cores, pinning
from ssdq.host.environment import environment_report, format_environment
from ssdq.host.topology import check_node, format_cpu_list, parse_node, read_topology
from ssdq.model.checkpoint import checkpoint_files, resolve_prefix
from ssdq.timing import nearest_rank_latency_ms

LATENCY_CORES = 4
READY_TIMEOUT_S = 3600


def plan_instances(topology, instances=None, cores_per_instance=None, mode=None, numa_node=None,
                   instance_cores=None):
    """Cores and nodes of each instance: [{"cpus", "nodes", "membind_nodes"}].

    ``instance_cores``: explicit CPU lists (strings like "0-3"), one per instance. Otherwise
    instances of ``cores_per_instance`` physical cores are cut node by node (never across a
    node while it fits in one), over ``numa_node`` (a number, "all" or None = all nodes).
    """

    numa_node = parse_node(numa_node)
    for name, value in (("--instances", instances), ("--cores-per-instance", cores_per_instance)):
        if value is not None and value < 1:
            raise SsdqError("%s must be at least 1, got %d" % (name, value))
    if mode is not None and mode not in MODES:
        raise SsdqError("bad --mode %r: choose from %s" % (mode, ", ".join(MODES)))
    if isinstance(numa_node, int):
        check_node(topology, numa_node)
        nodes = [numa_node]
    else:
        nodes = topology.cpu_nodes()
    if instance_cores:
        groups = [parse_cores(spec, topology.allowed_cpus) for spec in instance_cores]
        for i, a in enumerate(groups):
            for j in range(i):
                shared = sorted(set(a) & set(groups[j]))
                if shared:
                    raise SsdqError("instances %d and %d overlap on CPU %s: each instance needs "
                                    "its own cores" % (j, i, format_cpu_list(shared)))
    else:
        groups = _cut(topology, nodes, instances, cores_per_instance, mode)
    plan = []
    for cpus in groups:
        cpu_nodes = sorted({topology.node_of(c) for c in cpus} - {None})
        plan.append({"cpus": cpus, "nodes": cpu_nodes,
                     "membind_nodes": topology.memory_for(cpu_nodes)})
    return plan


def _cut(topology, nodes, instances, k, mode):
    per_node = {n: topology.nodes[n].cores for n in nodes}
    total = [c for n in nodes for c in per_node[n]]
    where = "node %d" % nodes[0] if len(nodes) == 1 else "nodes %s" % ",".join(map(str, nodes))
    if mode == "throughput" and k is None:
        groups = [per_node[n] for n in nodes]
        if instances is not None:
            if instances > len(groups):
                raise SsdqError("--mode throughput runs one instance per node, but --instances "
                                "%d > %d node(s) with allowed cores (%s)" % (
                                    instances, len(groups), where))
            groups = groups[:instances]
        return groups
    if k is None:
        if mode == "latency":
            k = LATENCY_CORES
        elif instances is not None:
            k = len(total) // instances
            if k < 1:
                raise SsdqError("--instances %d needs at least %d cores, but this process may use "
                                "%d physical core(s) on %s (%s)" % (
                                    instances, instances, len(total), where,
                                    format_cpu_list(total)))
        else:
            raise SsdqError("give --instances, --cores-per-instance or --mode")
    if instances is not None and instances * k > len(total):
        raise SsdqError("--instances %d x --cores-per-instance %d needs %d cores, but this process "
                        "may use %d physical core(s) on %s (%s)" % (
                            instances, k, instances * k, len(total), where,
                            format_cpu_list(total)))
    groups = [cores[i:i + k] for cores in per_node.values() for i in range(0, len(cores) - k + 1, k)]
    wanted = instances if instances is not None else len(groups)
    if len(groups) < wanted or not groups:
        if mode == "latency":
            raise SsdqError("--mode latency keeps each instance's %d cores in one node, but %s "
                            "has room for only %d such instance(s) (%s); pass "
                            "--cores-per-instance" % (k, where, len(groups),
                                                      format_cpu_list(total)))
        if k > len(total):
            raise SsdqError("--cores-per-instance %d is more than the %d physical core(s) this "
                            "process may use on %s (%s)" % (k, len(total), where,
                                                            format_cpu_list(total)))
        # instances larger than a node (or nodes with leftovers): consecutive cores across nodes
        groups = [total[i:i + k] for i in range(0, len(total) - k + 1, k)]
    return groups[:wanted]


def _worker_env():
    """The driver's environment without the OpenMP settings its own pinning exported, so each
    instance's come from its own pinning (a user's exported values are kept)."""
    env = dict(os.environ)
    mine = (pinning() or {}).get("env", {})
    for name in THREAD_VARS:
        if name in mine and mine[name]["source"] != "environment":
            env.pop(name, None)
    env["PYTHONPATH"] = os.pathsep.join(
        p for p in (os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))),
                    env.get("PYTHONPATH")) if p)
    env.setdefault("MXNET_SUBGRAPH_VERBOSE", "0")
    return env


def run_round(plan, common, log_dir, label):
    """Start one process per instance of ``plan``, release them together once all are warm,
    and return their result dicts (in plan order). Logs: LOG_DIR/LABEL-I.log."""

    os.makedirs(log_dir, exist_ok=True)
    env = _worker_env()
    procs = []
    try:
        for i, inst in enumerate(plan):
            read_fd, write_fd = os.pipe()
            stem = os.path.join(log_dir, "%s-%d" % (label, i))
            spec = dict(common, index=i, cpus=inst["cpus"], threads=len(inst["cpus"]),
                        ready_fd=write_fd, result=stem + ".json")
            if os.path.exists(spec["result"]):
                os.remove(spec["result"])
            write_json(stem + ".spec.json", spec)
            with open(stem + ".log", "w") as log:
                proc = subprocess.Popen([sys.executable, "-m", "ssdq.bench.instance", stem + ".spec.json"],
                                        stdin=subprocess.PIPE, stdout=log, stderr=subprocess.STDOUT,
                                        env=env, pass_fds=(write_fd,), text=True)
            os.close(write_fd)
            procs.append((proc, read_fd, stem))
        pending = {fd: (proc, stem) for proc, fd, stem in procs}
        deadline = time.monotonic() + READY_TIMEOUT_S
        while pending:  # the barrier: every instance loaded and warmed up
            ready, _, _ = select.select(list(pending), [], [], 1.0)
            for fd in ready:
                proc, stem = pending.pop(fd)
                if os.read(fd, 64).strip() != b"ready":
                    raise SsdqError("instance %s stopped before it was ready: %s"
                                    % (os.path.basename(stem), _last_line(proc, stem)))
            if time.monotonic() > deadline:
                raise SsdqError("instances not ready after %d s" % READY_TIMEOUT_S)
        for proc, _, _ in procs:
            proc.stdin.write("go\n")
            proc.stdin.flush()
        for proc, _, _ in procs:
            proc.stdin.close()
        results = []
        for proc, _, stem in procs:
            if proc.wait() != 0 or not os.path.exists(stem + ".json"):
                raise SsdqError("instance %s failed: %s" % (os.path.basename(stem),
                                                           _last_line(proc, stem)))
            results.append(_load(stem + ".json"))
        return results
    finally:
        for proc, fd, _ in procs:
            _close(fd)
            if proc.poll() is None:
                try:
                    proc.stdin.close()
                except (OSError, ValueError):
                    pass
                proc.terminate()
                proc.wait()


def _close(fd):
    try:
        os.close(fd)
    except OSError:
        pass


def _load(path):
    with open(path) as f:
        return json.load(f)


def _last_line(proc, stem):
    proc.poll()
    try:
        with open(stem + ".log") as f:
            lines = [l.strip() for l in f if l.strip()]
    except OSError:
        lines = []
    error = [l for l in lines if l.startswith("ssdq: error:")]
    tail = (error or lines or ["exit status %s" % proc.returncode])[-1]
    return "%s (log: %s.log)" % (tail[len("ssdq: error: "):] if error else tail, stem)


def summarize_round(results):
    """Per-instance figures and the totals of one round (instances started together)."""
    instances = []
    for r in results:
        instances.append({"images": r["images"], "seconds": r["end"] - r["start"],
                          "images_per_sec": r["images"] / (r["end"] - r["start"]),
                          "latency_ms": nearest_rank_latency_ms(r["seconds"])})
    start = min(r["start"] for r in results)
    end = max(r["end"] for r in results)
    images = sum(r["images"] for r in results)
    return instances, {"images": images, "wall_seconds": end - start,
                       "images_per_sec": images / (end - start),
                       "sum_images_per_sec": sum(i["images_per_sec"] for i in instances),
                       "start_spread_ms": (max(r["start"] for r in results) - start) * 1000}


def _placement(result, inst):
    memory = result["memory_policy"]
    cpus = result["cpus_read_back"]
    return {"cpus": cpus, "cpus_list": format_cpu_list(cpus), "cpus_assigned": inst["cpus"],
            "numa_node": inst["nodes"][0] if len(inst["nodes"]) == 1 else inst["nodes"],
            "membind": {"mode": memory.get("mode"), "nodes": memory.get("nodes"),
                        **({"error": memory["error"]} if memory.get("error") else {})},
            "membind_requested": result["pinning"]["numa"]["membind"],
            "threads_on_own_cpus": bool(cpus) and set(cpus) <= set(inst["cpus"]),
            "threads": [{"tid": t["tid"], "name": t["name"], "cpus": format_cpu_list(t["cpus"] or [])}
                        for t in result["threads"]],
            "mems_allowed": result["mems_allowed"],
            "pages_per_node": result["pages_per_node"]["pages"],
            "omp": {k: v["value"] for k, v in result["pinning"]["env"].items()
                    if k.startswith("OMP_")}}


def bench_instances(plan, prefix, precision, scope, images, warmup=2, repeats=5, rounds=1,
                    membind="bind", strict=False, out_dir="reports", label="bench",
                    model=None, progress=True):
    """Run ``rounds`` x (one instance on all the plan's cores, then the plan's instances); return
    the bench dict (``instances``, ``total``, ``single_instance``, ``rounds``, environment)."""
    if warmup < 0 or repeats < 1 or rounds < 1:
        raise SsdqError("a multi-instance bench needs --warmup >= 0, --repeats >= 1, --rounds >= 1")
    log_dir = os.path.join(out_dir, "%s-instances" % label)
    os.makedirs(log_dir, exist_ok=True)
    images_path = os.path.join(log_dir, "images.npy")
    np.save(images_path, images)
    allowed = (pinning() or {}).get("allowed_before") or read_topology().allowed_cpus
    common = {"prefix": prefix, "precision": precision, "scope": scope, "images": images_path,
              "warmup": warmup, "repeats": repeats, "membind": membind, "strict": strict,
              "allowed_cpus": allowed}
    all_cpus = sorted(c for inst in plan for c in inst["cpus"])
    all_nodes = sorted({n for inst in plan for n in inst["nodes"]})
    single_plan = [{"cpus": all_cpus, "nodes": all_nodes,
                    "membind_nodes": sorted({m for i in plan for m in i["membind_nodes"]})}]
    singles, multis = [], []
    load_before = os.getloadavg()
    for r in tqdm(range(rounds), desc="multi-instance rounds", unit="round", disable=not progress):
        singles.append(run_round(single_plan, common, log_dir, "r%d-single" % r))
        multis.append(run_round(plan, common, log_dir, "r%d-instance" % r))
    per_round = [summarize_round(m) for m in multis]
    single_rounds = [summarize_round(s) for s in singles]
    instances = []
    for i, inst in enumerate(plan):
        last = multis[-1][i]
        seconds = [s for m in multis for s in m[i]["seconds"]]
        instances.append({
            "instance": i, **_placement(last, inst),
            "images_per_sec": statistics.median(p[0][i]["images_per_sec"] for p in per_round),
            "latency_ms": nearest_rank_latency_ms(seconds),
            "images": sum(p[0][i]["images"] for p in per_round),
            "log": os.path.join(log_dir, "r%d-instance-%d.log" % (rounds - 1, i))})
    single_last = singles[-1][0]
    single = {**_placement(single_last, single_plan[0]),
              "images_per_sec": statistics.median(s[1]["images_per_sec"] for s in single_rounds),
              "latency_ms": nearest_rank_latency_ms([x for s in singles for x in s[0]["seconds"]])}
    total = {key: statistics.median(p[1][key] for p in per_round)
             for key in ("images_per_sec", "sum_images_per_sec", "wall_seconds",
                         "start_spread_ms")}
    total.update(instances=len(plan), cores=len(all_cpus),
                 images=sum(p[1]["images"] for p in per_round),
                 sum_vs_single=total["sum_images_per_sec"] / single["images_per_sec"],
                 total_vs_single=total["images_per_sec"] / single["images_per_sec"],
                 placement_ok=all(i["threads_on_own_cpus"] for i in instances)
                 and single["threads_on_own_cpus"])
    return {
        "created": utc_now(),
        "kind": "multi_instance",
        "settings": {"model": model, "checkpoint": prefix, "precision": precision,
                     "scope": scope, "batch_size": int(len(images)), "warmup": warmup,
                     "repeats": repeats, "rounds": rounds, "membind": membind,
                     "load_average_1min": {"before": round(load_before[0], 2),
                                           "after": round(os.getloadavg()[0], 2)},
                     "clock": "time.perf_counter (CLOCK_MONOTONIC, one clock for all processes)"},
        "instances": instances, "total": total, "single_instance": single,
        "rounds": [{"single_images_per_sec": s[1]["images_per_sec"], **p[1],
                    "instances_images_per_sec": [x["images_per_sec"] for x in p[0]]}
                   for s, p in zip(single_rounds, per_round)],
        "logs": log_dir,
        "environment": environment_report(mxnet_backend.runtime_info()),
    }


CSV_FIELDS = ("row", "cpus", "numa_node", "membind_mode", "membind_nodes", "threads_on_own_cpus",
              "images", "images_per_sec", "sum_images_per_sec", "latency_p50_ms",
              "latency_p90_ms", "latency_p99_ms", "precision", "batch_size")


def csv_text(bench):
    """One row per instance, the total, and the single-instance figure of the same run."""
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    settings = bench["settings"]

    def row(name, entry, **extra):
        lat = entry.get("latency_ms") or {}
        node = entry.get("numa_node")
        writer.writerow({
            "row": name, "cpus": entry.get("cpus_list", ""),
            "numa_node": node if not isinstance(node, list) else " ".join(map(str, node)),
            "membind_mode": (entry.get("membind") or {}).get("mode", ""),
            "membind_nodes": " ".join(map(str, (entry.get("membind") or {}).get("nodes") or [])),
            "threads_on_own_cpus": entry.get("threads_on_own_cpus", ""),
            "images": entry.get("images", ""), "images_per_sec": round(entry["images_per_sec"], 3),
            "latency_p50_ms": _round(lat.get("p50")), "latency_p90_ms": _round(lat.get("p90")),
            "latency_p99_ms": _round(lat.get("p99")), "precision": settings["precision"],
            "batch_size": settings["batch_size"], **extra})

    for inst in bench["instances"]:
        row("instance-%d" % inst["instance"], inst)
    total = bench["total"]
    row("total", {"images_per_sec": total["images_per_sec"], "images": total["images"],
                  "threads_on_own_cpus": total["placement_ok"],
                  "cpus_list": format_cpu_list(c for i in bench["instances"] for c in i["cpus"])},
        sum_images_per_sec=round(total["sum_images_per_sec"], 3))
    row("single-instance", bench["single_instance"])
    return out.getvalue()


def _round(value):
    return "" if value is None else round(value, 2)


def markdown(bench):
    s, total, single = bench["settings"], bench["total"], bench["single_instance"]
    lines = ["%d instance(s), %s %s, batch %d, %d timed run(s) each after %d warm-up, %d round(s); "
             "started together behind a barrier (start spread %.1f ms)." % (
                 total["instances"], s["precision"], s["scope"], s["batch_size"], s["repeats"],
                 s["warmup"], s["rounds"], total["start_spread_ms"]), "",
             "| instance | cpus (read back) | node | membind (read back) | threads on own cpus | "
             "img/s | latency ms p50 / p90 / p99 |", "|---|---|---|---|---|---|---|"]

    def line(name, e):
        lat = e["latency_ms"]
        mem = e["membind"]
        lines.append("| %s | %s | %s | %s %s | %s | %.2f | %.1f / %.1f / %.1f |" % (
            name, e["cpus_list"], e["numa_node"], mem.get("mode"),
            ",".join(map(str, mem.get("nodes") or [])), "yes" if e["threads_on_own_cpus"] else
            "NO", e["images_per_sec"], lat["p50"], lat["p90"], lat["p99"]))

    for inst in bench["instances"]:
        line(str(inst["instance"]), inst)
    lines += ["", "| figure | img/s |", "|---|---|",
              "| all images / (last end - first start) | %.2f |" % total["images_per_sec"],
              "| sum of the instances' img/s | %.2f |" % total["sum_images_per_sec"],
              "| one instance on all %d cores (same run, in turns) | %.2f |" % (
                  total["cores"], single["images_per_sec"]),
              "| sum / single | %.2fx |" % total["sum_vs_single"], "",
              "| round | one instance img/s | all images / wall img/s | sum img/s |",
              "|---|---|---|---|"]
    lines += ["| %d | %.2f | %.2f | %.2f |" % (i, r["single_images_per_sec"], r["images_per_sec"],
                                             r["sum_images_per_sec"])
              for i, r in enumerate(bench["rounds"])]
    load = s.get("load_average_1min")
    lines += ["", "Host load average (1 min) before / after: %s / %s on %d cores in use (other "
              "processes share the machine when it exceeds that)." % (
                  load["before"], load["after"], total["cores"]) if load else "", "",
              "Placement read back from /proc/PID/task/*/status and get_mempolicy: %s." % (
                  "every thread of every instance stayed on its own cores" if total["placement_ok"]
                  else "SOME THREADS RAN OUTSIDE THEIR INSTANCE'S CORES")]
    return "\n".join(lines) + "\n"


def write_multi_bench(bench, out_json):
    """``out_json``, the Markdown beside it and the flat CSV CI systems ingest."""

    stem = os.path.splitext(out_json)[0]
    write_text(stem + ".md", "# ssdq bench: multi-instance\n\n%s\n## Environment (driver)\n\n"
               "```\n%s\n```\n" % (markdown(bench), format_environment(bench["environment"])))
    write_text(stem + ".csv", csv_text(bench))
    write_json(out_json, bench)
    return out_json, stem + ".md", stem + ".csv"


def run_bench(image_set, fp32_prefix, int8_prefix, precisions, scopes, batch_sizes,
              instances=None, cores_per_instance=None, mode=None, numa_node=None,
              instance_cores=None, warmup=2, repeats=5, rounds=1, membind="bind", strict=False,
              out="reports/bench.json", model=None, progress=True):
    """What ``ssdq bench --instances/--cores-per-instance/--mode`` runs: plan, one precision,
    scope and batch size (the single one given; else int8, network, batch 1 in latency mode and
    8 otherwise), the rounds, the files. Returns (bench, paths)."""

    allowed = (pinning() or {}).get("allowed_before")
    plan = plan_instances(read_topology(allowed_cpus=allowed), instances, cores_per_instance, mode,
                          numa_node, instance_cores)
    precision = _pick(precisions, "int8", "--precisions")
    scope = _pick(scopes, "network", "--scopes")
    if scope == "eval_loop":
        raise SsdqError("a multi-instance bench times the network or end to end, not eval_loop")
    batch_size = batch_sizes[0] if len(batch_sizes) == 1 else (1 if mode == "latency" else 8)
    if batch_size < 1:
        raise SsdqError("--batch-sizes must be at least 1")
    prefix = resolve_prefix((int8_prefix if precision == "int8" else fp32_prefix) or "")
    if not os.path.isfile(checkpoint_files(prefix)["symbol"]):  # the instances would each fail
        raise SsdqError("no %s checkpoint at %s (%s)" % (
            precision, prefix or "?", "--int8-prefix" if precision == "int8" else "--model-prefix"))
    pool = image_set.subset(min(len(image_set), batch_size))
    images = _batch(next(iterate_batches(pool, batch_size))[0], batch_size)
    bench = bench_instances(plan, prefix, precision, scope, images, warmup, repeats, rounds,
                            membind, strict, os.path.dirname(out) or ".",
                            os.path.splitext(os.path.basename(out))[0], model, progress)
    return bench, write_multi_bench(bench, out)


def _pick(values, preferred, flag):
    values = list(values)
    if len(values) == 1:
        return values[0]
    return preferred if preferred in values else values[0]
