"""train.augment.TargetAssigner gives the targets gluoncv's SSDTargetGenerator gives, on real
augmented batches and on the corner cases its matching has (an image without boxes, tied IoUs)."""
import numpy as np
import pytest

from ssdq.data.dataset import open_dataset
from ssdq.train.augment import MAX_OBJECTS, AugmentedDetection, TargetAssigner


def _anchors(classes):
    import mxnet as mx
    from mxnet import autograd

    from ssdq.model.ssd import reference_ssd

    net = reference_ssd(classes)
    net.initialize()
    with autograd.train_mode():
        _, _, anchors = net(mx.nd.zeros((1, 3, 300, 300)))
    return anchors


def _gluoncv(anchors, targets):
    import mxnet as mx
    from gluoncv.model_zoo.ssd.target import SSDTargetGenerator

    generator = SSDTargetGenerator(iou_thresh=0.5, stds=(0.1, 0.1, 0.2, 0.2),
                                   negative_mining_ratio=-1)
    cls_targets, box_targets, _ = generator(anchors, None, targets[:, :, :4], targets[:, :, 4:5])
    box_targets = mx.nd.where(mx.nd.contrib.isfinite(box_targets), box_targets,
                              mx.nd.zeros_like(box_targets))
    return cls_targets.asnumpy(), box_targets.asnumpy()


@pytest.fixture(scope="module")
def batches(tiny_data):
    train = open_dataset(tiny_data, "train")
    aug = AugmentedDetection(train, seed=3)
    samples = np.stack([aug[i][1] for i in range(len(aug))])
    empty = -np.ones((1, MAX_OBJECTS, 5), np.float32)  # an image whose boxes were cropped away
    tied = -np.ones((1, MAX_OBJECTS, 5), np.float32)  # two identical boxes: IoUs tie exactly
    tied[0, :2] = [[40, 60, 140, 200, 2], [40, 60, 140, 200, 4]]
    return _anchors(train.classes), [samples[:8], samples[8:], np.concatenate([empty, tied])]


def test_targets_are_gluoncvs(batches):
    import mxnet as mx

    anchors, groups = batches
    assigner = TargetAssigner(anchors)
    for targets in groups:
        targets = mx.nd.array(targets)
        want_cls, want_box = _gluoncv(anchors, targets)
        got_cls, got_box = (t.asnumpy() for t in assigner(targets))
        assert (want_cls > 0).sum() > 0
        np.testing.assert_array_equal(got_cls, want_cls)
        np.testing.assert_allclose(got_box, want_box, rtol=1e-5, atol=1e-5)


def test_every_box_gets_an_anchor_and_background_is_zero(batches):
    import mxnet as mx

    anchors, groups = batches
    targets = groups[0]
    cls_targets, box_targets = (t.asnumpy() for t in TargetAssigner(anchors)(mx.nd.array(targets)))
    for image, cls in zip(targets, cls_targets):
        labels = image[image[:, 4] >= 0, 4]
        assert set(np.unique(cls[cls > 0]) - 1) == set(labels)  # every class present is matched
    assert (box_targets[cls_targets == 0] == 0).all()
