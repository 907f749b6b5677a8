"""What training feeds the network: augmented train images with padded box targets, and the
anchors' class and box targets gluoncv's SSD loss reads.

The augmentation is light (a constrained random crop, horizontal flip, colour jitter, no
zoom-out: the synthetic objects already span 32-320 pixels), each image drawn from its own seed.
"""
import random

import cv2
import numpy as np

from ssdq.data.dataset import read_image
from ssdq.data.transforms import INPUT_SIZE, normalize

MAX_OBJECTS = 16


class AugmentedDetection:
    """Train records -> (CHW float32 image, (MAX_OBJECTS, 5) padded x1y1x2y2+class in pixels),
    augmented; what gluon's DataLoader reads (a sequence: ``len`` and indexing)."""

    def __init__(self, dataset, seed):
        self.records = dataset.records
        self.seed = seed

    def __len__(self):
        return len(self.records)

    def __getitem__(self, i):
        return augment(self.records[i], self.seed, i)


def augment(rec, seed, i):
    """One training sample of record ``rec``: (CHW float32 image, padded targets)."""
    from gluoncv.data.transforms.experimental.bbox import random_crop_with_constraints

    rng = np.random.default_rng((seed, i, random.getrandbits(32)))
    img = read_image(rec.path)
    keep = ~rec.ignore
    boxes, labels = rec.boxes[keep].copy(), rec.labels[keep]
    h, w = img.shape[:2]
    if len(boxes) and rng.random() < 0.7:
        np.random.seed(int(rng.integers(2**31)))  # gluoncv's crop draws from np.random
        boxes_lab = np.concatenate([boxes, labels[:, None]], 1)
        cropped, (x, y, cw, ch) = random_crop_with_constraints(boxes_lab, (w, h), min_scale=0.4)
        img = img[y:y + ch, x:x + cw]
        boxes, labels = cropped[:, :4], cropped[:, 4].astype(np.int64)
        h, w = ch, cw
    if rng.random() < 0.5:
        img = img[:, ::-1]
        boxes = boxes.copy()
        boxes[:, [0, 2]] = w - boxes[:, [2, 0]]
    img = cv2.resize(np.ascontiguousarray(img), (INPUT_SIZE, INPUT_SIZE),
                     interpolation=[cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC][rng.integers(3)])
    img = img.astype(np.float32) * rng.uniform(0.7, 1.3) + rng.uniform(-25, 25)
    img = np.clip(img, 0, 255)
    boxes = boxes * np.array([INPUT_SIZE / w, INPUT_SIZE / h] * 2, np.float32)
    target = -np.ones((MAX_OBJECTS, 5), np.float32)
    n = min(len(boxes), MAX_OBJECTS)
    target[:n, :4], target[:n, 4] = boxes[:n], labels[:n]
    return normalize(img), target


class TargetAssigner:
    """gluoncv's SSD class and box targets of the anchors for a batch of padded
    (x1, y1, x2, y2, class) boxes."""

    def __init__(self, anchors):
        from gluoncv.model_zoo.ssd.target import SSDTargetGenerator

        self.anchors = anchors
        self.generator = SSDTargetGenerator(iou_thresh=0.5, stds=(0.1, 0.1, 0.2, 0.2),
                                            negative_mining_ratio=-1)

    def __call__(self, targets):
        import mxnet as mx

        gt_boxes, gt_ids = targets[:, :, :4], targets[:, :, 4:5]
        cls_targets, box_targets, _ = self.generator(self.anchors, None, gt_boxes, gt_ids)
        # gluoncv's box encoder writes log(0) for an image with no box left (all crowd, or
        # cropped away); its anchors are all negatives, so their box targets are unused.
        box_targets = mx.nd.where(mx.nd.contrib.isfinite(box_targets), box_targets,
                                  mx.nd.zeros_like(box_targets))
        return cls_targets, box_targets
