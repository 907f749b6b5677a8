"""Quantization-aware training (``ssdq qat``): int8 learned in the loop, deployed on oneDNN.

The BatchNorm network trains with ``train.loop.fit`` while ``quant.fakequant`` makes every
convolution compute what the int8 graph computes (BatchNorm folded in the forward pass, int8
weights per output channel, uint8/int8 activations at trained ranges). The ranges start from a
naive calibration of the same weights (``quant.calibrated``). The epoch is kept by dev mAP of
the fake-quantized network (the starting one competes). Export is the ordinary path: the trained
BatchNorm weights are folded into an fp32 checkpoint (``PREFIX-fp32``), and the int8 graph is
``quantize.build_int8`` of that checkpoint with the trained ranges (``PREFIX``, its ranges in
``PREFIX-calib.json``): the real oneDNN kernels, which ``ssdq eval`` and ``ssdq bench`` run like
any ``ssdq quantize`` output. ``PREFIX-qat.json`` records the run, and the check that the real
graph scores what the fake-quantized network scored (the simulator check).

The trained BatchNorm weights are saved too (``PREFIX-fp32-bn.params``, the network's
architecture in the meta's ``widths``/``num_scales``) so that ``model.convert.network_from``
(``ssdq prune``, ``ssdq qat --params``) can train on, or prune by, the gammas QAT trained.
"""
import os
import tempfile
import time

from ssdq.errors import SsdqError
from ssdq.fileio import write_json
from ssdq.model.checkpoint import load_checkpoint
from ssdq.model.convert import export_checkpoint
from ssdq.model.layers import list_layers
from ssdq.quant.calibrated import Calibrated, range_keys
from ssdq.quant.fakequant import ActPoint, quantize_network
from ssdq.quant.options import CalibOptions, QatOptions
from ssdq.quant.quantize import build_int8, first_last_preset, save_int8
from ssdq.train.loop import (
    EvalHook,
    fit,
    warmup_for,
)

# the real int8 graph scores within this of the fake-quantized network (the simulator check)
CHECK_TOLERANCE = 0.15


def plan_layers(symbol, calibrated, first_last_fp32=False):
    """Where the int8 graph of ``symbol`` quantizes, as ``quantize_network`` takes it:
    {conv block name: {"weights_int8", "in", "out", "reads"}}, ranges from ``calibrated``
    (naive)."""
    layers = list_layers(symbol)
    keys = range_keys(symbol, layers, calibrated.fused_names)
    ranges = calibrated.thresholds("naive")
    fp32 = set(calibrated.excluded) | (set(first_last_preset(calibrated.fused))
                                       if first_last_fp32 else set())
    quantized = {l.name for l in layers if calibrated.fused_names.get(l.name) not in fp32}
    active = {keys[l][i] for l in quantized for i in (0, 1)}  # read or written in int8
    written = {keys[l.name][1] for l in layers}

    def point(key):
        if key not in active:
            return None
        if key not in ranges:
            raise SsdqError("no calibrated range for %s" % key)
        lo, hi = ranges[key]
        return ActPoint(key, max(abs(lo), abs(hi)) or 1.0, signed=lo < 0)

    plan = {}
    for layer in layers:
        in_key, out_key = keys[layer.name]
        plan[layer.name.rsplit("_fwd", 1)[0]] = {
            "weights_int8": layer.name in quantized, "out": point(out_key),
            "in": point(in_key) if in_key not in written else None, "reads": in_key}
    return plan


def qat(out_prefix, net, source, train_set, calib_set, eval_set, options=None, calib=None,
        select_set=None, batch_size=32, num_workers=1, progress=True, log=print, hooks=()):
    """Train ``net`` (a reference-topology BatchNorm network holding its weights; ``source``:
    what the checkpoints' meta says it is) with int8 in the loop and write ``out_prefix`` (the
    oneDNN int8 checkpoint), ``-fp32`` (and its ``-bn.params``), ``-calib.json`` and ``-qat.json``.
    ``hooks``: more ``train.loop`` hooks for the training (a regulariser such as network
    slimming's sparsity penalty); the record lists them. Returns the run record."""
    options = options or QatOptions()
    calib = calib or CalibOptions()
    if calib.calib_mode != "naive":
        raise SsdqError("QAT starts from naive ranges and trains them; drop --calib-mode")
    if select_set is not None and select_set.split == eval_set.split:
        raise SsdqError("the kept epoch would be chosen on %r, the split it is scored on"
                        % eval_set.split)
    if options.train_images:
        train_set = train_set.subset(min(options.train_images, len(train_set)))
    if len(train_set) < options.train_batch_size:
        raise SsdqError("QAT needs at least one batch of %d train images (have %d)"
                        % (options.train_batch_size, len(train_set)))
    start = time.time()
    os.makedirs(os.path.dirname(os.path.abspath(out_prefix)), exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="ssdq-qat-") as tmp:  # the starting weights, folded
        first = export_checkpoint(net, source, os.path.join(tmp, "start"))
        calibrated = Calibrated(first, calib_set, eval_set, calib, batch_size, num_workers,
                                progress=progress)
        plan = plan_layers(calibrated.ckpt.symbol, calibrated, options.first_last_fp32)
    ranges, restore = quantize_network(net, plan)
    # the reported split is scored once, on the kept weights; only the selection split is
    # looked at during training
    selection = None if select_set is None else EvalHook(
        select_set, keep="best", key=select_set.split, at_start=True, batch_size=batch_size)
    extra_hooks = list(hooks)
    hooks = ([selection] if selection else []) + extra_hooks
    trainer = fit(net, train_set, options.epochs, batch_size=options.train_batch_size,
                  lr=options.lr, warmup=warmup_for(options.epochs, len(train_set),
                                                   options.train_batch_size),
                  seed=options.seed, hooks=hooks, num_workers=num_workers, log_every=0,
                  log_file="%s-qat.log.jsonl" % out_prefix, progress=progress,
                  desc="qat")
    fake_quant = trainer.evaluate(eval_set, batch_size=batch_size)
    trained = {key: abs(float(p.data().asnumpy()[0])) for key, p in ranges.items()}
    restore()  # the plain BatchNorm network again, holding the trained weights
    fp32_prefix = export_checkpoint(net, source, out_prefix + "-fp32", with_batchnorm=True)
    int8, thresholds, untrained = _int8_graph(fp32_prefix, calib_set, eval_set, calib, plan,
                                              trained, batch_size, num_workers, progress)
    excluded = sorted(set(int8.excluded) | (set(first_last_preset(int8.fused))
                                            if options.first_last_fp32 else set()))
    graph = build_int8(int8.ckpt, int8.fused, thresholds, excluded)
    save_int8(out_prefix, int8.ckpt, graph, thresholds, {
        "quantized_dtype": "auto", "quantize_mode": "smart", "excluded_layers": excluded,
        "calibration": {"how": "trained ranges (QAT)", "trained": len(trained),
                        "calibrated_untrained": untrained}, "qat": options.to_dict()})
    real = int8.score(load_checkpoint(out_prefix), desc="eval int8 (oneDNN)")
    split = eval_set.split
    run = {
        "settings": dict(options.to_dict(), calibration=calib.to_dict()),
        "source": source, "train_images": len(train_set), "eval_images": len(eval_set),
        "eval_split": split, "select_split": select_set.split if select_set else "none",
        "kept_epoch": selection.best_epoch if selection else options.epochs,
        "fp32_layers": excluded, "trained_ranges": trained,
        "regularizers": [hook.describe() for hook in extra_hooks],
        "starting_ranges": {p.key: p.threshold for step in plan.values()
                            for p in (step["in"], step["out"]) if p},
        "history": trainer.history,
        "%s_map" % split: round(real["map"], 3),
        "check": {"fake_quant_map": round(fake_quant["map"], 3),
                  "onednn_int8_map": round(real["map"], 3),
                  "difference": round(real["map"] - fake_quant["map"], 3),
                  "tolerance": CHECK_TOLERANCE,
                  "within": abs(real["map"] - fake_quant["map"]) <= CHECK_TOLERANCE,
                  "how": "the kept weights and ranges on the %d %s images: the fake-quantized "
                         "Gluon network against the oneDNN int8 graph built from them"
                         % (len(eval_set), split)},
        "checkpoint": out_prefix, "fp32_checkpoint": fp32_prefix,
        "bn_params": fp32_prefix + "-bn.params",
        "minutes": round((time.time() - start) / 60, 2),
        "epoch_minutes": [h["epoch_min"] for h in trainer.history if "epoch_min" in h],
    }
    write_json(out_prefix + "-qat.json", run)
    log("kept epoch %s: fake-quant %s mAP %.2f, oneDNN int8 %.2f (difference %+.2f)" % (
        run["kept_epoch"], split, fake_quant["map"], real["map"], run["check"]["difference"]))
    return run


def _int8_graph(fp32_prefix, calib_set, eval_set, calib, plan, trained, batch_size, num_workers,
                progress):
    """The exported checkpoint calibrated (for every range the graph needs), with the trained
    ranges in place of the calibrated ones; -> (Calibrated, thresholds, untrained keys)."""
    calibrated = Calibrated(fp32_prefix, calib_set, eval_set, calib, batch_size, num_workers,
                            progress=progress)
    thresholds = dict(calibrated.thresholds("naive"))
    signed = {p.key: p.signed for step in plan.values() for p in (step["in"], step["out"]) if p}
    for key, t in trained.items():
        thresholds[key] = (-t, t) if signed[key] else (0.0, t)
    return calibrated, thresholds, sorted(set(thresholds) - set(trained))
