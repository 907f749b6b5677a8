"""train.reference: a short run of the reference training logs, chooses on dev and saves."""
import json
import os

import numpy as np

from ssdq.train.reference import train_reference


def test_short_training_run_logs_and_saves(tiny_data, tmp_path):
    out = str(tmp_path / "w.params")
    log = str(tmp_path / "log.jsonl")
    history = train_reference(tiny_data, out, epochs=1, batch_size=8, dev_images=8,
                              eval_every=1, log_every=1, log_file=log, num_workers=0,
                              log_extra={"stage": 7})
    losses = [h["cls_loss"] for h in history if "lr" in h]
    assert len(losses) == 4 and all(np.isfinite(losses))
    assert any("dev_map" in h for h in history) and not any("val_map" in h for h in history)
    assert os.path.isfile(out)
    lines = [json.loads(line) for line in open(log)]
    assert len(lines) == len(history) and all(e["stage"] == 7 for e in lines)
