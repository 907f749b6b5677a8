"""train.loop: the one training loop calls its hooks in order, skips nothing silently, and
EvalHook keeps what it says it keeps."""
import json

import numpy as np

from ssdq.data.dataset import open_dataset
from ssdq.train.augment import AugmentedDetection
from ssdq.train.loop import EvalHook, HookBase, fit, lr_at


def test_augmented_samples_keep_valid_boxes(tiny_data):
    aug = AugmentedDetection(open_dataset(tiny_data, "train"), seed=0)
    for i in range(len(aug)):
        img, target = aug[i]
        assert img.shape == (3, 300, 300) and np.isfinite(img).all()
        valid = target[target[:, 4] >= 0]
        assert (valid[:, 2] > valid[:, 0]).all() and (valid[:, 3] > valid[:, 1]).all()
        assert valid[:, :4].min() >= -1 and valid[:, :4].max() <= 301


def test_learning_rate_warms_up_then_decays_to_one_percent():
    rates = [lr_at(i, 100, 1e-3, 10) for i in range(100)]
    assert rates[0] == 1e-4 and rates[9] == 1e-3
    assert all(a >= b for a, b in zip(rates[9:], rates[10:]))
    assert abs(lr_at(100, 100, 1e-3, 10) - 1e-5) < 1e-12


class Recorder(HookBase):
    def __init__(self):
        self.calls = []

    def __getattribute__(self, name):
        if name in ("before_train", "before_epoch", "before_step", "after_backward",
                    "after_step", "after_epoch", "after_train"):
            calls = object.__getattribute__(self, "calls")
            return lambda: calls.append(name)
        return object.__getattribute__(self, name)


def _net(tiny_data):
    import mxnet as mx

    from ssdq.model.ssd import reference_ssd
    from ssdq.model.weights import REFERENCE_WEIGHTS

    net = reference_ssd(open_dataset(tiny_data, "train").classes)
    net.load_parameters(REFERENCE_WEIGHTS, ctx=mx.cpu())
    return net


def test_hooks_are_called_around_every_step(tiny_data, tmp_path):
    hook = Recorder()
    log = str(tmp_path / "log.jsonl")
    trainer = fit(_net(tiny_data), open_dataset(tiny_data, "train"), 2, batch_size=16,
                  warmup=1, hooks=[hook], num_workers=0, log_every=1, log_file=log)
    steps = ["before_step", "after_backward", "after_step"]
    assert hook.calls == (["before_train"] + (["before_epoch"] + steps * 2 + ["after_epoch"]) * 2
                          + ["after_train"])
    epochs = [h for h in trainer.history if "epoch_min" in h]
    assert [e["epoch"] for e in epochs] == [1, 2] and all(np.isfinite(e["loss"]) for e in epochs)
    assert len(open(log).read().splitlines()) == len(trainer.history)
    json.loads(open(log).readline())


def test_eval_hook_keeps_the_best_epoch(tiny_data, tmp_path):
    """With keep="best" the weights after training are the best epoch's (the starting weights,
    scored at_start, are a candidate), and the saved file holds them."""
    dev = open_dataset(tiny_data, "dev")
    net = _net(tiny_data)
    keep = EvalHook(dev, keep="best", at_start=True, save_to=str(tmp_path / "best.params"))
    trainer = fit(net, open_dataset(tiny_data, "train"), 2, batch_size=16, lr=0.5, warmup=0,
                  hooks=[keep], num_workers=0, log_every=0)
    scored = {h["epoch"]: h["dev_map"] for h in trainer.history if "dev_map" in h and "epoch" in h}
    assert set(scored) == {0, 1, 2}
    assert trainer.history[-1]["kept_epoch"] == keep.best_epoch == max(scored, key=scored.get)
    assert abs(trainer.evaluate(dev)["map"] - max(scored.values())) < 0.01


def test_eval_hook_keeping_the_last_epoch_saves_it(tiny_data, tmp_path):
    saved = tmp_path / "last.params"
    net = _net(tiny_data)
    keep = EvalHook(open_dataset(tiny_data, "dev").subset(4), keep="last", save_to=str(saved))
    trainer = fit(net, open_dataset(tiny_data, "train"), 1, batch_size=16, lr=1e-3, warmup=0,
                  hooks=[keep], num_workers=0, log_every=0)
    assert trainer.history[-1] == dict(trainer.history[-1], kept_epoch=1, saved=str(saved))
    again = _net(tiny_data)
    again.load_parameters(str(saved))
    for mine, theirs in zip(net.collect_params().values(), again.collect_params().values()):
        np.testing.assert_array_equal(mine.data().asnumpy(), theirs.data().asnumpy())
