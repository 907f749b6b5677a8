"""``ssdq study prune``: the reference work's pruning table, measured with real oneDNN int8.

Rows: the dense baseline, the sparse-trained model it is pruned from, network slimming in the
modes normal / max / regular / regular-max (no fine-tuning, as the reference; the pruned
network's BatchNorm statistics are re-estimated on a few train images), low-rank fc6/fc7
of the dense model and of the normal-pruned one, and network slimming's full pipeline (pruned
deeper, in max mode, then fine-tuned: ``pruning.prune(finetune_epochs=...)``); each again as
W8A8 (prune, then quantize with ``quantize.quantize``). Every checkpoint is scored with pycocotools on the eval split; latency
(batch 1) and img/s (batch 8) are the network's, fp32 and int8 of a row timed in turns by
``bench.bench_model``. Parameters exclude the anchor tables (a cache the graph could recompute);
size is the weights as deployed (int8 convolution weights at one byte).

The mAP scoring of the checkpoints is a trial (``score_trial``) run by an engine
(``scaleout.engine``: here one after another by default, or as Ray tasks). Building, quantizing
and timing stay in this process, one variant at a time and before any trial starts: timings
taken beside parallel trials would measure cores shared with them, not the network.
"""
import datetime
import os
import time

import numpy as np

from ssdq.errors import SsdqError
from ssdq.fileio import atomic_path, write_json, write_text

DEFAULT_PERCENT = 30.0
# network slimming's full pipeline (prune, then fine-tune), pruned to the parameter target
DEFAULT_FINETUNE_PARAMS_SHARE = 0.25
DEFAULT_FINETUNE_CRITERION = "gamma"
DEFAULT_FINETUNE_MIN_KEEP = 0.0
DEFAULT_FINETUNE_EPOCHS = 2
DEFAULT_ENERGY = 0.9
DEFAULT_RECALIBRATE_IMAGES = 128
TARGET_PARAMS_SHARE = 0.25
TARGET_RELATIVE_DROP_PCT = 1.0
# (row name, how the fp32 checkpoint is made)
VARIANTS = (("baseline", ("dense",)), ("sparse-trained", ("sparse",)),
            ("normal", ("prune", "normal")), ("normal (max)", ("prune", "max")),
            ("normal (regular)", ("prune", "regular")),
            ("normal (regular\\max)", ("prune", "regular-max")),
            ("low-rank", ("lowrank", "baseline")), ("normal + low-rank", ("lowrank", "normal")),
            ("normal (max) + fine-tuning", ("prune-finetune", "max")))


def count_params(ckpt):
    """Learned parameters of a checkpoint (quantized weights count once; anchors not at all)."""
    return int(sum(v.size for k, v in ckpt.arg_params.items()
                   if not ("anchor" in k or k.endswith(("_min", "_max")))))


def weights_mb(ckpt):
    from ssdq.quant.quantize import deployed_weights_mb

    return deployed_weights_mb(ckpt.symbol, {k: v for k, v in ckpt.arg_params.items()
                                             if "anchor" not in k})


def conv_layers(ckpt):
    import json

    nodes = json.loads(ckpt.symbol.tojson())["nodes"]
    return sum(n["op"] in ("Convolution", "_sg_mkldnn_conv", "_contrib_quantized_conv")
               for n in nodes)


def make_variants(work_dir, dense_params, sparse_params, percent, energy, names=None,
                  calib_set=None, recalibrate_images=0, finetune_epochs=DEFAULT_FINETUNE_EPOCHS,
                  finetune_pruning=None, progress=False):
    """fp32 checkpoints of the rows ``names`` (default: all; the baseline and what a row is made
    from always come too) under ``work_dir``; -> {name: prefix}. Fine-tuned rows are pruned at
    ``finetune_pruning`` (``finetune_pruning_settings``) and trained ``finetune_epochs`` on
    ``calib_set`` (the train split);
    with ``finetune_epochs`` 0 they are left out."""
    from ssdq.model.convert import convert
    from ssdq.compress.pruning.lowrank import lowrank
    from ssdq.compress.formats.finetune import FINETUNE_LR
    from ssdq.compress.pruning.slimming import prune

    wanted = set(names or [name for name, how in VARIANTS
                           if finetune_epochs or how[0] != "prune-finetune"]) | {"baseline"}
    unknown = wanted - {name for name, _ in VARIANTS}
    if unknown:
        raise SsdqError("unknown study rows: %s" % ", ".join(sorted(unknown)))
    untuned = [name for name, how in VARIANTS
               if name in wanted and how[0] == "prune-finetune" and not finetune_epochs]
    if untuned:
        raise SsdqError("row %r needs --finetune-epochs of 1 or more" % untuned[0])
    wanted |= {how[1] for name, how in VARIANTS if name in wanted and how[0] == "lowrank"}
    made = {}
    for name, how in VARIANTS:
        if name not in wanted:
            continue
        prefix = os.path.join(work_dir, name.replace(" ", "_").replace("\\", "-")
                              .replace("(", "").replace(")", "").replace("+", "plus"))
        if how[0] == "dense":
            convert(prefix, model="reference", params_file=dense_params)
        elif how[0] == "sparse":
            convert(prefix, model="reference", params_file=sparse_params)
        elif how[0] == "prune":
            prune(prefix, sparse_params, percent=percent, mode=how[1], calib_set=calib_set,
                  recalibrate_images=recalibrate_images)
        elif how[0] == "prune-finetune":
            settings = finetune_pruning or finetune_pruning_settings()
            prune(prefix, sparse_params, percent=settings["percent"] or 0, mode=how[1],
                  calib_set=calib_set, recalibrate_images=recalibrate_images,
                  finetune_epochs=finetune_epochs, train_set=calib_set, finetune_lr=FINETUNE_LR,
                  progress=progress, criterion=settings["criterion"],
                  min_keep=settings["min_keep"], params_share=settings["params_share"])
        else:
            lowrank(made[how[1]], prefix, ("fc7", "fc6"), energy=energy)
        made[name] = prefix
    return made


def run_study(data_root, eval_split="val", calib_split="train", percent=DEFAULT_PERCENT,
              energy=DEFAULT_ENERGY, dense_params=None, sparse_params=None, work_dir=None,
              out_dir="reports", eval_images=None, num_calib_batches=5, batch_size=64,
              calib_mode="naive", num_workers=1, repeats=5, progress=True, names=None,
              recalibrate_images=DEFAULT_RECALIBRATE_IMAGES,
              finetune_epochs=DEFAULT_FINETUNE_EPOCHS, finetune_pruning=None, echo=print,
              engine=None):
    """Make, quantize, time and score the rows; write study-prune.{json,md,png} to ``out_dir``.
    ``engine`` (``scaleout.engine``) runs the scoring; by default one after another here."""
    from ssdq.bench.harness import bench_model
    from ssdq.model.checkpoint import load_checkpoint
    from ssdq.model.convert import REFERENCE_WEIGHTS
    from ssdq.data.dataset import open_dataset
    from ssdq.data.loader import iterate_batches
    from ssdq.data.transforms import resize
    from ssdq.host.environment import environment_report
    from ssdq.quant.quantize import quantize
    from ssdq.scaleout.engine import LocalEngine, ray_block
    from ssdq.compress.formats.finetune import FINETUNE_LR
    from ssdq.compress.pruning.slimming import SPARSE_WEIGHTS, check_settings

    start = time.time()
    check_settings(percent, "normal")
    finetune_pruning = finetune_pruning or finetune_pruning_settings()
    check_settings(finetune_pruning["percent"] or 0, "max", finetune_pruning["criterion"],
                   finetune_pruning["params_share"], finetune_pruning["min_keep"])
    if finetune_epochs < 0:
        raise SsdqError("--finetune-epochs must be 0 or more")
    dense_params = dense_params or REFERENCE_WEIGHTS
    sparse_params = sparse_params or SPARSE_WEIGHTS
    for path in (dense_params, sparse_params):
        if not os.path.isfile(path):
            raise SsdqError("weights file not found: %s" % path)
    work_dir = work_dir or os.path.join("model", "study-prune")
    eval_set = open_dataset(data_root, eval_split)
    if eval_images:
        eval_set = eval_set.subset(eval_images)
    calib_set = open_dataset(data_root, calib_split)
    images = np.concatenate([b for b, _ in iterate_batches(eval_set.subset(min(8, len(eval_set))), 8,
                                                           transform=resize)])
    echo("[1/3] fp32 variants (prune at %g%%, low-rank at %g energy) -> %s" % (percent, energy, work_dir))
    prefixes = make_variants(work_dir, dense_params, sparse_params, percent, energy, names,
                             calib_set, recalibrate_images, finetune_epochs, finetune_pruning,
                             progress)
    engine = engine or LocalEngine()
    rows = []
    echo("[2/3] quantize and time %d variants, then score them" % len(prefixes))
    for name, fp32_prefix in prefixes.items():
        int8_prefix = quantize(fp32_prefix, fp32_prefix + "-int8", calib_set, calib_mode=calib_mode,
                               num_calib_batches=num_calib_batches, batch_size=batch_size,
                               num_workers=num_workers, progress=progress)
        fp32, int8 = load_checkpoint(fp32_prefix), load_checkpoint(int8_prefix)
        # timed here, before any trial runs (see the module's docstring)
        timings = bench_model(name, fp32, int8, images, precisions=("fp32", "int8"),
                              scopes=("network",), batch_sizes=(1, 8), warmup=2, repeats=repeats,
                              progress=False)
        speed = {(r["precision"], r["batch_size"]): r for r in timings}
        for precision, ckpt in (("fp32", fp32), ("int8", int8)):
            rows.append({
                "name": name, "precision": precision, "params": count_params(fp32),
                "size_mb": round(weights_mb(ckpt), 3),
                "latency_ms": round(speed[(precision, 1)]["latency_ms_median"], 2),
                "images_per_sec": round(speed[(precision, 8)]["images_per_sec"], 1),
                "map": None, "ap50": None,
                "layers": conv_layers(fp32), "checkpoint": ckpt.prefix,
                "pruning": _pruning_summary(fp32.meta),
                "lowrank": fp32.meta.get("lowrank", {}).get("layers")})
    # every timing is taken: from here on trials may run side by side
    scoring_start = time.perf_counter()
    scores = engine.map(score_trial, (eval_set, batch_size, num_workers,
                                      progress and engine.name == "local"),
                        [row["checkpoint"] for row in rows], progress, desc="scoring")
    scoring_wall_s = time.perf_counter() - scoring_start
    for row, score in zip(rows, scores):
        row["map"], row["ap50"] = round(score["value"]["map"], 2), round(score["value"]["ap50"], 2)
        echo("  %-24s %s  mAP %.2f  params %d" % (row["name"], row["precision"],
                                                  score["value"]["map"], row["params"]))
    base = next(r for r in rows if r["name"] == "baseline" and r["precision"] == "fp32")
    for row in rows:
        row["layers_delta"] = row["layers"] - base["layers"]
        row["compression_pct"] = round(100 * (1 - row["size_mb"] / base["size_mb"]), 1)
        row["params_share"] = round(row["params"] / base["params"], 4)
        row["relative_map_drop_pct"] = round(100 * (base["map"] - row["map"]) / base["map"], 2)
        row["meets_target"] = bool(row["params_share"] <= TARGET_PARAMS_SHARE
                                   and row["relative_map_drop_pct"] <= TARGET_RELATIVE_DROP_PCT)
    report = {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "settings": {"percent": percent, "energy": energy, "dense_params": dense_params,
                     "sparse_params": sparse_params, "calib_mode": calib_mode,
                     "calib_images": num_calib_batches * batch_size, "calib_split": calib_split,
                     "eval": eval_set.describe(), "timing": "network only, fp32 and int8 of a "
                     "row timed in turns, median of %d runs" % repeats,
                     "fine_tuning": {"rows": [n for n, h in VARIANTS if h[0] == "prune-finetune"],
                                     **finetune_pruning, "epochs": finetune_epochs,
                                     "lr": FINETUNE_LR, "split": calib_split}
                     if finetune_epochs else "none",
                     "batchnorm_recalibration_images": recalibrate_images},
        "target": {"params_share_at_most": TARGET_PARAMS_SHARE,
                   "relative_map_drop_pct_at_most": TARGET_RELATIVE_DROP_PCT,
                   "best": best_row(rows)},
        "rows": rows, "seconds": round(time.time() - start, 1),
        "environment": environment_report(),
    }
    ray_info = ray_block(engine, scores, scoring_wall_s)
    if ray_info:
        report["ray"] = ray_info
    echo("[3/3] write %s/study-prune.{json,md,png}" % out_dir)
    write_json(os.path.join(out_dir, "study-prune.json"), report)
    write_text(os.path.join(out_dir, "study-prune.md"), markdown(report))
    plot(report, os.path.join(out_dir, "study-prune.png"))
    echo(markdown_table(rows))
    return report


def finetune_pruning_settings(percent=None, params_share=DEFAULT_FINETUNE_PARAMS_SHARE,
                              criterion=DEFAULT_FINETUNE_CRITERION,
                              min_keep=DEFAULT_FINETUNE_MIN_KEEP):
    """How the fine-tuned row is pruned (max mode): to a ``params_share`` of the parameters, or
    at ``percent`` of the channels when that is given."""
    return {"percent": percent, "params_share": None if percent is not None else params_share,
            "criterion": criterion, "min_keep": min_keep}


def score_trial(context, prefix):
    """mAP and AP50 of one checkpoint (a pure function, so it can run as a Ray task):
    ``context`` (eval set, batch size, decoding threads, progress bars)."""
    from ssdq.eval.evaluate import evaluate_checkpoint

    eval_set, batch_size, num_workers, progress = context
    result = evaluate_checkpoint(prefix, eval_set, batch_size, num_workers, progress=progress,
                                 speed_repeats=0)
    return {"map": result["map"], "ap50": result["ap50"]}


def _pruning_summary(meta):
    recipe = meta.get("pruning")
    if not recipe:
        return None
    return {k: recipe.get(k) for k in ("percent", "mode", "criterion", "min_keep", "params_share",
                                       "threshold", "num_scales", "widths",
                                   "channels")}


def best_row(rows):
    """The row meeting the target with the fewest parameters; else the smallest row within the
    mAP budget (closest to the parameter target); else the row with the smallest mAP drop."""
    in_budget = [r for r in rows if r["relative_map_drop_pct"] <= TARGET_RELATIVE_DROP_PCT]
    if in_budget:
        pick = min(in_budget, key=lambda r: (r["params"], r["size_mb"], -r["map"]))
    else:
        pick = min(rows, key=lambda r: r["relative_map_drop_pct"])
    return {"name": pick["name"], "precision": pick["precision"], "meets_target": pick["meets_target"],
            "params_share": pick["params_share"], "relative_map_drop_pct": pick["relative_map_drop_pct"],
            "checkpoint": pick["checkpoint"]}


def markdown_table(rows):
    lines = ["| model | params | size MB | compression | latency ms (batch 1) | img/s (batch 8) "
             "| mAP | layers |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        name = r["name"] + (" W8A8" if r["precision"] == "int8" else "")
        lines.append("| %s | %.2fM | %.2f | %.1f%% | %.2f | %.1f | %.2f | %+d |" % (
            name, r["params"] / 1e6, r["size_mb"], r["compression_pct"], r["latency_ms"],
            r["images_per_sec"], r["map"], r["layers_delta"]))
    return "\n".join(lines)


def markdown(report):
    from ssdq.scaleout.engine import where_ran

    s, best = report["settings"], report["target"]["best"]
    return "\n".join([
        "# Pruning and low-rank, then oneDNN int8 (W8A8)", "",
        "Pruned at %g%% of the prunable BatchNorm gammas (global threshold), low-rank fc6/fc7 "
        "keeping %g of the singular-value energy; no fine-tuning (pruned rows: BatchNorm "
        "statistics re-estimated on %d %s images, no weight changes)%s. mAP@[.5:.95] on %s; int8 "
        "calibrated (%s) on %d images of %r. Latency and img/s: %s. Size: weights as deployed "
        "(int8 convolution weights at 1 byte, anchors not counted); layers: convolutions, "
        "change against the baseline." % (s["percent"], s["energy"],
                                         s["batchnorm_recalibration_images"], s["calib_split"],
                                         _finetune_note(s["fine_tuning"]), _describe(s["eval"]), s["calib_mode"],
                                         s["calib_images"], s["calib_split"], s["timing"]), "",
        markdown_table(report["rows"]), "",
        "Target: at most %d%% of the baseline's parameters within %g%% relative mAP of dense "
        "fp32. Best row: **%s %s**, %.1f%% of the parameters, %.2f%% relative mAP drop (%s)."
        % (100 * TARGET_PARAMS_SHARE, TARGET_RELATIVE_DROP_PCT, best["name"], best["precision"],
           100 * best["params_share"], best["relative_map_drop_pct"],
           "meets the target" if best["meets_target"] else "does not meet the target"), "",
        "Study time: %.1f min." % (report["seconds"] / 60), ""]
        + (["Scoring: " + where_ran(report["ray"]), ""] if report.get("ray") else []))


def _finetune_note(fine_tuning):
    if fine_tuning == "none":
        return ""
    if fine_tuning["params_share"] is not None:
        how = "pruned to %g%% of the parameters" % (100 * fine_tuning["params_share"])
    else:
        how = "pruned at %g%%" % fine_tuning["percent"]
    if fine_tuning["criterion"] != "gamma":
        how += " by %s" % fine_tuning["criterion"]
    if fine_tuning["min_keep"]:
        how += ", every layer keeping at least %g%% of its channels" % (100 * fine_tuning["min_keep"])
    return ("; except %s: %s, then fine-tuned %d epochs on the %s split (Adam, lr %g, cosine "
            "decay), as network slimming does" % (", ".join(fine_tuning["rows"]), how,
                                                    fine_tuning["epochs"], fine_tuning["split"],
                                                    fine_tuning["lr"]))


def _describe(dataset):
    return "%d %s images (%s)" % (dataset["images"], dataset["split"], os.path.basename(dataset["root"]))


def plot(report, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2), sharey=True)
    for ax, key, label in ((axes[0], "size_mb", "weights as deployed (MB)"),
                           (axes[1], "latency_ms", "latency, batch 1, network (ms)")):
        for precision, marker in (("fp32", "o"), ("int8", "^")):
            rows = [r for r in report["rows"] if r["precision"] == precision]
            ax.scatter([r[key] for r in rows], [r["map"] for r in rows], marker=marker,
                       label=precision)
            for r in rows:
                ax.annotate(r["name"], (r[key], r["map"]), fontsize=6, alpha=0.8)
        ax.set_xlabel(label)
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("mAP@[.5:.95]")
    axes[0].legend()
    fig.suptitle("mAP against size and latency: pruning, low-rank, W8A8")
    fig.tight_layout()
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
