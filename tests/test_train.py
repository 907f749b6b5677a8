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
