"""Channel pruning by BatchNorm scaling factors (network slimming) on the Gluon BatchNorm model.

Who feeds whom is read from the traced symbol, never from a table: a layer (conv + BN + relu) is
prunable when everything that reads its activation is a convolution (through max pooling) or only
reads its shape (the anchor generators); conv4_3's activation also feeds L2Norm, so it keeps its
width. Pruning is a *recipe* (the channels each layer keeps, the scales kept) that is saved in the
checkpoint's meta and executed by ``apply_recipe``: the kept channels' weights are copied into an
ordinary SSD built with those per-layer widths, and each removed channel's constant activation
``relu(beta)`` is folded into the bias of every convolution that reads it (heads included). The
fold is exact where the consumer's window lies inside the image; at zero-padded borders the
removed channel contributed less, which is the approximation network slimming makes too.
"""
import time
from dataclasses import dataclass, field

import mxnet as mx
import numpy as np
from mxnet.gluon import nn

from ssdq.compress.pruning.options import (
    PruneOptions,
    check_settings,
)
from ssdq.data.loader import iterate_batches
from ssdq.errors import SsdqError
from ssdq.model.convert import export_checkpoint, network_from
from ssdq.model.graph import Graph
from ssdq.model.ssd import SHAPE_ONLY_ANCHORS, feature_convs, reference_ssd, round_width
from ssdq.train.loop import EvalHook, fit
from ssdq.train.options import FINETUNE_BATCH_SIZE

PASS_THROUGH_OPS = ("Activation", "Pooling")  # keep channel i in channel i


@dataclass
class PrunableLayer:
    """A conv + BatchNorm + relu whose output channels can be removed."""
    conv: str  # Gluon block names
    batchnorm: str
    consumers: list = field(default_factory=list)  # convolutions reading its activation


def _blocks_by_node(net):
    """Symbol node name ('<block name>_fwd') -> Gluon block, for every block in ``net``."""
    found, stack = {}, [net]
    while stack:
        block = stack.pop()
        found[block.name + "_fwd"] = block
        stack.extend(block._children.values())  # pylint: disable=protected-access
    return found


def _graph(net):
    out = net(mx.sym.var("data"))
    graph = Graph(mx.sym.Group(list(out)) if isinstance(out, (list, tuple)) else out)
    return graph.nodes, graph.readers


def _channel_readers(nodes, readers, start):
    """Convolutions reading node ``start``'s channels as data, or None when anything else
    (L2Norm, concat, ...) reads them. Shape-only reads (anchor generators) are skipped."""
    convs, todo = [], [start]
    while todo:
        i = todo.pop()
        for j, slot in readers[i]:
            op = nodes[j]["op"]
            if op == "Convolution" and slot == 0:
                convs.append(nodes[j]["name"])
            elif op in PASS_THROUGH_OPS:
                todo.append(j)
            elif not _reads_shape_only(nodes, readers, j, slot):
                return None
    return convs


def _reads_shape_only(nodes, readers, j, slot):
    op = nodes[j]["op"]
    if op == "slice_like" and slot == 1:
        return True
    if op in ("_mul_scalar", "zeros_like"):
        return all(_reads_shape_only(nodes, readers, k, s) for k, s in readers[j])
    return False


def prunable_layers(net):
    """The prunable layers of ``net`` in graph order, derived from its traced symbol."""
    blocks = _blocks_by_node(net)
    nodes, readers = _graph(net)
    layers = []
    for j, node in enumerate(nodes):
        if node["op"] != "BatchNorm":
            continue
        conv = nodes[node["inputs"][0][0]]
        if conv["op"] != "Convolution":
            continue
        act = [k for k, _ in readers[j]]
        if len(act) != 1 or nodes[act[0]]["op"] != "Activation":
            continue
        consumers = _channel_readers(nodes, readers, act[0])
        if consumers:
            layers.append(PrunableLayer(blocks[conv["name"]].name, blocks[node["name"]].name,
                                        [blocks[c].name for c in consumers]))
    return layers


def prunable_batchnorms(net):
    by_name = {b.name: b for b in _blocks_by_node(net).values()}
    return [by_name[layer.batchnorm] for layer in prunable_layers(net)]


def _blocks_by_name(net):
    return {b.name: b for b in _blocks_by_node(net).values()}


def _gamma(block):
    return np.abs(block.gamma.data().asnumpy())


def _regular_count(kept, width):
    """Round a kept-channel count up to the next of 8, 16, 32, ... (at most the layer's width)."""
    target = 8
    while target < kept:
        target *= 2
    return min(target, width)


def channel_costs(net, layers, alive=None, blocks=None):
    """Deployed parameters one output channel of each prunable layer costs: its filter and bias,
    and its slice of every reader's filters (heads included). ``alive`` ({BatchNorm name: kept
    count}) counts the layers' channels as after pruning (the readers' outputs and a layer's
    inputs shrink with them); by default the dense widths. ``blocks``: {name: block} of ``net``
    taken earlier (a network since rewritten, as QAT rewrites it, no longer holds them)."""
    blocks = blocks or _blocks_by_name(net)
    alive = alive or {}
    width = {}  # output channels of each convolution, as alive
    for layer in layers:
        width[layer.conv] = alive.get(layer.batchnorm, blocks[layer.conv].weight.shape[0])
    producer = {reader: layer.conv for layer in layers for reader in layer.consumers}
    costs = {}
    for layer in layers:
        _, fan_in, kh, kw = blocks[layer.conv].weight.shape
        fan_in = width.get(producer.get(layer.conv), fan_in)
        costs[layer.batchnorm] = fan_in * kh * kw + 1 + sum(
            width.get(name, blocks[name].weight.shape[0]) * np.prod(blocks[name].weight.shape[2:])
            for name in layer.consumers)
    return costs


def plan_pruning(net, percent, mode="normal", criterion="gamma", min_keep=0.0, multiple=1):
    """The pruning recipe for ``net`` at a global threshold on the ``criterion`` (see
    ``CRITERIA``): the ``percent`` lowest-scoring of all prunable channels fall under it; each
    layer keeps at least ``min_keep`` of its channels (and at least one), and its count is
    rounded up to a multiple of ``multiple`` by the next-highest scores (regular modes round to
    8, 16, 32, ... instead). Returns a JSON-able dict (``apply_recipe`` executes it)."""
    check_settings(percent, mode, criterion, min_keep=min_keep, multiple=multiple)
    layers = prunable_layers(net)
    blocks = _blocks_by_name(net)
    gammas = {layer.batchnorm: _gamma(blocks[layer.batchnorm]) for layer in layers}
    if criterion == "gamma-per-param":
        costs = channel_costs(net, layers)
        mean_cost = np.mean([costs[name] for name, g in gammas.items() for _ in g])
        # scaled by the mean cost so the threshold reads in gamma units
        gammas = {name: g * mean_cost / costs[name] for name, g in gammas.items()}
    values = np.sort(np.concatenate(list(gammas.values())))
    threshold = float(values[int(len(values) * percent / 100)]) if percent > 0 else -1.0
    keep = {}
    for layer in layers:
        g = gammas[layer.batchnorm]
        floor = max(1, int(np.ceil(min_keep * len(g))))  # every layer keeps its largest gamma
        count = max(int((g > threshold).sum()), floor)
        if mode.startswith("regular"):
            count = _regular_count(count, len(g))
        elif multiple > 1:
            count = round_width(count, len(g), multiple)
        # the ``count`` largest: exactly the channels above the threshold when nothing rounded
        kept = np.sort(np.argsort(-g, kind="stable")[:count])
        keep[layer.conv] = [int(i) for i in kept]
    num_scales = len(net.class_predictors)
    if mode.endswith("max"):
        # a feature layer whose gammas all fall under the threshold carries constants only:
        # its scale and every later one (fed by it) go, with their heads and anchors
        for j, extra in enumerate(net.features.extras):
            bns = [b.name for b in extra if b.name in gammas]
            if any((gammas[name] <= threshold).all() for name in bns):
                num_scales = 2 + j
                break
    convs = feature_convs(net)
    convs = convs[:len(convs) - 2 * (len(net.class_predictors) - num_scales)]  # 2 per extra stage
    widths = [len(keep[c.name]) if c.name in keep else c._channels for c in convs]
    kept_convs = {c.name for c in convs}
    return {"percent": percent, "mode": mode, "criterion": criterion,
            "min_keep": min_keep, "channel_multiple": multiple, "threshold": threshold,
            "num_scales": num_scales, "widths": widths,
            "channels": {"before": int(sum(len(g) for g in gammas.values())),
                         "after": int(sum(len(keep[l.conv]) for l in layers if l.conv in kept_convs))},
            "keep": {name: idx for name, idx in keep.items() if name in kept_convs}}


def plan_for_params_share(net, share, mode="normal", criterion="gamma", min_keep=0.0,
                          multiple=1):
    """The recipe pruning the fewest channels whose network keeps at most ``share`` of
    ``net``'s deployed parameters (found by bisection on the channel count), with ``percent``
    set to what that threshold is."""
    check_settings(0, mode, criterion, share, min_keep, multiple)
    dense = deployed_params(net)
    total = sum(len(_gamma(bn)) for bn in prunable_batchnorms(net))
    planned = {}  # channel count -> (recipe, its deployed parameters)

    def plan(count):  # the ``count`` lowest-scoring channels under the threshold (0: none)
        if count not in planned:
            percent = 100.0 * (count - 0.5) / total if count else 0.0
            recipe = plan_pruning(net, percent, mode, criterion, min_keep, multiple)
            planned[count] = recipe, recipe_params(net, recipe)
        return planned[count]

    def fits(count):
        return plan(count)[1] <= share * dense

    if not fits(total):
        raise SsdqError("--params-share %g: no pruning (mode %s, criterion %s, min keep %g, "
                        "channel multiple %d) keeps that few parameters"
                        % (share, mode, criterion, min_keep, multiple))
    low, high = 0, total  # invariant: plan(high) fits; plan(low) does not, unless low == 0
    if fits(low):
        high = low
    while high - low > 1:
        mid = (low + high) // 2
        low, high = (low, mid) if fits(mid) else (mid, high)
    recipe, params = plan(high)
    return dict(recipe, params_share=params / dense)


def deployed_params(net):
    """Parameters of the Gluon BatchNorm model once exported (BatchNorms folded into the
    convolutions' weights and biases, L2Norm's scale into the heads', ``model.fold``; anchors
    not counted), as ``pruning.study.count_params`` counts a checkpoint's."""
    batchnorm = {p.name for b in _blocks_by_node(net).values() if isinstance(b, nn.BatchNorm)
                 for p in b.params.values()}
    return int(sum(p.data().size for p in net.collect_params().values()
                   if p.name not in batchnorm and "anchor" not in p.name
                   and not p.name.endswith("normalize_scale")))


def recipe_params(net, recipe):
    """``deployed_params`` of the network ``recipe`` makes of ``net``, without copying weights."""
    pruned = reference_ssd(net.classes, widths=recipe["widths"], num_scales=recipe["num_scales"],
                           anchor_alloc_size=SHAPE_ONLY_ANCHORS)
    pruned.initialize()
    pruned(mx.nd.zeros((1, 3, 300, 300)))
    return deployed_params(pruned)


def apply_recipe(net, recipe):
    """A new SSD with the recipe's widths and scales, holding ``net``'s kept weights; the
    constant activation relu(beta) of every removed channel is folded into its readers' biases."""
    pruned = reference_ssd(net.classes, widths=recipe["widths"], num_scales=recipe["num_scales"])
    pruned.initialize()
    pruned(mx.nd.zeros((1, 3, 300, 300)))  # infer the input channels
    source = _blocks_by_name(net)
    out_keep, in_keep, fold = {}, {}, {}
    for layer in prunable_layers(net):
        kept = recipe["keep"].get(layer.conv)
        if kept is None:  # a dropped scale
            continue
        out_keep[layer.conv] = out_keep[layer.batchnorm] = kept
        bn = source[layer.batchnorm]
        removed = np.setdiff1d(np.arange(len(_gamma(bn))), kept)
        constant = np.maximum(bn.beta.data().asnumpy()[removed], 0)
        for reader in layer.consumers:
            in_keep[reader] = kept
            fold[reader] = (removed, constant)
    for name, block in _blocks_by_name(pruned).items():
        for attr, param in block._reg_params.items():  # pylint: disable=protected-access
            value = source[name]._reg_params[attr].data().asnumpy()  # pylint: disable=protected-access
            if name in out_keep and attr in ("weight", "bias", "gamma", "beta", "running_mean",
                                             "running_var"):
                value = value[out_keep[name]]
            if attr == "bias" and name in fold:
                removed, constant = fold[name]
                weight = source[name].weight.data().asnumpy()[out_keep.get(name, slice(None))]
                value = value + np.einsum("oihw,i->o", weight[:, removed], constant)
            if attr == "weight" and name in in_keep:
                value = value[:, in_keep[name]]
            param.set_data(mx.nd.array(value))
    return pruned


def recalibrate_batchnorm(net, batches):
    """Re-estimate every BatchNorm's running mean/var as the average over ``batches`` (NCHW
    arrays) of the pruned network's own batch statistics. No weight changes: removing channels
    whose gammas are small but not zero shifts the statistics the next BatchNorms expect."""
    bns = [b for b in _blocks_by_node(net).values() if isinstance(b, nn.BatchNorm)]
    momentum = {bn: bn._kwargs["momentum"] for bn in bns}  # pylint: disable=protected-access
    try:
        for k, batch in enumerate(batches, 1):
            for bn in bns:  # running = running * m + batch * (1 - m): a running average
                bn._kwargs["momentum"] = (k - 1) / k  # pylint: disable=protected-access
            with mx.autograd.record():
                cls_preds = net(mx.nd.array(batch))[0]
            cls_preds.backward()  # MXNet's CPU BatchNorm updates its running statistics here
    finally:
        for bn, m in momentum.items():
            bn._kwargs["momentum"] = m  # pylint: disable=protected-access
    return net


def prune(out_prefix, options=None, train_set=None, batch_size=FINETUNE_BATCH_SIZE, seed=0,
          progress=False, select_set=None):
    """Prune the reference model as ``options`` (``PruneOptions``) say and write the pruned,
    BN-folded checkpoint at ``out_prefix`` (meta: widths and the recipe); return (prefix,
    recipe). ``criterion`` and ``min_keep``: see ``plan_pruning``; ``params_share`` replaces
    ``percent`` by the smallest pruning that keeps at most that share of the parameters. With
    ``recalibrate_images``, the BatchNorm statistics are re-estimated on that many images of
    ``train_set`` first (``recalibrate_batchnorm``). ``finetune_epochs`` then trains the pruned
    network (BatchNorms still unfolded) on ``train_set`` with ``train.loop.fit`` (Adam, cosine
    decay from ``finetune_lr``), as network slimming does, keeping the epoch best on
    ``select_set`` (the dev split; without one, the last)."""
    options = options or PruneOptions()
    options.check()
    net, source = network_from(options.params)
    if options.params_share is None:
        recipe = plan_pruning(net, options.percent, options.mode, options.criterion,
                              options.min_keep, options.channel_multiple)
    else:
        recipe = plan_for_params_share(net, options.params_share, options.mode,
                                       options.criterion, options.min_keep,
                                       options.channel_multiple)
    pruned = apply_recipe(net, recipe)
    if options.recalibrate_images:
        if train_set is None or len(train_set) < options.recalibrate_images:
            raise SsdqError("BatchNorm recalibration needs %d images" % options.recalibrate_images)
        subset = train_set.subset(options.recalibrate_images)
        recalibrate_batchnorm(pruned, (b for b, _ in iterate_batches(subset, batch_size)))
        recipe["batchnorm_recalibrated_on"] = subset.describe()
    if options.finetune_epochs:
        recipe["finetune"] = finetune_pruned(pruned, train_set, options.finetune_epochs,
                                             options.finetune_lr, batch_size, seed, progress,
                                             select_set)
    layers_before, layers_after = len(_convs(net)), len(_convs(pruned))
    recipe["conv_layers"] = {"before": layers_before, "after": layers_after,
                             "delta": layers_after - layers_before}
    source = dict(source, widths=recipe["widths"], pruning=recipe)
    return export_checkpoint(pruned, source, out_prefix, with_batchnorm=True), recipe


def finetune_pruned(net, train_set, epochs, lr, batch_size, seed=0, progress=False,
                    select_set=None):
    """Train the pruned Gluon network in place (``train.loop.fit``), keeping the epoch best on
    ``select_set`` (the weights before training compete too; without one, the last epoch);
    returns what the meta records of it."""
    if train_set is None or len(train_set) < batch_size:
        raise SsdqError("fine-tuning after pruning needs at least one batch of %d train images"
                        % batch_size)
    hooks = [] if select_set is None else [
        EvalHook(select_set, keep="best", key=select_set.split, at_start=True)]
    start = time.time()
    trainer = fit(net, train_set, epochs, batch_size=batch_size, lr=lr, seed=seed,
                  warmup=min(20, epochs * len(train_set) // batch_size // 10 + 1),
                  hooks=hooks, progress=progress, desc="fine-tune pruned")
    return {"epochs": epochs, "lr": lr, "batch_size": batch_size, "seed": seed,
            "train_dataset": train_set.describe(),
            "select_split": "none" if select_set is None else select_set.split,
            "kept_epoch": hooks[0].best_epoch if hooks else epochs,
            "minutes": round((time.time() - start) / 60, 2),
            "history": [h for h in trainer.history if "lr" not in h]}


def _convs(net):
    return [b for b in _blocks_by_node(net).values() if isinstance(b, nn.Conv2D)]
