"""Accuracy-aware quantization: meet an mAP budget with as few fp32 layers as possible.

The strategy (Intel Neural Compressor's basic one, on MXNet's oneDNN path) only proposes what to
try, as sweeps of trials (``basic_strategy``): every calibration method on the whole model; if
the best misses the budget, the layers ranked least robust first (lowest prediction SNR when only
that layer is int8, a label-free ranking); then leaving layers in fp32 one at a time in that
order, the sweep stopping at the first within ``max_relative_drop`` percent of fp32. The driver
(``tune``) runs each sweep on a scale-out engine (``scaleout.sweep``), sends the results back,
enforces the trial and time limits and saves the choice: a checkpoint plus a recipe JSON that
``ssdq quantize --recipe`` turns back into the same graph. Every variant is rebuilt from one
calibration pass (``Calibrated``).
"""
import os
import time

from ssdq.backends.runners import prepare
from ssdq.eval.metrics import relative_drop_pct
from ssdq.fileio import markdown_table, write_artifacts, write_json
from ssdq.quant.calibrated import calibrated_for
from ssdq.quant.options import CALIB_MODES, TuneOptions
from ssdq.quant.quantize import save_int8
from ssdq.scaleout.engine import LocalEngine, ray_block
from ssdq.scaleout.sweep import run_sweeps
from ssdq.timing import time_forward


def within_budget(fp32_map, int8_map, max_relative_drop):
    return int8_map >= fp32_map * (1 - max_relative_drop / 100.0)


def tune_trial(context, item):
    """One tuner trial (a pure function, so it can run as a Ray task): ``context`` the
    ``Calibrated`` spec; ("score", mode, fp32 layers) -> int8 metrics (mode None: the fp32
    model); ("proxy", mode, layer) -> the prediction SNR with only ``layer`` in int8."""
    variants = calibrated_for(context)
    kind, mode, arg = item
    if kind == "proxy":
        others = [l for l in variants.layers if l != arg]
        return variants.proxy(variants.build_int8(mode, others)[0])["snr_db"]
    ckpt = variants.ckpt if mode is None else variants.build_int8(mode, list(arg))[0]
    metrics = variants.score(ckpt)
    return {"map": metrics["map"], "ap50": metrics["ap50"]}


def basic_strategy(layers, modes, max_relative_drop):
    """The tuning strategy as a generator of sweeps ``(trials, stop)``; the driver sends back
    each sweep's values (in order, up to where it stopped) and the strategy decides the next."""
    first = yield [("score", None, ())] + [("score", m, ()) for m in modes], None
    fp32_map = first[0]["map"]
    calibration = {mode: r["map"] for mode, r in zip(modes, first[1:])}
    best_mode = max(calibration, key=calibration.get)
    if within_budget(fp32_map, calibration[best_mode], max_relative_drop):
        return
    snr = yield [("proxy", best_mode, layer) for layer in layers], None
    ranking = [layer for _, layer in sorted(zip(snr, layers), key=lambda pair: pair[0])]
    yield ([("score", best_mode, tuple(ranking[:k])) for k in range(1, len(ranking) + 1)],
           lambda result: within_budget(fp32_map, result["map"], max_relative_drop))


def tune(variants, out_prefix, options=None, modes=CALIB_MODES, progress=True, engine=None):
    """Search, save the chosen int8 checkpoint and recipe; return the tune report dict.

    ``variants``: a ``Calibrated`` fp32 model; ``options``: ``TuneOptions``; ``engine``
    (``scaleout.engine``) runs the trials. With a parallel engine a sweep runs in waves of
    ``engine.parallelism`` consecutive trials, read back in order, so the outcome is the serial
    search's."""
    options = options or TuneOptions()
    engine = engine or LocalEngine()
    start = time.time()
    trials, ran = [], []
    strategy = basic_strategy(list(variants.layers), modes, options.max_relative_drop)
    sweep, values, stop = next(strategy), None, "budget met by calibration alone"
    calibration, best, fp32_map = {}, None, None
    while True:
        items, done = sweep
        room = options.max_trials - len(trials)
        if done is not None:  # the fallback sweep: it counts against the trial limit
            items = items[:max(0, room)]
        found, results = run_sweeps(
            engine, tune_trial, variants.spec(), [(items, done)], progress, desc="tuning",
            keep_going=None if done is None else lambda: time.time() - start <= options.time_limit)
        values = found[0]
        ran.extend(results)
        if fp32_map is None:  # the calibration sweep: fp32 first, then each method
            fp32_map = values[0]["map"]
            for mode, result in zip(modes, values[1:]):
                calibration[mode] = _record(trials, fp32_map, mode, (), result)
            best_mode = max(calibration, key=calibration.get)
            best = (calibration[best_mode], best_mode, [])
        elif done is not None:  # the fallback sweep
            for (_, mode, layers), result in zip(items, values):
                int8_map = _record(trials, fp32_map, mode, layers, result)
                if int8_map > best[0] or done(result):
                    best = (int8_map, mode, list(layers))
            if values and done(values[-1]):
                stop = "budget met"
            elif len(values) == len(sweep[0]):
                stop = "every layer tried"
            elif len(values) == len(items):
                stop = "trial limit (%d) reached" % options.max_trials
            else:
                stop = "time limit (%ds) reached" % options.time_limit
        try:
            sweep = strategy.send(values)
        except StopIteration:
            break
    int8_map, mode, fp32_layers = best
    return _save(variants, out_prefix, options, fp32_map, int8_map, mode, fp32_layers,
                 calibration, trials, stop, start, engine, ran)


def _record(trials, fp32_map, mode, fp32_layers, result):
    trials.append({"calib_mode": mode, "fp32_layers": list(fp32_layers), "map": result["map"],
                   "ap50": result["ap50"],
                   "relative_drop_pct": relative_drop_pct(fp32_map, result["map"])})
    return result["map"]


def _save(variants, out_prefix, options, fp32_map, int8_map, mode, fp32_layers, calibration,
          trials, stop, start, engine, ran):
    ckpt, excluded = variants.build_int8(mode, fp32_layers)
    thresholds = variants.thresholds(mode)
    recipe_path = out_prefix + "-recipe.json"
    calibration_info = dict(variants.describe, mode=mode)
    write_json(recipe_path, {
        "fp32_checkpoint": variants.ckpt.prefix, "calib_mode": mode,
        "fp32_layers": fp32_layers, "fp32_convs": [variants.layers[l] for l in fp32_layers],
        "excluded_layers": excluded, "calibration": calibration_info,
        "thresholds": {k: [float(lo), float(hi)] for k, (lo, hi) in thresholds.items()},
    })
    save_int8(out_prefix, variants.ckpt, (ckpt.symbol, ckpt.arg_params, ckpt.aux_params),
              thresholds, {"quantized_dtype": "auto", "quantize_mode": "smart",
                           "calibration": calibration_info, "excluded_layers": excluded,
                           "excluded_ops": [], "recipe": recipe_path})
    speed = {p: time_forward(prepare("mxnet", c, c.precision, variants.batch_size),
                             variants.proxy_batch, 1, 3)
             for p, c in (("fp32", variants.ckpt), ("int8", ckpt))}
    return {
        "fp32": {"map": fp32_map, "images_per_sec": speed["fp32"]["images_per_sec"]},
        "int8": {"map": int8_map, "images_per_sec": speed["int8"]["images_per_sec"],
                 "checkpoint": out_prefix, "calib_mode": mode},
        "relative_drop_pct": relative_drop_pct(fp32_map, int8_map),
        "max_relative_drop_pct": options.max_relative_drop,
        "met_budget": within_budget(fp32_map, int8_map, options.max_relative_drop),
        "stop_reason": stop,
        "fp32_layers": [{"layer": l, "conv": variants.layers[l]} for l in fp32_layers],
        "recipe": recipe_path,
        "calibration_methods": {m: {"map": v, "relative_drop_pct": relative_drop_pct(fp32_map, v)}
                                for m, v in calibration.items()},
        "percentile": variants.calib.percentile,
        "trials": trials, "seconds": round(time.time() - start, 1),
        "eval_images": len(variants.eval_set),
        **({"meta_inferred": variants.ckpt.meta_inferred} if variants.ckpt.inferred else {}),
        **({"ray": ray_block(engine, ran, time.time() - start)} if engine.describe() else {}),
    }


def write(report, out_dir):
    """``OUT_DIR/tune.{json,md}`` and ``OUT_DIR/calibration.{json,md}``; returns the paths."""
    paths = write_artifacts(os.path.join(out_dir, "tune"), report, tune_markdown(report))
    paths += write_artifacts(
        os.path.join(out_dir, "calibration"),
        {"fp32_map": report["fp32"]["map"], "methods": report["calibration_methods"],
         "eval_images": report["eval_images"]},
        "# Calibration methods\n\n%s\n" % calibration_markdown(report))
    return paths


def calibration_markdown(report):
    fp32 = report["fp32"]["map"]
    return markdown_table(("calibration", "fp32 mAP", "int8 mAP", "drop", "relative drop"), [
        (mode, "%.2f" % fp32, "%.2f" % row["map"], "%+.2f" % (row["map"] - fp32),
         "%.2f%%" % row["relative_drop_pct"])
        for mode, row in report["calibration_methods"].items()])


def tune_markdown(report):
    status = "met" if report["met_budget"] else "NOT met (best found is reported)"
    return "\n\n".join([
        "# ssdq tune",
        "Budget: int8 mAP within %.2f%% (relative) of fp32: **%s**; stopped: %s; %d trials, %.0f s."
        % (report["max_relative_drop_pct"], status, report["stop_reason"], len(report["trials"]),
           report["seconds"]),
        markdown_table(("", "fp32", "int8 (chosen)"), [
            ("mAP@[.5:.95]", "%.2f" % report["fp32"]["map"], "%.2f" % report["int8"]["map"]),
            ("images/s", "%.1f" % report["fp32"]["images_per_sec"],
             "%.1f" % report["int8"]["images_per_sec"])]),
        "Relative drop: %.3f%%. Calibration: %s. Layers kept in fp32 (beyond the default "
        "exclusions): %s. Recipe: `%s`." % (
            report["relative_drop_pct"], report["int8"]["calib_mode"],
            ", ".join(l["conv"] for l in report["fp32_layers"]) or "none", report["recipe"]),
        "## Calibration methods (whole model)\n\n" + calibration_markdown(report),
    ]) + "\n"
