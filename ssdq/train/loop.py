"""Train the embedded reference model (thin SSD300 VGG16-atrous with BatchNorm) from scratch.

Recipe, chosen for a 2-core CPU: Adam (lr 1e-3, linear warm-up, cosine decay), batch 32,
gluoncv's SSD target generator and MultiBox loss (3:1 hard negative mining), and a light
augmentation (constrained random crop, horizontal flip, colour jitter) with no zoom-out, since
the synthetic objects already span 32-320 pixels. Loss is logged every ``log_every`` iterations
and val mAP every ``eval_every`` epochs to ``LOG`` (JSON lines) and the terminal.
"""
import json
import logging
import os
import random
import time

import cv2
import mxnet as mx
import numpy as np
from gluoncv.data.transforms.experimental.bbox import random_crop_with_constraints
from gluoncv.loss import SSDMultiBoxLoss
from gluoncv.model_zoo.ssd.target import SSDTargetGenerator
from mxnet import autograd, gluon

from ssdq.data.dataset import open_dataset, read_image
from ssdq.data.transforms import INPUT_SIZE, normalize
from ssdq.eval.evaluate import detect
from ssdq.fileio import atomic_path
from ssdq.eval.metrics import COCOEvaluator
from ssdq.model.ssd import reference_ssd

log = logging.getLogger("ssdq.train")
MAX_OBJECTS = 16


class AugmentedDetection(gluon.data.Dataset):
    """Train records -> (CHW float32 image, (MAX_OBJECTS, 5) padded x1y1x2y2+class in pixels)."""

    def __init__(self, dataset, seed):
        self.records = dataset.records
        self.seed = seed

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        rng = np.random.default_rng((self.seed, i, random.getrandbits(32)))
        rec = self.records[i]
        img = read_image(rec.path)
        keep = ~rec.ignore
        boxes, labels = rec.boxes[keep].copy(), rec.labels[keep]
        h, w = img.shape[:2]
        if len(boxes) and rng.random() < 0.7:
            np.random.seed(int(rng.integers(2**31)))  # gluoncv's crop draws from np.random
            boxes_lab = np.concatenate([boxes, labels[:, None]], 1)
            cropped, (x, y, cw, ch) = random_crop_with_constraints(boxes_lab, (w, h), min_scale=0.4)
            img = img[y:y + ch, x:x + cw]
            boxes, labels = cropped[:, :4], cropped[:, 4].astype(np.int64)
            h, w = ch, cw
        if rng.random() < 0.5:
            img = img[:, ::-1]
            boxes = boxes.copy()
            boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
        img = cv2.resize(np.ascontiguousarray(img), (INPUT_SIZE, INPUT_SIZE),
                         interpolation=[cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC][rng.integers(3)])
        img = img.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)
        img = np.clip(img, 0, 255)
        boxes = boxes * np.array([INPUT_SIZE / w, INPUT_SIZE / h] * 2, np.float32)
        target = -np.ones((MAX_OBJECTS, 5), np.float32)
        n = min(len(boxes), MAX_OBJECTS)
        target[:n, :4], target[:n, 4] = boxes[:n], labels[:n]
        return normalize(img), target


class TargetAssigner:
    """gluoncv's SSD class and box targets of the anchors for a batch of padded
    (x1, y1, x2, y2, class) boxes, as training and fine-tuning use them."""

    def __init__(self, anchors):
        self.anchors = anchors
        self.generator = SSDTargetGenerator(iou_thresh=0.5, stds=(0.1, 0.1, 0.2, 0.2),
                                            negative_mining_ratio=-1)

    def __call__(self, targets):
        gt_boxes, gt_ids = targets[:, :, :4], targets[:, :, 4:5]
        cls_targets, box_targets, _ = self.generator(self.anchors, None, gt_boxes, gt_ids)
        # gluoncv's box encoder writes log(0) for an image with no box left (all crowd, or
        # cropped away); its anchors are all negatives, so their box targets are unused.
        box_targets = mx.nd.where(mx.nd.contrib.isfinite(box_targets), box_targets,
                                  mx.nd.zeros_like(box_targets))
        return cls_targets, box_targets


def _lr_at(it, total, base_lr, warmup):
    if it < warmup:
        return base_lr * (it + 1) / warmup
    progress = (it - warmup) / max(1, total - warmup)
    return base_lr * (0.01 + 0.99 * 0.5 * (1 + np.cos(np.pi * progress)))


def train_reference(data_root, out_params, epochs=20, batch_size=32, lr=1e-3, seed=0,
                    val_images=300, eval_every=4, log_every=20, log_file=None, num_workers=1,
                    init_params=None, warmup=300, sparsity=0.0, gamma_lr_mult=1.0,
                    sparsity_weighting="uniform"):
    """Train and save the best-by-val-mAP weights to ``out_params``; return the final log.

    ``init_params`` starts from earlier weights (a second stage) instead of from scratch.
    ``sparsity`` > 0 is network slimming's L1 penalty on the prunable BatchNorms' gammas
    (see ``prunable_gammas``): ``sparsity * sign(gamma)`` is added to their gradients.
    ``gamma_lr_mult`` scales those gammas' learning rate: Adam moves a parameter by about lr per
    step, so a short schedule cannot take a gamma from ~1 to ~0 without it.
    ``sparsity_weighting="params"`` scales each layer's penalty by the parameters one of its
    channels costs over the mean (``pruning.channel_costs``), as MorphNet's parameter
    regulariser does: expensive channels are pushed to zero harder, for a parameter budget.
    """
    random.seed(seed)
    np.random.seed(seed)
    mx.random.seed(seed)
    train_set = open_dataset(data_root, "train")
    val_set = open_dataset(data_root, "val").subset(val_images)
    net = reference_ssd(train_set.classes)
    net.initialize()
    if init_params:
        net.load_parameters(init_params)
    return fit(net, train_set, val_set, out_params, epochs=epochs, batch_size=batch_size, lr=lr,
               seed=seed, eval_every=eval_every, log_every=log_every, log_file=log_file,
               num_workers=num_workers, warmup=warmup, sparsity=sparsity,
               gamma_lr_mult=gamma_lr_mult, sparsity_weighting=sparsity_weighting)


def fit(net, train_set, val_set, out_params, epochs, batch_size=32, lr=1e-3, seed=0,
        eval_every=4, log_every=20, log_file=None, num_workers=1, warmup=300, sparsity=0.0,
        gamma_lr_mult=1.0, keep="best", progress=False, desc="train",
        sparsity_weighting="uniform"):
    """Train the Gluon SSD ``net`` (initialised) on ``train_set``; save its weights to
    ``out_params``: the best by val mAP (``keep="best"``) or the last epoch's (``"last"``).
    Without ``val_set`` nothing is scored, ``keep`` is "last", and with ``out_params`` None
    nothing is saved: ``net`` holds the trained weights. Returns the log (a list of dicts, also
    written to ``log_file`` as JSON lines)."""
    from tqdm import tqdm

    def retrace():
        # Gluon traces the graph in the mode (train or predict) of its first call, and SSD
        # returns different outputs in each: drop the cached graph whenever the mode changes.
        net.hybridize(static_alloc=True, static_shape=True)

    retrace()
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, INPUT_SIZE, INPUT_SIZE)))
    assign_targets = TargetAssigner(anchors)
    loss_fn = SSDMultiBoxLoss()
    loader = gluon.data.DataLoader(AugmentedDetection(train_set, seed), batch_size, shuffle=True,
                                   last_batch="discard", num_workers=num_workers)
    total_iters = epochs * len(loader)
    trainer = gluon.Trainer(net.collect_params(), "adam", {"learning_rate": lr, "wd": 5e-5,
                                                                 "clip_gradient": 10.0})
    gammas = prunable_gammas(net) if sparsity else []
    for gamma in gammas:
        gamma.lr_mult = gamma_lr_mult
    history, best_map, it = [], -1.0, 0
    start = time.time()
    log_fh = open(log_file, "a") if log_file else None

    def record(entry):
        entry["elapsed_min"] = round((time.time() - start) / 60, 2)
        history.append(entry)
        log.info(json.dumps(entry))
        if log_fh:
            log_fh.write(json.dumps(entry) + "\n")
            log_fh.flush()

    for epoch in range(1, epochs + 1):
        retrace()
        # re-costed each epoch: a "params" weighting follows the channels still alive
        penalties = sparsity_penalties(net, sparsity, sparsity_weighting) if sparsity else []
        cls_sum = box_sum = 0.0
        seen = 0
        bar = tqdm(loader, desc="%s epoch %d/%d" % (desc, epoch, epochs), unit="batch",
                   disable=not progress, leave=False)
        for data, targets in bar:
            trainer.set_learning_rate(_lr_at(it, total_iters, lr, warmup))
            data, targets = data.as_in_context(mx.cpu()), targets.as_in_context(mx.cpu())
            cls_targets, box_targets = assign_targets(targets)
            with autograd.record():
                cls_preds, box_preds, _ = net(data)
                sum_loss, cls_loss, box_loss = loss_fn([cls_preds], [box_preds],
                                                       [cls_targets], [box_targets])
            batch_cls = float(cls_loss[0].mean().asscalar())
            batch_box = float(box_loss[0].mean().asscalar())
            if not np.isfinite(batch_cls + batch_box):
                # A last guard: never let one degenerate batch poison the weights.
                record({"epoch": epoch, "iter": it, "skipped": "non-finite loss"})
                if out_params:
                    mx.nd.save(os.path.join(os.path.dirname(os.path.abspath(out_params)),
                                            "nonfinite-batch.nd"), {"data": data, "targets": targets})
                it += 1
                continue
            autograd.backward(sum_loss)
            for gamma, penalty in zip(gammas, penalties):
                grad = gamma.grad()
                grad += penalty * mx.nd.sign(gamma.data())
            trainer.step(1)
            cls_sum += batch_cls
            box_sum += batch_box
            seen += 1
            it += 1
            bar.set_postfix(loss="%.3f" % ((cls_sum + box_sum) / seen))
            if it % log_every == 0:
                record({"epoch": epoch, "iter": it, "lr": round(trainer.learning_rate, 6),
                        "cls_loss": round(cls_sum / seen, 4), "box_loss": round(box_sum / seen, 4),
                        **({"gamma_abs": gamma_distribution(gammas)} if gammas else {})})
        bar.close()
        last = epoch == epochs
        if val_set is None:
            record({"epoch": epoch, "iter": it, "cls_loss": round(cls_sum / max(seen, 1), 4),
                    "box_loss": round(box_sum / max(seen, 1), 4)})
        elif epoch % eval_every == 0 or last:
            retrace()
            metrics, _ = detect(_gluon_forward(net), val_set, COCOEvaluator(val_set),
                                batch_size=32, progress=False)
            entry = {"epoch": epoch, "iter": it, "val_map": round(metrics["map"], 2),
                     "val_ap50": round(metrics["ap50"], 2)}
            if gammas:
                entry["gamma_abs"] = gamma_distribution(gammas)
            if out_params and ((keep == "best" and metrics["map"] > best_map)
                               or (keep == "last" and last)):
                best_map = max(best_map, metrics["map"])
                with atomic_path(out_params) as tmp:
                    net.save_parameters(tmp)
                entry["saved"] = out_params
            record(entry)
    if val_set is None and out_params:
        with atomic_path(out_params) as tmp:
            net.save_parameters(tmp)
    if log_fh:
        log_fh.close()
    return history


def prunable_gammas(net):
    """The gamma Parameters of every BatchNorm network slimming may prune: all but conv4_3's,
    whose output feeds L2Norm and a head and keeps its width."""
    from ssdq.compress.pruning.slimming import prunable_batchnorms

    return [bn.gamma for bn in prunable_batchnorms(net)]


SPARSITY_WEIGHTINGS = ("uniform", "params")


ALIVE_GAMMA = 1e-2  # a channel whose |gamma| is under this counts as pruned when costing


def sparsity_penalties(net, sparsity, weighting="uniform"):
    """The L1 penalty on each of ``prunable_gammas(net)``: ``sparsity`` everywhere, or scaled
    by the parameters one of the layer's channels costs (counting only the channels still
    alive, |gamma| >= ``ALIVE_GAMMA``, as MorphNet does) over the mean cost."""
    from ssdq.compress.pruning.slimming import channel_costs, prunable_batchnorms, prunable_layers
    from ssdq.errors import SsdqError

    if weighting not in SPARSITY_WEIGHTINGS:
        raise SsdqError("unknown sparsity weighting %r (one of %s)"
                        % (weighting, ", ".join(SPARSITY_WEIGHTINGS)))
    layers = prunable_layers(net)
    if weighting == "uniform":
        return [sparsity] * len(layers)
    gammas = {bn.name: np.abs(bn.gamma.data().asnumpy()) for bn in prunable_batchnorms(net)}
    alive = {name: max(1, int((g >= ALIVE_GAMMA).sum())) for name, g in gammas.items()}
    costs = channel_costs(net, layers, alive)
    mean = sum(costs[name] * alive[name] for name in alive) / sum(alive.values())
    return [sparsity * costs[layer.batchnorm] / mean for layer in layers]


def gamma_distribution(gammas):
    """Quantiles and small-value shares of |gamma| over all prunable channels (for the log)."""
    values = np.abs(np.concatenate([g.data().asnumpy().ravel() for g in gammas]))
    quantiles = np.quantile(values, [0.1, 0.25, 0.5, 0.75, 0.9])
    out = {"q%d" % q: round(float(v), 4) for q, v in zip((10, 25, 50, 75, 90), quantiles)}
    for limit in (1e-3, 1e-2, 1e-1):
        out["below_%g" % limit] = round(float((values < limit).mean()), 4)
    return out


def _gluon_forward(net):
    def forward(batch):
        ids, scores, boxes = net(mx.nd.array(batch))
        return ids.asnumpy(), scores.asnumpy(), boxes.asnumpy()
    return forward
