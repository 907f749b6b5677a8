"""Shared fixtures: a small slice of the embedded dataset and checkpoints made from it.

The slices use the default seed, so ``tiny_data``'s val images are the first images of the real
default val split: the trained reference model is scored on data it has never seen.
"""
import os
import subprocess
import sys

import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TINY_SPLITS = {"train": 32, "val": 64}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from ssdq.data.synthetic import ensure_synthetic

    root = str(tmp_path_factory.mktemp("data") / "synthetic")
    ensure_synthetic(root, TINY_SPLITS, progress=False)
    return root


@pytest.fixture(scope="session")
def fp32_prefix(tmp_path_factory):
    from ssdq.convert import convert

    return convert(str(tmp_path_factory.mktemp("ckpt") / "converted"), model="reference")


@pytest.fixture(scope="session")
def int8_prefix(fp32_prefix, tiny_data):
    from ssdq.data.dataset import open_dataset
    from ssdq.quantize import quantize

    out = os.path.join(os.path.dirname(fp32_prefix), "quantized")
    return quantize(fp32_prefix, out, open_dataset(tiny_data, "train"), num_calib_batches=2,
                    batch_size=16, progress=False)


def run_cli(*args, cwd=None, env=None):
    """Run ``python -m ssdq ARGS`` in a fresh process; return CompletedProcess (text)."""
    full_env = dict(os.environ, PYTHONPATH=REPO, MXNET_SUBGRAPH_VERBOSE="0")
    full_env.update(env or {})
    return subprocess.run([sys.executable, "-m", "ssdq", *args], cwd=cwd or REPO, env=full_env,
                          capture_output=True, text=True, timeout=600)


def assert_clean_error(proc, *fragments):
    """Exit status 2, one line on stderr starting 'ssdq: error:', no traceback."""
    assert proc.returncode == 2, (proc.returncode, proc.stdout, proc.stderr)
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = [l for l in proc.stderr.splitlines() if l.strip()]
    assert len(lines) == 1 and lines[0].startswith("ssdq: error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
