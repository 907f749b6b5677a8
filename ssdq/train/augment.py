"""What training feeds the network: augmented train images with padded box targets, and the
anchors' class and box targets gluoncv's SSD loss reads.

The augmentation is light (a constrained random crop, horizontal flip, colour jitter, no
zoom-out: the synthetic objects already span 32-320 pixels), each image drawn from its own seed.
"""
import random

import cv2
import mxnet as mx
import numpy as np
from gluoncv.data.transforms.experimental.bbox import random_crop_with_constraints
from gluoncv.nn.bbox import BBoxCenterToCorner

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
    """The anchors' class and box targets of a batch of padded (x1, y1, x2, y2, class) boxes:
    what gluoncv's ``SSDTargetGenerator`` gives (IoU 0.5, stds (0.1, 0.1, 0.2, 0.2), no negative
    mining), computed in numpy.

    gluoncv's generator spends most of a training step's time in ``contrib.bipartite_matching``,
    which sorts all anchors x boxes scores of the batch (2.2 million at batch 16) to make at most
    one match per box. Here each box's match is taken greedily by argmax over the rows and
    columns still free, which is the same order (highest IoU first, ties in index order); the
    rest follows gluoncv step for step (``tests/train/test_augment.py`` compares them):

    1. bipartite: each box gets the free anchor it overlaps most;
    2. an anchor left whose best box has no better anchor takes that box (gluoncv's
       ``share_max=False``; for an image with no boxes, every anchor takes padding box 0);
    3. any other anchor takes its best box at IoU >= 0.5;
    4. a matched anchor's class target is its box's class + 1, the others 0 (background); its
       box target the box encoded on the anchor (centre offsets / size, log size ratios, over the
       stds), 0 where that is not finite (an anchor matched to padding)."""

    IOU_THRESH = 0.5
    STDS = np.array([0.1, 0.1, 0.2, 0.2], np.float32)
    EPS = 1e-12

    def __init__(self, anchors):
        self._corners = BBoxCenterToCorner(split=False)(anchors.reshape((-1, 4)))
        corners = self._corners.asnumpy()
        self._anchor_wh = corners[:, 2:] - corners[:, :2]
        self._anchor_xy = corners[:, :2] + self._anchor_wh * 0.5

    def __call__(self, targets):
        gt_boxes = targets[:, :, :4]
        # MXNet's IoU, so that matching reads the very numbers gluoncv's does
        ious = mx.nd.contrib.box_iou(self._corners, gt_boxes).asnumpy().transpose(1, 0, 2)
        matches = self._match(ious)
        targets = targets.asnumpy()
        batch = np.arange(len(matches))[:, None]
        positive = matches >= 0
        safe = np.where(positive, matches, 0)
        cls_targets = np.where(positive, targets[batch, safe, 4] + 1, 0).astype(np.float32)
        boxes = targets[batch, safe, :4]
        wh = boxes[..., 2:] - boxes[..., :2]
        xy = boxes[..., :2] + wh * 0.5
        with np.errstate(divide="ignore", invalid="ignore"):
            codes = np.concatenate([(xy - self._anchor_xy) / self._anchor_wh,
                                    np.log(wh / self._anchor_wh)], axis=-1) / self.STDS
        box_targets = np.where(positive[..., None] & np.isfinite(codes), codes, 0)
        return mx.nd.array(cls_targets), mx.nd.array(box_targets.astype(np.float32))

    @classmethod
    def _match(cls, ious):
        """(B, anchors, boxes) IoU -> (B, anchors) matched box index, -1 for none."""
        n_batch, n_anchors, n_boxes = ious.shape
        batch = np.arange(n_batch)
        bipartite = -np.ones((n_batch, n_anchors), np.int64)
        free = ious.reshape(n_batch, -1).copy()
        for _ in range(min(n_anchors, n_boxes)):
            flat = free.argmax(axis=1)
            live = free[batch, flat] > cls.EPS
            if not live.any():
                break
            b, row, col = batch[live], flat[live] // n_boxes, flat[live] % n_boxes
            bipartite[b, row] = col
            view = free.reshape(n_batch, n_anchors, n_boxes)
            view[b, row, :] = -np.inf
            view[b, :, col] = -np.inf
        best = ious.argmax(axis=2)
        best_iou = np.take_along_axis(ious, best[..., None], axis=2)[..., 0]
        box_max = ious.max(axis=1)  # (B, boxes): the box's best IoU over all anchors
        owns = best_iou + cls.EPS >= box_max[batch[:, None], best]
        matches = np.where(bipartite >= 0, bipartite, np.where(owns, best, -1))
        return np.where(matches >= 0, matches, np.where(best_iou >= cls.IOU_THRESH, best, -1))
