"""CI gate: compare a new report against a baseline and fail on an accuracy or speed regression.

Works on ``report.json`` (``ssdq reproduce``). Accuracy is compared across reports (int8 mAP
may not fall more than ``max_map_drop`` points below the baseline's, nor below the same run's
fp32 by more than that); speed only as the int8/fp32 ratio measured *within* the new run,
because absolute images/s on a shared machine say more about the neighbours than the code.
"""
import json

from .errors import SsdqError


def load_report(path):
    try:
        with open(path) as f:
            report = json.load(f)
    except OSError as exc:
        raise SsdqError("cannot read %s (%s)" % (path, exc.strerror)) from None
    except ValueError as exc:
        raise SsdqError("%s is not valid JSON (%s)" % (path, exc)) from None
    try:
        return {"fp32_map": float(report["fp32"]["map"]), "int8_map": float(report["int8"]["map"]),
                "speedup": float(report["comparison"]["speedup"])}
    except (KeyError, TypeError, ValueError):
        raise SsdqError("%s is not an ssdq report (needs fp32.map, int8.map, "
                        "comparison.speedup)" % path) from None


def compare(new_path, baseline_path=None, max_map_drop=0.5, min_speedup=None):
    """Return (ok, lines): one line per figure checked, saying whether it regressed."""
    new = load_report(new_path)
    checks = [("int8 mAP vs this run's fp32", new["fp32_map"] - new["int8_map"], max_map_drop)]
    if baseline_path:
        base = load_report(baseline_path)
        checks.append(("int8 mAP vs baseline int8", base["int8_map"] - new["int8_map"], max_map_drop))
        checks.append(("fp32 mAP vs baseline fp32", base["fp32_map"] - new["fp32_map"], max_map_drop))
    lines, ok = [], True
    for name, drop, limit in checks:
        passed = drop <= limit
        ok &= passed
        lines.append("%s %s: dropped %.3f points (limit %.3f)" % ("ok  " if passed else "FAIL", name,
                                                                 drop, limit))
    if min_speedup is not None:
        passed = new["speedup"] >= min_speedup
        ok &= passed
        lines.append("%s int8/fp32 speed-up: %.2fx (minimum %.2fx)" % (
            "ok  " if passed else "FAIL", new["speedup"], min_speedup))
    return ok, lines
