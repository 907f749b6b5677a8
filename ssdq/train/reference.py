"""Train the embedded reference model (thin SSD300 VGG16-atrous with BatchNorm) on the synthetic
train split, choosing the kept epoch by mAP on the dev split (never on val, which the tables
report).

Recipe, chosen for a 2-core CPU: Adam (lr 1e-3, linear warm-up, cosine decay), batch 32,
weight decay 5e-5, the one training loop (``train.loop.fit``) with ``EvalHook`` keeping the best
epoch. Staged runs start from earlier weights (``init_params``); ``scripts/train_reference.py``
is the command line, and adds network slimming's sparsity penalty as a hook when asked.
"""
import os

import mxnet as mx

from ssdq.data.dataset import open_dataset
from ssdq.model.ssd import reference_ssd
from ssdq.train.loop import EvalHook, fit
from ssdq.train.options import SELECTION_SPLIT


def train_reference(data_root, out_params, epochs=20, batch_size=32, lr=1e-3, seed=0,
                    dev_images=500, eval_every=4, log_every=20, log_file=None, num_workers=1,
                    init_params=None, warmup=300, hooks=(), log_extra=None, keep="best",
                    progress=False):
    """Train and save the best-by-dev-mAP weights (``keep="last"``: the last epoch's) to
    ``out_params``; return the history.

    ``init_params`` starts from earlier weights (a second stage) instead of from scratch;
    ``hooks``: more training hooks (``compress.pruning.sparsity.SparsityHook``; a sparsity
    stage keeps its last epoch, the sparsest, not its best)."""
    mx.random.seed(seed)  # the initialisation of a run from scratch
    train_set = open_dataset(data_root, "train")
    dev_set = open_dataset(data_root, SELECTION_SPLIT).subset(dev_images)
    net = reference_ssd(train_set.classes)
    net.initialize()
    if init_params:
        net.load_parameters(init_params)
    selection = EvalHook(dev_set, every=eval_every, keep=keep, key=SELECTION_SPLIT,
                    save_to=out_params)
    trainer = fit(net, train_set, epochs, batch_size=batch_size, lr=lr, warmup=warmup, wd=5e-5,
                  seed=seed, hooks=[selection] + list(hooks), num_workers=num_workers,
                  log_every=log_every, log_file=log_file, log_extra=log_extra,
                  nonfinite_file=os.path.join(os.path.dirname(os.path.abspath(out_params)),
                                              "nonfinite-batch.nd"),
                  progress=progress)
    return trainer.history
