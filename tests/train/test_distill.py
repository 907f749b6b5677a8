"""Knowledge distillation as a hook of the one training loop: the teacher's soft class scores
and confident box offsets as extra loss terms."""
import mxnet as mx
import numpy as np
import pytest

from ssdq.data.dataset import open_dataset
from ssdq.errors import SsdqError
from ssdq.model.convert import network_from
from ssdq.model.weights import REFERENCE_WEIGHTS
from ssdq.train.distill import DistillHook, load_teacher
from ssdq.train.loop import fit


@pytest.fixture(scope="module")
def teacher():
    return load_teacher(None)


def _batch():
    return mx.nd.random.uniform(-1, 1, shape=(2, 3, 300, 300))


def test_the_teacher_keeps_its_running_statistics_in_train_mode(teacher):
    """A BatchNorm teacher run in train mode (for its raw outputs) normalises with its running
    statistics, so one batch's predictions do not depend on the others in it."""
    net, described = teacher
    assert "reference" in described
    x = _batch()
    with mx.autograd.pause(train_mode=True):
        both, _, _ = net(x)
        first, _, _ = net(x[:1])
    np.testing.assert_allclose(both[:1].asnumpy(), first.asnumpy(), rtol=1e-4, atol=1e-4)
    assert all(p.grad_req == "null" for p in net.collect_params().values())


def test_a_student_equal_to_its_teacher_has_no_distillation_loss(teacher):
    net, described = teacher
    student, _ = network_from(REFERENCE_WEIGHTS)
    student.hybridize()
    x = _batch()
    with mx.autograd.pause(train_mode=True):
        cls, box, _ = net(x)
    hook = DistillHook(net, described)
    loss = hook.loss_terms(x, cls, box, mx.nd.ones((2, cls.shape[1])))
    assert loss.shape == (2,) and float(loss.abs().max().asscalar()) < 1e-4
    shifted = hook.loss_terms(x, cls * 0.5, box + 1.0, mx.nd.ones((2, cls.shape[1])))
    assert (shifted.asnumpy() > 1e-3).all()  # a student that differs pays for it


def test_distillation_pulls_the_student_towards_the_teacher(teacher, tiny_data):
    net, described = teacher
    student, _ = network_from(REFERENCE_WEIGHTS)
    for name, param in student.collect_params().items():  # a damaged copy of the teacher
        if name.endswith("weight") and "convpredictor" in name:
            param.set_data(param.data() * 0.5)
    hook = DistillHook(net, described, temperature=2.0)
    train = open_dataset(tiny_data, "train").subset(16)
    trainer = fit(student, train, 3, batch_size=8, warmup=1, hooks=[hook], num_workers=0,
                  lr=1e-3)
    kd = [h["kd_cls"] for h in trainer.history if "epoch_min" in h]
    assert len(kd) == 3 and kd[-1] < kd[0]
    assert hook.describe()["teacher"] == described


def test_bad_settings_and_teachers_are_one_line_errors(teacher, int8_prefix):
    net, described = teacher
    with pytest.raises(SsdqError, match="temperature"):
        DistillHook(net, described, temperature=0)
    with pytest.raises(SsdqError, match="int8"):
        load_teacher(int8_prefix)
