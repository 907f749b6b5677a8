"""CI gate: compare a new report against a baseline and fail on an accuracy or speed regression.

Works on ``report.json`` (``ssdq reproduce``) and on ``bench.json`` (``ssdq bench``, speed only;
a multi-instance bench: its placement read back, and total img/s with ``--min-throughput``).
Accuracy is compared across reports (int8 mAP
may not fall further than ``max_map_drop``, an ``eval.criterion.Criterion`` in points or percent,
below the baseline's, nor below the same run's fp32); speed only as the int8/fp32 ratio measured *within* the new run,
because absolute images/s on a shared machine say more about the neighbours than the code.

A baseline must be of the same model, dataset, split and image count as the new report (read
from the files themselves: ``identity``), or the gate compares figures that cannot be compared
(a 6-class embedded model's mAP gating a COCO run): it is refused, unless
``allow_different_baseline``.
"""
import json
import os

from ssdq.errors import SsdqError
from ssdq.eval.criterion import Criterion

IDENTITY = ("model", "dataset", "split", "images")


def _read(path):
    try:
        with open(path) as f:
            report = json.load(f)
    except OSError as exc:
        raise SsdqError("cannot read %s (%s)" % (path, exc.strerror)) from None
    except ValueError as exc:
        raise SsdqError("%s is not valid JSON (%s)" % (path, exc)) from None
    if not isinstance(report, dict):
        raise SsdqError("%s is not an ssdq report or bench file" % path)
    return report


def identity(report):
    """What a report or bench measured: {model, dataset, split, images}, each None where the
    file does not say (a file written before ssdq recorded it, a hand-written one)."""
    bench = report.get("bench") or report
    models = bench.get("models") if isinstance(bench.get("models"), dict) else {}
    dataset = report.get("dataset") or (bench.get("settings") or {}).get("images") or {}
    if not isinstance(dataset, dict):
        dataset = {}
    source = dataset.get("annotation_file") or dataset.get("image_list") or dataset.get("root")
    classes = dataset.get("classes")
    return {"model": next(iter(models), None),
            "dataset": None if not (dataset.get("format") or source) else "%s %s (%s classes)" % (
                dataset.get("format"), os.path.basename(str(source)),
                len(classes) if classes is not None else "?"),
            "split": dataset.get("split"), "images": dataset.get("images")}


def check_same_run_kind(new_path, new, baseline_path, base):
    """Refuse a baseline that differs from the new report in model, dataset, split or image
    count, or that does not say what it measured."""
    unknown = [k for k in IDENTITY if base[k] is None]
    if unknown:
        raise SsdqError("baseline %s does not say its %s, so it cannot be checked to be a run of "
                        "the same kind as %s: use a report.json written by ssdq reproduce, or "
                        "pass --allow-different-baseline" % (baseline_path, " and ".join(unknown),
                                                             new_path))
    differ = ["%s (%s, baseline %s)" % (k, new[k], base[k]) for k in IDENTITY
              if new[k] is not None and new[k] != base[k]]
    if differ:
        raise SsdqError("baseline %s is of another %s than %s: compare like with like, or pass "
                        "--allow-different-baseline" % (baseline_path, "; ".join(differ),
                                                        new_path))


def load_report(path):
    """The gate's figures of a report or bench file (see ``compare``)."""
    return _figures(path, _read(path))


def _figures(path, report):
    figures = {}
    total = report.get("total")
    if isinstance(total, dict) and isinstance(report.get("instances"), list):  # multi-instance
        try:
            figures.update(throughput=float(total["images_per_sec"]),
                           sum_throughput=float(total["sum_images_per_sec"]),
                           placement_ok=bool(total["placement_ok"]))
        except (KeyError, TypeError, ValueError):
            raise SsdqError("%s is a multi-instance bench without total.images_per_sec, "
                            "total.sum_images_per_sec and total.placement_ok" % path) from None
        return figures
    speedup = (report.get("bench") or report).get("speedup")  # report.json embeds a short bench
    if isinstance(speedup, dict):
        figures.update({k: float(speedup[k]) for k in ("end_to_end_int8_vs_fp32", "network_int8_vs_fp32")
                        if isinstance(speedup.get(k), (int, float))})
    if "fp32" in report or not figures:
        try:
            figures.update(fp32_map=float(report["fp32"]["map"]), int8_map=float(report["int8"]["map"]))
            figures.setdefault("end_to_end_int8_vs_fp32", float(report["comparison"]["speedup"]))
        except (KeyError, TypeError, ValueError):
            raise SsdqError("%s is not an ssdq report or bench file (needs fp32.map, int8.map and "
                            "comparison.speedup, or a speedup object)" % path) from None
    return figures


def compare(new_path, baseline_path=None, max_map_drop=0.5, min_speedup=None,
            min_network_speedup=None, min_throughput=None, allow_different_baseline=False):
    """Return (ok, lines): one line per figure checked, saying whether it regressed."""
    new_report = _read(new_path)
    new = _figures(new_path, new_report)
    base = {}
    if baseline_path:
        base_report = _read(baseline_path)
        base = _figures(baseline_path, base_report)
        if not allow_different_baseline:
            check_same_run_kind(new_path, identity(new_report), baseline_path,
                                identity(base_report))
    criterion = Criterion.parse(max_map_drop)
    checks = []
    if "int8_map" in new:
        checks.append(("int8 mAP vs this run's fp32", new["fp32_map"], new["int8_map"]))
        for name in ("int8", "fp32"):
            if "%s_map" % name in base:
                checks.append(("%s mAP vs baseline %s" % (name, name), base["%s_map" % name],
                               new["%s_map" % name]))
    lines, ok = [], True
    for name, baseline, value in checks:
        passed = criterion.met(baseline, value)
        ok &= passed
        lines.append("%s %s: dropped %s (limit %s)" % (
            "ok  " if passed else "FAIL", name, criterion.format_drop(baseline, value),
            criterion.describe()))
    for key, minimum, label in (("end_to_end_int8_vs_fp32", min_speedup, "end-to-end"),
                                ("network_int8_vs_fp32", min_network_speedup, "network")):
        if minimum is None:
            continue
        if key not in new:
            raise SsdqError("%s has no %s int8/fp32 speed-up (run ssdq bench)" % (new_path, label))
        passed = new[key] >= minimum
        ok &= passed
        lines.append("%s int8/fp32 %s speed-up: %.2fx (minimum %.2fx)" % (
            "ok  " if passed else "FAIL", label, new[key], minimum))
    if "placement_ok" in new:  # a multi-instance bench: placement always, throughput if asked
        ok &= new["placement_ok"]
        lines.append("%s placement: every instance's threads %s its own cores (read back)" % (
            ("ok  ", "stayed on") if new["placement_ok"] else ("FAIL", "did not all stay on")))
    if min_throughput is not None:
        if "throughput" not in new:
            raise SsdqError("%s is not a multi-instance bench (run ssdq bench --instances N)"
                            % new_path)
        passed = new["throughput"] >= min_throughput
        ok &= passed
        lines.append("%s multi-instance throughput: %.2f img/s (sum of instances %.2f; minimum "
                     "%.2f)" % ("ok  " if passed else "FAIL", new["throughput"],
                                new["sum_throughput"], min_throughput))
    return ok, lines
