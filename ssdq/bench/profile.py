"""Where the time goes: per-operator time of a checkpoint's graph, from MXNet's own profiler.

``ssdq bench --profile`` calls ``profile_ops`` for each precision and scope at the speed-up
batch size, so the question "what eats the int8 gain" is answered by a file, not by a one-off
session: oneDNN convolutions against fp32 islands (L2Norm, dequantize/quantize), and the tail
(softmax, top-k, box_nms).

MXNet runs a bound graph in bulk segments, which the profiler sees as one operator. The profiled
executor is therefore bound with ``MXNET_EXEC_BULK_EXEC_INFERENCE=0`` (read when a graph is
bound), apart from the executors the benchmark times, whose figures stay as a user gets them.
"""
import contextlib
import json
import os
import tempfile

import mxnet as mx

BULK_EXEC_VARIABLE = "MXNET_EXEC_BULK_EXEC_INFERENCE"


@contextlib.contextmanager
def _unbulked():
    saved = os.environ.get(BULK_EXEC_VARIABLE)
    os.environ[BULK_EXEC_VARIABLE] = "0"
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop(BULK_EXEC_VARIABLE, None)
        else:
            os.environ[BULK_EXEC_VARIABLE] = saved


def profile_ops(make_predictor, data, runs=3, warmup=1):
    """Per-operator milliseconds per forward pass of the predictor ``make_predictor()`` binds.

    ``data``: an NDArray batch. Returns ``{"total_ms", "runs", "ops": [{"op", "ms", "calls",
    "share_pct"}]}``, slowest operator first; times are MXNet's (operator start to end)."""
    with _unbulked():
        predictor = make_predictor()
    for _ in range(max(1, warmup)):  # oneDNN creates primitives and reorders weights here
        predictor.run(data)
    with tempfile.TemporaryDirectory() as tmp:
        mx.profiler.set_config(profile_symbolic=True, profile_imperative=False,
                               profile_memory=False, profile_api=False, aggregate_stats=True,
                               filename=os.path.join(tmp, "profile.json"))
        mx.profiler.dumps(reset=True)  # drop what an earlier profile left
        mx.profiler.set_state("run")
        try:
            for _ in range(runs):
                predictor.run(data)
        finally:
            mx.profiler.set_state("stop")
        stats = json.loads(mx.profiler.dumps(format="json", reset=True))
    timed = {name: s for name, s in stats.get("Time", {}).get("operator", {}).items()
             if name not in ("WaitForVar", "CopyCPU2CPU")}  # engine bookkeeping, input copy
    total = sum(s["Total"] for s in timed.values()) / runs
    ops = [{"op": name, "ms": round(s["Total"] / runs, 3), "calls": round(s["Count"] / runs, 2),
            "share_pct": round(100 * s["Total"] / runs / total, 2) if total else 0.0}
           for name, s in sorted(timed.items(), key=lambda item: -item[1]["Total"])]
    return {"total_ms": round(total, 3), "runs": runs, "ops": ops}


def markdown(profiles, top=10):
    """One table per profiled case: its ``top`` slowest operators and their share."""
    lines = []
    for p in profiles:
        lines += ["", "**%s %s %s, batch %d**: %.1f ms of operator time a pass" % (
            p["model"], p["precision"], p["scope"], p["batch_size"], p["total_ms"]), "",
                  "| operator | ms a pass | calls | share |", "|---|---|---|---|"]
        lines += ["| %s | %.1f | %g | %.1f%% |" % (o["op"], o["ms"], o["calls"], o["share_pct"])
                  for o in p["ops"][:top]]
    return "\n".join(lines) + "\n"
