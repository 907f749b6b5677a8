"""fp32 and int8 on several runtimes side by side: mAP from the one evaluation loop, speed from
the one benchmark (timed in turns in one run), for ``reproduce --backends``.

The result is report.json's ``backends`` section: ``backends.NAME.fp32`` and
``backends.NAME.int8``, each with ``map``, ``ap50`` and ``images_per_sec`` (end to end, network
+ decode + NMS, at the bench's batch) and ``network_images_per_sec``.
"""
from ssdq import fileio
from ssdq.backends.runners import prepare
from ssdq.data.classmap import match_classes
from ssdq.eval.loop import detect
from ssdq.eval.metrics import evaluator_for
from ssdq.model.checkpoint import load_checkpoint

SPEED_SCOPE = "end_to_end"


def evaluate_backends(names, prefixes, eval_set, bench, batch_size=64, num_workers=1,
                      progress=True, known=None):
    """{backend: {precision: figures}} for ``prefixes`` ({"fp32": prefix, "int8": prefix}).

    ``bench``: a ``bench.benchmark`` result that ran these backends (its records give the
    speeds); ``known``: {precision: evaluate_checkpoint result} already measured on MXNet, whose
    mAP is reused rather than computed twice.
    """
    batch = bench["speedup_batch_size"]
    rate = {(r.get("backend", "mxnet"), r["precision"], r["scope"]): r.get("images_per_sec")
            for r in bench["records"] if r["batch_size"] == batch}
    section = {}
    for name in names:
        section[name] = {}
        for precision, prefix in prefixes.items():
            if name == "mxnet" and known and precision in known:
                metrics = known[precision]
            else:
                runner = prepare(name, prefix, precision, batch_size, "end_to_end")
                match = match_classes(eval_set, load_checkpoint(prefix).require_classes())
                metrics, _ = detect(runner, eval_set, evaluator_for(eval_set, match), batch_size,
                                    num_workers, progress, desc="eval %s %s" % (name, precision))
            section[name][precision] = {
                "map": metrics["map"], "ap50": metrics.get("ap50"),
                "map_gluoncv": metrics.get("map_gluoncv"),
                "images_per_sec": rate.get((name, precision, SPEED_SCOPE)),
                "network_images_per_sec": rate.get((name, precision, "network")),
                "batch_size": batch}
    return section


def int8_map_spread(section):
    """Largest minus smallest int8 mAP across the backends (the target: within 0.3)."""
    maps = [v["int8"]["map"] for v in section.values() if "int8" in v]
    return max(maps) - min(maps) if maps else None


def markdown_table(section):
    """One table: a row per runtime, its fp32 and int8 mAP and img/s, int8 vs that fp32 and
    against MXNet fp32."""
    base = (section.get("mxnet", {}).get("fp32") or {}).get("images_per_sec")

    def speed(v):
        return "-" if v is None else "%.2f" % v

    rows = []
    for name, figures in section.items():
        fp32, int8 = figures.get("fp32", {}), figures.get("int8", {})
        own = (int8.get("images_per_sec") / fp32["images_per_sec"]
               if int8.get("images_per_sec") and fp32.get("images_per_sec") else None)
        vs_mxnet = int8.get("images_per_sec") / base if int8.get("images_per_sec") and base else None
        rows.append((name, "%.2f" % fp32.get("map", float("nan")),
                     "%.2f" % int8.get("map", float("nan")), speed(fp32.get("images_per_sec")),
                     speed(int8.get("images_per_sec")), "-" if own is None else "%.2fx" % own,
                     "-" if vs_mxnet is None else "%.2fx" % vs_mxnet))
    batch = next((v["batch_size"] for f in section.values() for v in f.values()), None)
    spread = int8_map_spread(section)
    return fileio.markdown_table(("runtime", "fp32 mAP", "int8 mAP", "fp32 img/s", "int8 img/s",
                                  "int8 vs its fp32", "int8 vs MXNet fp32"), rows) + (
        "\n\nimg/s: end to end (network + decode + NMS), batch %s, median, every runtime timed in "
        "turns in this run. int8 mAP spread across runtimes: %.2f points. ONNX Runtime and "
        "OpenVINO run `ssdq export onnx`'s models: the int8 one is a QDQ model with this "
        "checkpoint's own calibration ranges." % (batch, spread if spread is not None else 0.0))
