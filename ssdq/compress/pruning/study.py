"""``ssdq study prune``: the reference work's pruning table, measured with real oneDNN int8.

Rows: the dense baseline, the sparse-trained model it is pruned from, network slimming in the
modes normal / max / regular / regular-max (no fine-tuning, as the reference; the pruned
network's BatchNorm statistics are re-estimated on a few train images), low-rank fc6/fc7
of the dense model and of the normal-pruned one, and network slimming's full pipeline (pruned
deeper, in max mode, then fine-tuned: ``slimming.prune`` with ``finetune_epochs``); each again as
W8A8 (prune, then quantize with ``quantize.quantize``). Every checkpoint is scored with pycocotools on the eval split; latency
(batch 1) and img/s (batch 8) are the network's, fp32 and int8 of a row timed in turns by
``bench.bench_model``. Parameters exclude the anchor tables (a cache the graph could recompute);
size is the weights as deployed (int8 convolution weights at one byte).

The mAP scoring of the checkpoints is a trial (``score_trial``) run by an engine
(``scaleout.engine``: here one after another by default, or as Ray tasks). Building, quantizing
and timing stay in this process, one variant at a time and before any trial starts: timings
taken beside parallel trials would measure cores shared with them, not the network.
"""
import dataclasses
import os
import time

import numpy as np

from ssdq.backends import mxnet_backend
from ssdq.bench.harness import Case, time_in_turns
from ssdq.compress.pruning.lowrank import lowrank
from ssdq.compress.pruning.options import PruneStudyOptions
from ssdq.compress.pruning.slimming import prune
from ssdq.compress.pruning.sparsity import SparsityHook
from ssdq.data.loader import iterate_batches
from ssdq.data.options import DEFAULT_BATCH_SIZE, DataOptions
from ssdq.data.source import open_data
from ssdq.data.transforms import resize
from ssdq.errors import SsdqError
from ssdq.eval.evaluate import evaluate_checkpoint
from ssdq.eval.metrics import relative_drop_pct
from ssdq.fileio import figure, utc_now, write_artifacts
from ssdq.fileio import markdown_table as table
from ssdq.host.environment import environment_report
from ssdq.model.checkpoint import load_checkpoint, sha256
from ssdq.model.convert import convert, network_from
from ssdq.model.graph import conv_count, deployed_weights_mb
from ssdq.model.weights import REFERENCE_WEIGHTS, describe
from ssdq.quant.options import CalibOptions
from ssdq.quant.qat import qat
from ssdq.quant.quantize import open_calibration_set, quantize
from ssdq.scaleout.engine import LocalEngine, ray_block, where_ran
from ssdq.train.options import FINETUNE_LR

TARGET_PARAMS_SHARE = 0.25
TARGET_RELATIVE_DROP_PCT = 1.0
# (row name, how the fp32 checkpoint is made)
VARIANTS = (("baseline", ("dense",)), ("sparse-trained", ("sparse",)),
            ("normal", ("prune", "normal")), ("normal (max)", ("prune", "max")),
            ("normal (regular)", ("prune", "regular")),
            ("normal (regular\\max)", ("prune", "regular-max")),
            ("low-rank", ("lowrank", "baseline")), ("normal + low-rank", ("lowrank", "normal")),
            ("normal (max) + fine-tuning", ("prune-finetune", "max")),
            ("normal (max) + QAT", ("prune-qat", "max")),
            ("sparse-trained + QAT", ("qat", "sparse")),
            ("sparse-trained + QAT, then normal (max) + QAT", ("qat-prune-qat", "max")),
            ("baseline + fine-tuning (control)", ("control",)))
# the rows trained ``finetune_epochs`` in all after pruning or around it: read against the control
FINETUNED_ROWS = tuple(name for name, how in VARIANTS
                       if how[0] in ("prune-finetune", "prune-qat", "qat-prune-qat"))
# rows whose int8 graph comes from quantization-aware training (``quant.qat``), not from PTQ
QAT_ROWS = tuple(name for name, how in VARIANTS if "qat" in how[0])
# the first step of quantize-then-prune, a row of its own: QAT of the sparse-trained model
QAT_FIRST_STEP = next(name for name, how in VARIANTS if how[0] == "qat")
# the dense fp32 model fine-tuned with the fine-tuned rows' schedule: what they are read against
CONTROL_ROW = next(name for name, how in VARIANTS if how[0] == "control")


def order_of(name, precision):
    """``prune-quantize`` or ``quantize-prune`` for a row that is pruned and int8, else None."""
    how = dict(VARIANTS)[name]
    if precision != "int8" or not ("prune" in how[0] or how[0] == "lowrank"
                                   and how[1] != "baseline"):
        return None
    return "quantize-prune" if how[0] == "qat-prune-qat" else "prune-quantize"


def count_params(ckpt):
    """Learned parameters of a checkpoint (quantized weights count once; anchors not at all)."""
    return int(sum(v.size for k, v in ckpt.arg_params.items()
                   if not ("anchor" in k or k.endswith(("_min", "_max")))))


def weights_mb(ckpt):
    """Weights as deployed (int8 convolution weights at 1 byte), anchors not counted."""
    return deployed_weights_mb(ckpt.symbol, ckpt.arg_params, skip=("anchor",))


def make_variants(work_dir, options, train_set=None, names=None, progress=False,
                  select_set=None, qat_data=None):
    """fp32 checkpoints of the rows ``names`` (default: all; the baseline and what a row is made
    from always come too) under ``work_dir``; -> {name: prefix}. Pruned rows re-estimate their
    BatchNorm statistics on ``train_set``; the fine-tuned rows are pruned as
    ``options.finetune_pruning()`` says and trained ``finetune_epochs`` in all, keeping the
    epoch best on ``select_set`` (with 0 epochs they are left out), and bring their control
    (the dense model trained the same way: made once, reused while its settings hold).

    The QAT rows (``QAT_ROWS``) train with int8 in the loop (``quant.qat``; ``qat_data``:
    (calib set, eval set, ``CalibOptions``, batch size)): prune-then-QAT trains the pruned
    network ``finetune_epochs``; quantize-then-prune is QAT of the sparse-trained model, pruning
    by the gammas that QAT trained, then QAT of the thinned network, the epochs split between
    the two (``qat_epochs``). Their prefix is the fp32 export of the trained weights; the int8
    graph beside it is ``qat_int8(prefix)``."""
    epochs = options.finetune_epochs
    trained = FINETUNED_ROWS + (CONTROL_ROW, QAT_FIRST_STEP)
    wanted = set(names or [name for name, _ in VARIANTS
                           if epochs or name not in trained]) | {"baseline"}
    if wanted & set(FINETUNED_ROWS):
        wanted.add(CONTROL_ROW)
    if "sparse-trained + QAT, then normal (max) + QAT" in wanted:
        wanted.add(QAT_FIRST_STEP)
    unknown = wanted - {name for name, _ in VARIANTS}
    if unknown:
        raise SsdqError("unknown study rows: %s" % ", ".join(sorted(unknown)))
    untuned = [name for name in trained if name in wanted and not epochs]
    if untuned:
        raise SsdqError("row %r needs --finetune-epochs of 1 or more" % untuned[0])
    if wanted & set(QAT_ROWS) and qat_data is None:
        raise SsdqError("the QAT rows need calibration and evaluation images")
    wanted |= {how[1] for name, how in VARIANTS if name in wanted and how[0] == "lowrank"}
    made = {}

    def train_qat(prefix, params, qat_epochs, sparsity=0.0):
        calib_set, eval_set, calib, batch_size = qat_data
        net, source = network_from(params)
        # the hook reads the plain network now: QAT rewrites it
        hooks = [SparsityHook(sparsity, *QAT_SPARSITY, net=net)] if sparsity else []
        qat(prefix + QAT_SUFFIX, net, source, train_set, calib_set, eval_set,
            options.qat_options(params, qat_epochs),
            dataclasses.replace(calib, calib_mode="naive"), select_set=select_set,
            batch_size=batch_size, progress=progress, log=lambda *_: None, hooks=hooks)
        return prefix + QAT_SUFFIX + "-fp32"

    first_qat, second_qat = options.qat_epochs()
    for name, how in VARIANTS:
        if name not in wanted:
            continue
        prefix = os.path.join(work_dir, name.replace(" ", "_").replace("\\", "-")
                              .replace("(", "").replace(")", "").replace("+", "plus")
                              .replace(",", ""))
        if how[0] == "dense":
            convert(prefix, model="reference", params_file=options.params or REFERENCE_WEIGHTS)
        elif how[0] == "sparse":
            convert(prefix, model="reference", params_file=options.sparse_params)
        elif how[0] == "prune":
            prune(prefix, options.pruning(how[1]), train_set)
        elif how[0] == "prune-finetune":
            prune(prefix, options.finetune_pruning(), train_set, progress=progress,
                  select_set=select_set)
        elif how[0] == "prune-qat":
            prune(prefix + "-pruned", options.finetune_pruning(finetune=False), train_set)
            prefix = train_qat(prefix, prefix + "-pruned", epochs)
        elif how[0] == "qat":
            prefix = train_qat(prefix, options.sparse_params, first_qat, options.qat_sparsity)
        elif how[0] == "qat-prune-qat":
            prune(prefix + "-pruned", options.finetune_pruning(
                finetune=False, params=made[QAT_FIRST_STEP]), train_set)
            prefix = train_qat(prefix, prefix + "-pruned", second_qat)
        elif how[0] == "control":
            if not _made_with(prefix, options.control_pruning(), train_set, select_set):
                prune(prefix, options.control_pruning(), train_set, progress=progress,
                      select_set=select_set)
        else:
            lowrank(made[how[1]], prefix, ("fc7", "fc6"), energy=options.energy)
        made[name] = prefix
    return made


# the penalty's weighting and gamma learning-rate factor during quantize-then-prune's first QAT:
# the sparse-trained model's last stage (its card)
QAT_SPARSITY = ("params", 15.0)
# a QAT row writes its int8 graph at PREFIX-qat and the fp32 export of its weights beside it
QAT_SUFFIX = "-qat"


def qat_int8(fp32_prefix):
    """The int8 graph QAT wrote beside the fp32 export ``fp32_prefix`` of a QAT row."""
    return fp32_prefix[:-len("-fp32")]


def _made_with(prefix, pruning, train_set, select_set):
    """Whether ``prefix`` is a checkpoint ``prune`` made with these settings from these weights
    and data (a control is the same for every run of one schedule)."""
    try:
        meta = load_checkpoint(prefix).meta
    except SsdqError:
        return False
    recipe, tuned = meta.get("pruning") or {}, (meta.get("pruning") or {}).get("finetune") or {}
    return (meta.get("weights_sha256") == sha256(pruning.params)
            and recipe.get("percent") == pruning.percent
            and (recipe.get("batchnorm_recalibrated_on") or {}).get("images")
            == pruning.recalibrate_images
            and tuned.get("epochs") == pruning.finetune_epochs
            and tuned.get("lr") == pruning.finetune_lr
            and tuned.get("train_dataset") == train_set.describe()
            and tuned.get("select_split") == (select_set.split if select_set else "none"))


def run_study(options=None, data=None, calib=None, batch_size=DEFAULT_BATCH_SIZE,
              num_workers=1, progress=True, names=None, echo=print, engine=None):
    """Make, quantize, time and score the rows; write study-prune.{json,md,png}.

    ``options``: ``PruneStudyOptions``; ``data`` (``DataOptions``): the images scored (the
    pruned rows' BatchNorm statistics and fine-tuning use the data root's ``calib_split``);
    ``calib`` (``CalibOptions``): the int8 rows' calibration. ``engine`` (``scaleout.engine``)
    runs the scoring; by default one after another here."""
    start = time.time()
    options, data, calib = options or PruneStudyOptions(), data or DataOptions(), calib or CalibOptions()
    options.check()
    eval_set = open_data(data, options.split, progress)
    if options.eval_images:
        eval_set = eval_set.subset(options.eval_images)
    calib_set = open_calibration_set(calib, data, progress)
    root = DataOptions(data.data_root, data.dataset_format)
    train_set = open_data(root, calib.calib_split)
    select_set = open_data(root, options.select_split, progress) \
        if options.finetune_epochs and options.select_split != "none" else None
    images = np.concatenate([b for b, _ in iterate_batches(eval_set.subset(min(8, len(eval_set))),
                                                           8, transform=resize)])
    echo("[1/3] fp32 variants (prune at %g%%, low-rank at %g energy) -> %s"
         % (options.percent, options.energy, options.model_dir))
    prefixes = make_variants(options.model_dir, options, train_set, names, progress, select_set,
                             qat_data=(calib_set, eval_set, calib, batch_size))
    engine = engine or LocalEngine()
    echo("[2/3] quantize %d variants, time every row in turns, then score them" % len(prefixes))
    rows, checkpoints = [], []
    for name, fp32_prefix in prefixes.items():
        if name in QAT_ROWS:
            int8_prefix = qat_int8(fp32_prefix)
        else:
            int8_prefix = quantize(fp32_prefix, fp32_prefix + "-int8", calib_set, calib,
                                   batch_size=batch_size, num_workers=num_workers,
                                   progress=progress)
        fp32, int8 = load_checkpoint(fp32_prefix), load_checkpoint(int8_prefix)
        for precision, ckpt in (("fp32", fp32), ("int8", int8)):
            rows.append({
                "name": name, "precision": precision, "params": count_params(fp32),
                "order": order_of(name, precision),
                "quantization": None if precision == "fp32" else (
                    "qat" if name in QAT_ROWS else "ptq"),
                "size_mb": round(weights_mb(ckpt), 3), "map": None, "ap50": None,
                "layers": conv_count(fp32.symbol), "checkpoint": ckpt.prefix,
                "pruning": _pruning_summary(fp32.meta),
                "lowrank": fp32.meta.get("lowrank", {}).get("layers")})
            checkpoints.append(ckpt)
    timing = time_rows(rows, checkpoints, images, options.repeats)
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
    control = next((r["map"] for r in rows if r["name"] == CONTROL_ROW
                    and r["precision"] == "fp32"), None)
    for row in rows:
        row["layers_delta"] = row["layers"] - base["layers"]
        row["compression_pct"] = round(100 * (1 - row["size_mb"] / base["size_mb"]), 1)
        row["params_share"] = round(row["params"] / base["params"], 4)
        against = base["map"]
        if row["name"] in FINETUNED_ROWS:  # read against the dense model trained the same way
            row["control_map"] = control
            against = max(base["map"], control)
        row["read_against_map"] = against
        row["relative_map_drop_pct"] = round(relative_drop_pct(against, row["map"]), 2)
        row["meets_target"] = bool(row["params_share"] <= TARGET_PARAMS_SHARE
                                   and row["relative_map_drop_pct"] <= TARGET_RELATIVE_DROP_PCT)
    finetune = options.finetune_pruning()
    report = {
        "created": utc_now(),
        "settings": {**options.to_dict(), "sparse_params": describe(options.sparse_params),
                     "dense_params": describe(options.params or REFERENCE_WEIGHTS),
                     "calibration": calib.to_dict(), "calib_mode": calib.calib_mode,
                     "calib_images": calib.num_calib_batches * batch_size,
                     "calib_split": calib.calib_split, "eval": eval_set.describe(),
                     "timing": timing,
                     "fine_tuning": {"rows": list(FINETUNED_ROWS), "percent": options.finetune_percent,
                                     "params_share": finetune.params_share,
                                     "criterion": finetune.criterion,
                                     "min_keep": finetune.min_keep,
                                     "channel_multiple": finetune.channel_multiple,
                                     "epochs": options.finetune_epochs, "lr": FINETUNE_LR,
                                     "split": calib.calib_split, "control_row": CONTROL_ROW,
                                     "control_map": control,
                                     "select_split": options.select_split}
                     if options.finetune_epochs else "none",
                     "qat": {"rows": list(QAT_ROWS), "lr": FINETUNE_LR,
                             "prune_then_qat_epochs": options.finetune_epochs,
                             "quantize_then_prune_epochs": list(options.qat_epochs()),
                             "first_last_fp32": options.qat_first_last_fp32,
                             "quantize_then_prune_sparsity":
                                 SparsityHook(options.qat_sparsity, *QAT_SPARSITY).describe()
                                 if options.qat_sparsity else "none",
                             "ranges": "trained (LSQ-style), from a naive calibration"}
                     if options.finetune_epochs else "none",
                     "batchnorm_recalibration_images": options.recalibrate_images},
        "target": {"params_share_at_most": TARGET_PARAMS_SHARE,
                   "relative_map_drop_pct_at_most": TARGET_RELATIVE_DROP_PCT,
                   "best": best_row(rows)},
        "rows": rows, "seconds": round(time.time() - start, 1),
        "environment": environment_report(mxnet_backend.runtime_info()),
    }
    ray_info = ray_block(engine, scores, scoring_wall_s)
    if ray_info:
        report["ray"] = ray_info
    echo("[3/3] write %s/study-prune.{json,md,png}" % options.out_dir)
    write_artifacts(os.path.join(options.out_dir, "study-prune"), report, markdown(report),
                    lambda path: plot(report, path))
    echo(markdown_table(rows))
    return report


LATENCY_BATCH, THROUGHPUT_BATCH = 1, 8


def time_rows(rows, checkpoints, images, repeats, warmup=2):
    """Every row's network latency (batch 1) and img/s (batch 8), all rows timed in turns in
    ``repeats`` interleaved rounds (one pass of every row a round), so a slow spell of a shared
    host hits every row alike; fills the rows' ``latency_ms``, ``images_per_sec`` and their
    spread over the rounds, and returns how they were timed (the largest spread included)."""
    spreads = []
    for batch_size in (LATENCY_BATCH, THROUGHPUT_BATCH):
        cases = [Case({"model": row["name"], "backend": "mxnet", "precision": row["precision"],
                       "scope": "network", "batch_size": batch_size}, ckpt, ckpt.precision)
                 for row, ckpt in zip(rows, checkpoints)]
        for row, record in zip(rows, time_in_turns(cases, images, warmup, repeats)):
            if "error" in record:
                raise SsdqError("row %r (%s) did not run: %s" % (row["name"], row["precision"],
                                                                  record["error"]))
            if batch_size == LATENCY_BATCH:
                row["latency_ms"] = round(record["latency_ms_median"], 2)
                row["latency_ms_min"] = round(record["latency_ms_min"], 2)
                row["latency_ms_max"] = round(record["latency_ms_max"], 2)
                row["latency_spread_pct"] = round(100 * (record["latency_ms_max"]
                                                         - record["latency_ms_min"])
                                                  / record["latency_ms_median"], 1)
                spreads.append(row["latency_spread_pct"])
            else:
                row["images_per_sec"] = round(record["images_per_sec"], 1)
    return {"scope": "network only", "rounds": repeats, "warmup": warmup,
            "how": "every row timed in turns in each round (interleaved), median over the rounds",
            "latency_batch_size": LATENCY_BATCH, "throughput_batch_size": THROUGHPUT_BATCH,
            "largest_latency_spread_pct": max(spreads) if spreads else None}


def score_trial(context, prefix):
    """mAP and AP50 of one checkpoint (a pure function, so it can run as a Ray task):
    ``context`` (eval set, batch size, decoding threads, progress bars)."""
    eval_set, batch_size, num_workers, progress = context
    result = evaluate_checkpoint(prefix, eval_set, batch_size, num_workers, progress=progress,
                                 speed_repeats=0)
    return {"map": result["map"], "ap50": result["ap50"]}


def _pruning_summary(meta):
    recipe = meta.get("pruning")
    if not recipe:
        return None
    return {k: recipe.get(k) for k in ("percent", "mode", "criterion", "min_keep",
                                       "channel_multiple", "params_share", "threshold",
                                       "num_scales", "widths",
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
    return table(("model", "params", "size MB", "compression", "latency ms (batch 1)",
                  "img/s (batch 8)", "mAP", "fp32 control", "layers"),
                 [(r["name"] + {None: "", "ptq": " W8A8", "qat": " W8A8 (QAT)"}[
                     r.get("quantization")],
                   "%.2fM" % (r["params"] / 1e6), "%.2f" % r["size_mb"],
                   "%.1f%%" % r["compression_pct"], "%.2f" % r["latency_ms"],
                   "%.1f" % r["images_per_sec"], "%.2f" % r["map"],
                   "-" if r.get("control_map") is None else "%.2f" % r["control_map"],
                   "%+d" % r["layers_delta"])
                  for r in rows])


def markdown(report):
    s, best = report["settings"], report["target"]["best"]
    timing = s["timing"]
    return "\n".join([
        "# Pruning and low-rank, then oneDNN int8 (W8A8)", "",
        "Pruned at %g%% of the prunable BatchNorm gammas (global threshold), low-rank fc6/fc7 "
        "keeping %g of the singular-value energy; no fine-tuning (pruned rows: BatchNorm "
        "statistics re-estimated on %d %s images, no weight changes)%s. mAP@[.5:.95] on %s; int8 "
        "calibrated (%s) on %d images of %r. Latency and img/s: network only, every row timed "
        "in turns in %d interleaved rounds, median; the widest spread of a row's latency over "
        "the rounds is %s%% ((max - min) / median). Size: weights as deployed (int8 convolution "
        "weights at 1 byte, anchors not counted); layers: convolutions, change against the "
        "baseline." % (s["percent"], s["energy"], s["batchnorm_recalibration_images"],
                       s["calib_split"], _finetune_note(s["fine_tuning"]), _describe(s["eval"]),
                       s["calib_mode"], s["calib_images"], s["calib_split"], timing["rounds"],
                       timing["largest_latency_spread_pct"]), "",
        markdown_table(report["rows"]), "",
        _qat_note(s.get("qat", "none")),
        "Target: at most %d%% of the baseline's parameters within %g%% relative mAP of dense "
        "fp32 (a fine-tuned row: of the better of dense fp32 and its control, the dense model "
        "fine-tuned the same way). Best row: **%s %s**, %.1f%% of the parameters, %.2f%% "
        "relative mAP drop (%s)."
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
    if fine_tuning.get("channel_multiple", 1) > 1:
        how += ", widths rounded up to multiples of %d" % fine_tuning["channel_multiple"]
    return ("; except %s: %s, then fine-tuned %d epochs on the %s split (Adam, lr %g, cosine "
            "decay, the epoch kept on %s), as network slimming does; its control (%s) is the "
            "dense model through the same steps" % (
                ", ".join(fine_tuning["rows"]), how, fine_tuning["epochs"],
                fine_tuning["split"], fine_tuning["lr"], fine_tuning.get("select_split"),
                fine_tuning.get("control_row")))


def _qat_note(qat):
    if qat == "none":
        return ""
    first, second = qat["quantize_then_prune_epochs"]
    return ("W8A8 (QAT): quantization-aware training (`ssdq qat`: BatchNorm folded in the "
            "forward pass, int8 weights per channel, trained activation ranges), the real "
            "oneDNN int8 graph of the trained weights and ranges; %s. Prune, then quantize: "
            "pruned as the fine-tuned row, then %d QAT epochs instead of fp32 fine-tuning. "
            "Quantize, then prune: %d QAT epoch(s) of the sparse-trained model (its own row), "
            "pruned by the gammas QAT trained, then %d QAT epoch(s) of the thinned network. Both "
            "train %d epochs in all, as the control.\n" % (
                "first convolution and heads in fp32" if qat["first_last_fp32"]
                else "every convolution int8, as the post-training rows",
                qat["prune_then_qat_epochs"], first, second, first + second))


def _describe(dataset):
    return "%d %s images (%s)" % (dataset["images"], dataset["split"], os.path.basename(dataset["root"]))


def plot(report, path):
    with figure(path, figsize=(11, 4.2), ncols=2, sharey=True) as (fig, axes):
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
    return path
