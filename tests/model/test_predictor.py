"""model.predictor: a batch smaller than the bound one runs at its own size, on an executor that
shares the bound one's weights, with the same detections."""
import numpy as np

from ssdq.data.dataset import open_dataset
from ssdq.data.loader import iterate_batches
from ssdq.model.checkpoint import load_checkpoint
from ssdq.model.predictor import Predictor


def test_a_partial_batch_runs_at_its_own_size(fp32_prefix, tiny_data):
    batch, _ = next(iterate_batches(open_dataset(tiny_data, "val").subset(8), 8))
    predictor = Predictor(load_checkpoint(fp32_prefix), 8)
    full = predictor(batch)
    part = predictor(batch[:3])
    assert all(len(out) == 3 for out in part)  # no padded rows computed or returned
    for a, b in zip(full, part):
        np.testing.assert_allclose(a[:3], b, rtol=1e-5, atol=1e-5)
    assert predictor.executor(3).arg_dict["data"].shape == (3, 3, 300, 300)
    assert sorted(predictor._executors) == [3, 8]
