"""Shared fixtures: a small slice of the embedded dataset and checkpoints made from it.

The slices use the default seed, so ``tiny_data``'s val images are the first images of the real
default val split: the trained reference model is scored on data it has never seen.
"""
import os

import pytest

from helpers import make_voc_folder

TINY_SPLITS = {"train": 32, "dev": 16, "val": 64}


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory):
    from ssdq.data.synthetic import ensure_synthetic

    root = str(tmp_path_factory.mktemp("data") / "synthetic")
    ensure_synthetic(root, TINY_SPLITS, progress=False)
    return root


@pytest.fixture(scope="session")
def fp32_prefix(tmp_path_factory):
    from ssdq.model.convert import convert

    return convert(str(tmp_path_factory.mktemp("ckpt") / "converted"), model="reference")


@pytest.fixture(scope="session")
def int8_prefix(fp32_prefix, tiny_data):
    from ssdq.data.dataset import open_dataset
    from ssdq.quant.options import CalibOptions
    from ssdq.quant.quantize import quantize

    out = os.path.join(os.path.dirname(fp32_prefix), "quantized")
    return quantize(fp32_prefix, out, open_dataset(tiny_data, "train"),
                    CalibOptions(num_calib_batches=2), batch_size=16, progress=False)


@pytest.fixture(scope="session")
def voc_exports(tmp_path_factory):
    """A full-size zoo VOC SSD (ssd_300_vgg16_atrous_voc) with random, seeded weights, saved
    the two ways users do -- ``net.export`` and ``export_block(preprocess=True)`` -- beside a
    3-image VOC folder: {"plain": prefix, "baked": prefix, "voc": root}. No meta files."""
    import mxnet as mx
    from gluoncv.utils.export_helper import export_block

    from ssdq.data.dataset import load_voc
    from ssdq.data.loader import iterate_batches
    from ssdq.model.ssd import random_zoo_ssd

    folder = tmp_path_factory.mktemp("plain_exports")
    voc = make_voc_folder(str(folder / "voc"))
    from gluoncv.data import VOCDetection

    sample, _ = next(iterate_batches(load_voc(voc, "val", VOCDetection.CLASSES), 3))
    net, _ = random_zoo_ssd("ssd_300_vgg16_atrous_voc", sample)
    net.hybridize()
    net(mx.nd.zeros((1, 3, 300, 300)))
    net.export(str(folder / "exported"), epoch=0)
    export_block(str(folder / "baked"), net, data_shape=(300, 300, 3), preprocess=True,
                 layout="HWC")
    return {"plain": str(folder / "exported"), "baked": str(folder / "baked"), "voc": voc}


@pytest.fixture
def fake_host(tmp_path):
    """Build a fake host as a real sysfs tree: ``fake_host(nodes={0: "0-3,8-11"}, siblings=...)``.

    ``siblings``: a list (index = CPU) of thread_siblings_list strings, a function cpu -> string,
    or None (no topology files). ``has_memory``: node numbers with memory (default: every node).
    ``cpus_allowed`` / ``mems_allowed``: the process status file written at ROOT/status.
    Returns ROOT (a str) for ``sysfs_root``.
    """
    count = [0]

    def build(nodes, siblings=None, has_memory=None, cpus_allowed=None, mems_allowed=None,
              distances=None):
        from ssdq.host.topology import parse_cpu_list

        count[0] += 1
        root = tmp_path / ("sys%d" % count[0])
        node_dir = root / "devices" / "system" / "node"
        cpu_dir = root / "devices" / "system" / "cpu"
        node_dir.mkdir(parents=True)
        all_cpus = sorted(c for text in nodes.values() for c in parse_cpu_list(text))
        for n, text in nodes.items():
            (node_dir / ("node%d" % n)).mkdir()
            (node_dir / ("node%d" % n) / "cpulist").write_text(text + "\n")
            if distances:
                (node_dir / ("node%d" % n) / "distance").write_text(
                    " ".join(str(d) for d in distances[n]) + "\n")
        memory = sorted(nodes) if has_memory is None else has_memory
        (node_dir / "has_cpu").write_text(
            ",".join(str(n) for n in sorted(nodes) if nodes[n]) + "\n")
        (node_dir / "has_memory").write_text(",".join(map(str, memory)) + "\n")
        for cpu in all_cpus:
            topo = cpu_dir / ("cpu%d" % cpu) / "topology"
            topo.mkdir(parents=True)
            if siblings is not None:
                text = siblings(cpu) if callable(siblings) else siblings[cpu]
                (topo / "thread_siblings_list").write_text(text + "\n")
        (root / "status").write_text(
            "Name:\tpython\nCpus_allowed_list:\t%s\nMems_allowed_list:\t%s\n" % (
                cpus_allowed or "%d-%d" % (all_cpus[0], all_cpus[-1]),
                mems_allowed or ",".join(map(str, memory))))
        return str(root)

    return build


