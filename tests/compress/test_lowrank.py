"""Low-rank fc6/fc7: the SVD split is exact at full rank and counts its parameters."""
import numpy as np
import pytest

from ssdq.compress.pruning.lowrank import choose_rank, lowrank
from ssdq.errors import SsdqError
from ssdq.model.checkpoint import load_checkpoint
from ssdq.model.predictor import Predictor


def _network(prefix, batch):
    return Predictor(load_checkpoint(prefix), len(batch), fuse_fp32=False, tail="none")(batch)


def test_full_rank_split_keeps_the_outputs(fp32_prefix, tmp_path):
    out, summary = lowrank(fp32_prefix, str(tmp_path / "lowrank"), ["fc7", "fc6"], rank=10 ** 6)
    assert summary["fc7"]["rank"] == summary["fc7"]["full_rank"] == 128
    assert summary["fc6"]["full_rank"] == 128  # min(128 out, 64 * 9)
    ckpt = load_checkpoint(out)
    shapes = {k: v.shape for k, v in ckpt.arg_params.items() if "svd" in k}
    assert shapes[next(k for k in shapes if "dilated_conv0_svd0" in k)] == (128, 64, 3, 3)
    assert shapes[next(k for k in shapes if "dilated_conv0_svd1" in k)] == (128, 128, 1, 1)
    assert not any(k.endswith("dilated_conv0_weight") for k in ckpt.arg_params)
    batch = np.random.default_rng(0).normal(size=(2, 3, 300, 300)).astype(np.float32)
    for got, want in zip(_network(out, batch), _network(fp32_prefix, batch)):
        np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3)


def test_low_rank_counts_and_energy(fp32_prefix, tmp_path):
    out, summary = lowrank(fp32_prefix, str(tmp_path / "r16"), ["fc7", "fc6"], rank=16)
    assert summary["fc7"]["params_after"] == 16 * 128 + 128 * 16 < summary["fc7"]["params_before"]
    assert summary["fc6"]["params_after"] == 16 * 64 * 9 + 128 * 16
    before = sum(v.size for v in load_checkpoint(fp32_prefix).arg_params.values())
    after = sum(v.size for v in load_checkpoint(out).arg_params.values())
    saved = sum(s["params_before"] - s["params_after"] for s in summary.values())
    assert before - after == saved
    assert 0 < summary["fc6"]["energy_kept"] < 1
    s = np.array([3.0, 2.0, 1.0])
    assert choose_rank(s, energy=0.9) == 2 and choose_rank(s, energy=1.0) == 3
    with pytest.raises(SsdqError):
        choose_rank(s, rank=2, energy=0.5)
    with pytest.raises(SsdqError, match="matches 0"):
        lowrank(fp32_prefix, str(tmp_path / "bad"), ["fc9"], rank=4)
