"""Accuracy-aware quantization: meet an mAP budget with as few fp32 layers as possible.

Strategy (Intel Neural Compressor's basic one, on MXNet's oneDNN path): try every calibration
method on the whole model; keep the best; if it misses the budget, leave layers in fp32 one at a
time, least robust first (lowest prediction SNR when only that layer is int8, a label-free
ranking), until the int8 mAP is within ``max_relative_drop`` percent of fp32. Stops at a trial
or time limit with the best result so far and says so. Every variant is rebuilt from one
calibration pass, and the chosen one is saved as a checkpoint plus a recipe JSON that
``ssdq quantize --recipe`` turns back into the same graph.
"""
import time

from ssdq.bench.timing import time_forward
from ssdq.fileio import write_json
from ssdq.model.predictor import Predictor
from ssdq.quant.quantize import CALIB_MODES, save_int8


def within_budget(fp32_map, int8_map, max_relative_drop):
    return int8_map >= fp32_map * (1 - max_relative_drop / 100.0)


def relative_drop_pct(fp32_map, int8_map):
    return 100.0 * (fp32_map - int8_map) / fp32_map if fp32_map else 0.0


def tune_trial(context, item):
    """One tuner trial (a pure function, so it can run as a Ray task): ("score", mode, fp32
    layers) -> int8 metrics (mode None: the fp32 model); ("proxy", mode, layer) -> the
    prediction SNR with only ``layer`` in int8."""
    variants = context
    kind, mode, arg = item
    if kind == "proxy":
        others = [l for l in variants.layers if l != arg]
        return variants.proxy(variants.build(mode, others)[0])["snr_db"]
    ckpt = variants.ckpt if mode is None else variants.build(mode, list(arg))[0]
    metrics = variants.score(ckpt)
    return {"map": metrics["map"], "ap50": metrics["ap50"]}


def tune(variants, out_prefix, max_relative_drop=0.5, modes=CALIB_MODES, max_trials=40,
         time_limit_s=1800, progress=True, engine=None):
    """Search, save the chosen int8 checkpoint and recipe; return the tune report dict.

    ``engine`` (``scaleout.engine``) runs the trials; the search order and stop rules stay
    here. With a parallel engine the fallback steps run in waves of ``engine.parallelism``
    consecutive steps, read back in order, so the outcome is the serial search's."""
    from ssdq.scaleout.engine import LocalEngine, ray_block

    engine = engine or LocalEngine()
    start = time.time()
    trials, done = [], []

    def run(items, desc):
        results = engine.map(tune_trial, variants, items, progress, desc=desc)
        done.extend(results)
        return [r["value"] for r in results]

    def record(mode, fp32_layers, result):
        trials.append({"calib_mode": mode, "fp32_layers": list(fp32_layers), "map": result["map"],
                       "ap50": result["ap50"],
                       "relative_drop_pct": relative_drop_pct(fp32_map, result["map"])})
        return result["map"]

    first = run([("score", None, ())] + [("score", m, ()) for m in modes], "calibration")
    fp32_map = first[0]["map"]
    calibration = {mode: record(mode, [], r) for mode, r in zip(modes, first[1:])}
    best_mode = max(calibration, key=calibration.get)
    best = (calibration[best_mode], best_mode, [])
    stop = "budget met by calibration alone"
    if not within_budget(fp32_map, best[0], max_relative_drop):
        snr = run([("proxy", best_mode, layer) for layer in variants.layers], "ranking")
        ranking = [layer for _, layer in sorted(zip(snr, variants.layers), key=lambda p: p[0])]
        stop = "every layer tried"
        step = 0
        while step < len(ranking):
            if len(trials) >= max_trials:
                stop = "trial limit (%d) reached" % max_trials
                break
            if time.time() - start > time_limit_s:
                stop = "time limit (%ds) reached" % time_limit_s
                break
            width = min(engine.parallelism, max_trials - len(trials), len(ranking) - step)
            wave = [ranking[:k] for k in range(step + 1, step + width + 1)]
            results = run([("score", best_mode, tuple(layers)) for layers in wave], "tuning")
            for fallback, result in zip(wave, results):
                int8_map = record(best_mode, fallback, result)
                step += 1
                if int8_map > best[0]:
                    best = (int8_map, best_mode, list(fallback))
                if within_budget(fp32_map, int8_map, max_relative_drop):
                    best = (int8_map, best_mode, list(fallback))
                    stop = "budget met"
                    break
            if stop == "budget met":
                break
    int8_map, mode, fp32_layers = best
    ckpt, excluded = variants.build(mode, fp32_layers)
    thresholds = variants.thresholds(mode)
    recipe_path = out_prefix + "-recipe.json"
    calibration_info = {"mode": mode, "images": len(variants.calib_set),
                        "batch_size": variants.batch_size,
                        "dataset": variants.calib_set.describe()}
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
    speed = {p: time_forward(Predictor(c, variants.batch_size), variants.proxy_batch, 1, 3)
             for p, c in (("fp32", variants.ckpt), ("int8", ckpt))}
    return {
        "fp32": {"map": fp32_map, "images_per_sec": speed["fp32"]["images_per_sec"]},
        "int8": {"map": int8_map, "images_per_sec": speed["int8"]["images_per_sec"],
                 "checkpoint": out_prefix, "calib_mode": mode},
        "relative_drop_pct": relative_drop_pct(fp32_map, int8_map),
        "max_relative_drop_pct": max_relative_drop,
        "met_budget": within_budget(fp32_map, int8_map, max_relative_drop),
        "stop_reason": stop,
        "fp32_layers": [{"layer": l, "conv": variants.layers[l]} for l in fp32_layers],
        "recipe": recipe_path,
        "calibration_methods": {m: {"map": v, "relative_drop_pct": relative_drop_pct(fp32_map, v)}
                                for m, v in calibration.items()},
        "trials": trials, "seconds": round(time.time() - start, 1),
        "eval_images": len(variants.eval_set),
        **({"meta_inferred": variants.ckpt.meta_inferred} if variants.ckpt.inferred else {}),
        **({"ray": ray_block(engine, done, time.time() - start)} if engine.describe() else {}),
    }


def calibration_markdown(report):
    lines = ["| calibration | fp32 mAP | int8 mAP | drop | relative drop |", "|---|---|---|---|---|"]
    fp32 = report["fp32"]["map"]
    for mode, row in report["calibration_methods"].items():
        lines.append("| %s | %.2f | %.2f | %+.2f | %.2f%% |" % (mode, fp32, row["map"],
                                                             row["map"] - fp32, row["relative_drop_pct"]))
    return "\n".join(lines)


def tune_markdown(report):
    status = "met" if report["met_budget"] else "NOT met (best found is reported)"
    return "\n\n".join([
        "# ssdq tune",
        "Budget: int8 mAP within %.2f%% (relative) of fp32: **%s**; stopped: %s; %d trials, %.0f s."
        % (report["max_relative_drop_pct"], status, report["stop_reason"], len(report["trials"]),
           report["seconds"]),
        "| | fp32 | int8 (chosen) |\n|---|---|---|\n| mAP@[.5:.95] | %.2f | %.2f |\n"
        "| images/s | %.1f | %.1f |" % (report["fp32"]["map"], report["int8"]["map"],
                                        report["fp32"]["images_per_sec"], report["int8"]["images_per_sec"]),
        "Relative drop: %.3f%%. Calibration: %s. Layers kept in fp32 (beyond the default "
        "exclusions): %s. Recipe: `%s`." % (
            report["relative_drop_pct"], report["int8"]["calib_mode"],
            ", ".join(l["conv"] for l in report["fp32_layers"]) or "none", report["recipe"]),
        "## Calibration methods (whole model)\n\n" + calibration_markdown(report),
    ]) + "\n"
