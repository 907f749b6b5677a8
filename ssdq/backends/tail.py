"""The SSD decode + NMS tail in numpy, for runtimes whose graph stops at the raw predictions.

The same computation as ``model.tail.fast_detection_symbol`` (ssdq's MXNet tail): softmax,
the k (400) anchors with the best class score, the k best (anchor, class) pairs among them
(scores at or under the decoder's threshold dropped), their boxes decoded, per-class greedy NMS
(IoU above 0.45 suppresses, as ``box_nms``), the best 100 kept. Output: (ids, scores, boxes)
shaped (N, 100, 1), (N, 100, 1), (N, 100, 4), unused rows -1, as the MXNet predictor returns.
"""
import numpy as np


class DetectionTail:
    def __init__(self, anchors, tail):
        """``anchors``: (1, A, 4) centre format; ``tail``: ``model.tail.graph_tail`` settings."""
        self.anchors = np.asarray(anchors, np.float32).reshape(-1, 4)
        self.stds = np.asarray(tail["stds"], np.float32)
        self.clip = float(tail.get("clip", -1))
        self.score_thresh = float(tail.get("score_thresh", 0.01))
        nms = tail["nms"]
        self.overlap = float(nms["overlap_thresh"])
        self.valid_thresh = float(nms["valid_thresh"])
        self.force_suppress = bool(nms.get("force_suppress", False))
        self.topk = int(nms["topk"]) if nms["topk"] > 0 else len(self.anchors)
        self.keep = int(tail.get("post_nms") or self.topk)
        if tail.get("box_format", "center") != "center":
            raise ValueError("only centre-format anchors are supported")

    def decode(self, offsets, anchors):
        """Box offsets (M, 4) against anchors (M, 4) -> corner boxes, as ``box_decode``."""
        ax, ay, aw, ah = anchors.T
        dw, dh = offsets[:, 2] * self.stds[2], offsets[:, 3] * self.stds[3]
        if self.clip > 0:
            dw, dh = np.minimum(dw, self.clip), np.minimum(dh, self.clip)
        x = offsets[:, 0] * self.stds[0] * aw + ax
        y = offsets[:, 1] * self.stds[1] * ah + ay
        w, h = np.exp(dw) * aw / 2, np.exp(dh) * ah / 2
        return np.stack([x - w, y - h, x + w, y + h], axis=1)

    def __call__(self, logits, offsets):
        """Raw class logits (N, A, C+1) and box offsets (N, A, 4) -> (ids, scores, boxes)."""
        n = len(logits)
        ids = np.full((n, self.keep, 1), -1, np.float32)
        scores = np.full((n, self.keep, 1), -1, np.float32)
        boxes = np.full((n, self.keep, 4), -1, np.float32)
        for i in range(n):
            found = self._image(np.asarray(logits[i], np.float32), np.asarray(offsets[i], np.float32))
            m = len(found[0])
            ids[i, :m, 0], scores[i, :m, 0], boxes[i, :m] = found
        return ids, scores, boxes

    def _image(self, logits, offsets):
        z = logits - logits.max(axis=1, keepdims=True)
        prob = np.exp(z)
        prob = (prob / prob.sum(axis=1, keepdims=True))[:, 1:]
        num_anchors, num_classes = prob.shape
        k_anchors = min(self.topk, num_anchors)
        best = prob.max(axis=1)
        top_anchor = np.argpartition(-best, k_anchors - 1)[:k_anchors]
        shortlist = prob[top_anchor]
        shortlist = np.where(shortlist > self.score_thresh, shortlist, 0).ravel()
        k = min(self.topk, len(shortlist))
        pairs = np.argpartition(-shortlist, k - 1)[:k]
        pairs = pairs[np.argsort(-shortlist[pairs], kind="stable")]
        pair_scores = shortlist[pairs]
        valid = pair_scores > self.valid_thresh
        pairs, pair_scores = pairs[valid], pair_scores[valid]
        anchor = top_anchor[pairs // num_classes]
        class_id = (pairs % num_classes).astype(np.float32)
        boxes = self.decode(offsets[anchor], self.anchors[anchor])
        kept = self._nms(boxes, class_id)[:self.keep]
        return class_id[kept], pair_scores[kept], boxes[kept]

    def _nms(self, boxes, class_id):
        """Greedy NMS over candidates sorted by score: indices kept, in order."""
        if len(boxes) == 0:
            return np.zeros(0, np.int64)
        x1, y1, x2, y2 = boxes.T
        area = np.maximum(x2 - x1, 0) * np.maximum(y2 - y1, 0)
        iw = np.maximum(np.minimum(x2[:, None], x2[None]) - np.maximum(x1[:, None], x1[None]), 0)
        ih = np.maximum(np.minimum(y2[:, None], y2[None]) - np.maximum(y1[:, None], y1[None]), 0)
        inter = iw * ih
        union = area[:, None] + area[None] - inter
        iou = np.where(union > 0, inter / np.where(union > 0, union, 1), 0)
        clash = iou > self.overlap
        if not self.force_suppress:
            clash &= class_id[:, None] == class_id[None]
        alive = np.ones(len(boxes), bool)
        kept = []
        for i in range(len(boxes)):
            if alive[i]:
                kept.append(i)
                if len(kept) == self.keep:
                    break
                alive &= ~clash[i]
        return np.asarray(kept, np.int64)
