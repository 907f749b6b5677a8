import json
import os

import numpy as np

from ssdq.train import AugmentedDetection, train_reference


def test_augmented_samples_keep_valid_boxes(tiny_data):
    from ssdq.data.dataset import open_dataset

    aug = AugmentedDetection(open_dataset(tiny_data, "train"), seed=0)
    for i in range(len(aug)):
        img, target = aug[i]
        assert img.shape == (3, 300, 300) and np.isfinite(img).all()
        valid = target[target[:, 4] >= 0]
        assert (valid[:, 2] > valid[:, 0]).all() and (valid[:, 3] > valid[:, 1]).all()
        assert valid[:, :4].min() >= -1 and valid[:, :4].max() <= 301


def test_short_training_run_logs_and_saves(tiny_data, tmp_path):
    out = str(tmp_path / "w.params")
    log = str(tmp_path / "log.jsonl")
    history = train_reference(tiny_data, out, epochs=1, batch_size=8, val_images=8,
                              eval_every=1, log_every=1, log_file=log, num_workers=0)
    losses = [h["cls_loss"] for h in history if "cls_loss" in h]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert "val_map" in history[-1] and os.path.isfile(out)
    assert len(open(log).read().splitlines()) == len(history)
    json.loads(open(log).readline())


def test_sparsity_shrinks_only_the_prunable_gammas(tiny_data, tmp_path):
    import mxnet as mx

    from ssdq.convert import REFERENCE_WEIGHTS
    from ssdq.model import reference_ssd
    from ssdq.train import prunable_gammas

    out, log = str(tmp_path / "sparse.params"), str(tmp_path / "log.jsonl")
    train_reference(tiny_data, out, epochs=1, batch_size=8, val_images=8, eval_every=1,
                    log_every=2, log_file=log, num_workers=0, init_params=REFERENCE_WEIGHTS,
                    warmup=1, sparsity=1.0, gamma_lr_mult=20)

    def gammas(params):
        net = reference_ssd(["a", "b", "c", "d", "e", "f"])
        net.load_parameters(params, ctx=mx.cpu())
        prunable = {g.name: np.abs(g.data().asnumpy()) for g in prunable_gammas(net)}
        conv4_3 = net.features.stages[3][-2].gamma.data().asnumpy()
        return prunable, conv4_3

    before, conv4_3_before = gammas(REFERENCE_WEIGHTS)
    after, conv4_3_after = gammas(out)
    assert len(before) == 22 and not any("batchnorm9_" in name for name in before)
    for name in before:  # S = 1 dwarfs the loss gradient: every prunable |gamma| falls
        assert (after[name] < before[name] - 0.01).all(), name
    assert np.abs(conv4_3_after - conv4_3_before).max() < 0.01  # conv4_3 is not penalised
    entries = [json.loads(line) for line in open(log)]
    assert all("gamma_abs" in e for e in entries if "cls_loss" in e or "val_map" in e)
