"""The SSD graph's tail, and a faster one with the same detections.

GluonCV's SSD ends in a per-class decoder: for each of the C foreground classes it slices the
scores, concatenates them with all N decoded boxes, and hands the C*N candidates to ``box_nms``,
which sorts them all before keeping its top k (400). For an 80-class COCO model that is ~166
slice/concat ops and a sort over 698,560 candidates per image, all in fp32, which is why int8's
gain shrinks end to end.

``fast_detection_symbol`` builds the same computation vectorised: one softmax, a ``topk`` of the
k anchors with the best class score, a ``topk`` of the k best (anchor, class) pairs among those
k anchors' scores (scores at or under the decoder's threshold zeroed, as GluonCV does), a
gather of the chosen anchors' decoded boxes, and ``box_nms`` over those k candidates only.
``box_nms`` with ``topk=k`` keeps exactly the k highest valid candidates, so picking them first
changes nothing but the order among equal scores.
"""
import mxnet as mx

from ssdq.errors import SsdqError
from ssdq.model.graph import Graph


def graph_tail(symbol):
    """Names and settings of the SSD tail: the class logits, box offsets and anchors feeding the
    decoder, the decoder's score threshold, the box decoder's stds and the NMS settings."""
    graph = Graph(symbol)
    nodes = graph.nodes

    def source(node, i=0):
        return nodes[node["inputs"][i][0]]["name"] + "_output"

    tail = {}
    for index, node in enumerate(nodes):
        attrs = node.get("attrs", {})
        if node["op"] == "softmax" and "cls" not in tail:
            tail["cls"] = source(node)
        elif node["op"] == "_contrib_box_decode":
            tail["box"], tail["anchors"] = source(node, 0), source(node, 1)
            tail["stds"] = tuple(float(attrs.get("std%d" % i, 1.0)) for i in range(4))
            tail["box_format"] = attrs.get("format", "center")
            tail["clip"] = float(attrs.get("clip", -1))
        elif node["op"] == "_greater_scalar" and "cls" in tail and "score_thresh" not in tail:
            tail["score_thresh"] = float(attrs["scalar"])
        elif node["op"] == "_contrib_box_nms":
            tail["nms"] = {"overlap_thresh": float(attrs.get("overlap_thresh", 0.5)),
                           "topk": int(attrs.get("topk", -1)),
                           "valid_thresh": float(attrs.get("valid_thresh", 0)),
                           "force_suppress": attrs.get("force_suppress", "False") == "True"}
            tail["nms_index"] = index
        elif (node["op"] == "slice_axis" and "nms_index" in tail
              and node["inputs"][0][0] == tail["nms_index"] and attrs.get("axis") == "1"):
            tail["post_nms"] = int(attrs["end"])
    if "box" not in tail:
        tail.update(_unfused_box_decoder(graph))
    missing = [what for key, what in (("cls", "class softmax"), ("nms", "box_nms"))
               if key not in tail]
    if missing:
        raise SsdqError("not a GluonCV SSD graph: cannot find its %s" % " or ".join(missing))
    tail.setdefault("score_thresh", 0.01)
    return tail


def _unfused_box_decoder(graph):
    """GluonCV's box decoder as graphs saved before ``box_decode`` existed hold it (GluonCV's
    shipped int8 SSDs): split the offsets and anchors in 4, ``offset * std (+ 0)``, ``exp`` for
    w/h, scale by the anchors. -> {"box", "anchors", "stds", ...}, or {} if not recognised (then
    only the graph's own tail can run)."""
    nodes, consumers = graph.nodes, graph.output_readers

    def scaled(split, out):
        """std of ``offsets[out] * std + 0`` and the node holding the result, or None."""
        for mul in consumers.get((split, out), []):
            if nodes[mul]["op"] != "_mul_scalar":
                continue
            node, std = mul, float(nodes[mul]["attrs"]["scalar"])
            plus = [j for j in consumers.get((mul, 0), []) if nodes[j]["op"] == "_plus_scalar"]
            if plus:
                if float(nodes[plus[0]]["attrs"]["scalar"]) != 0.0:
                    return None  # non-zero means: not what box_decode computes
                node = plus[0]
            return std, node
        return None

    for split, node in enumerate(nodes):
        attrs = node.get("attrs", {})
        if node["op"] != "SliceChannel" or attrs.get("num_outputs") != "4":
            continue
        found = [scaled(split, i) for i in range(4)]
        if None in found:
            continue
        if not any(nodes[j]["op"] == "exp" for j in consumers.get((found[2][1], 0), [])):
            continue
        anchors = None
        for mul in consumers.get((found[0][1], 0), []):
            if nodes[mul]["op"] == "broadcast_mul":
                other = [s for s, _, _ in nodes[mul]["inputs"] if s != found[0][1]]
                if other and nodes[other[0]]["op"] == "SliceChannel":
                    anchors = nodes[other[0]]["inputs"][0][0]
        if anchors is None:
            continue
        exp = [j for j in consumers[(found[2][1], 0)] if nodes[j]["op"] == "exp"][0]
        clip = [float(nodes[j]["attrs"]["scalar"]) for j in consumers.get((exp, 0), [])
                if nodes[j]["op"] == "_minimum_scalar"]
        return {"box": nodes[node["inputs"][0][0]]["name"] + "_output",
                "anchors": nodes[anchors]["name"] + "_output",
                "stds": tuple(std for std, _ in found), "box_format": "center",
                "clip": clip[0] if clip else -1.0, "decoder": "unfused (pre-box_decode GluonCV)"}
    return {}


def network_symbol(symbol):
    """The network up to the raw class logits and box offsets (no decoding, no NMS)."""
    tail = _decodable_tail(symbol)
    internals = symbol.get_internals()
    return mx.sym.Group([internals[tail["cls"]], internals[tail["box"]]])


def _decodable_tail(symbol):
    tail = graph_tail(symbol)
    if "box" not in tail:
        raise SsdqError("cannot find the SSD's box decoder (box_decode, or GluonCV's split/exp "
                        "decoder) in the graph: only its own tail can run")
    return tail


def fast_detection_symbol(symbol, data_shape=(1, 3, 300, 300)):
    """``symbol`` with its decoder + NMS tail replaced by the vectorised one; same three outputs
    (class ids, scores, boxes), same detections."""
    tail = _decodable_tail(symbol)
    internals = symbol.get_internals()
    cls, box, anchors = (internals[tail[k]] for k in ("cls", "box", "anchors"))
    _, out_shapes, _ = cls.infer_shape(data=data_shape)
    _, num_anchors, num_outputs = out_shapes[0]
    nms = tail["nms"]
    k = min(nms["topk"] if nms["topk"] > 0 else num_anchors, (num_outputs - 1) * num_anchors)

    num_classes = num_outputs - 1

    def gather(data, index, rows_per_image):
        """data (batch, rows_per_image, ...) flattened over its first two axes; index (batch, m)
        of rows within each image -> (batch, m, ...)."""
        image = mx.sym.contrib.arange_like(index, axis=0)
        offset = mx.sym.reshape(image * rows_per_image, shape=(-1, 1))
        return mx.sym.take(data, mx.sym.broadcast_add(index, offset))

    scores = mx.sym.slice_axis(mx.sym.softmax(cls, axis=-1), axis=-1, begin=1, end=None)
    # Stage 1: the k anchors with the best class score. Every (anchor, class) pair among the k
    # best pairs lies on one of them (an anchor outside has k anchors above it, each with a pair
    # scoring higher), so stage 2 sorts k * classes scores instead of anchors * classes.
    _, top_anchor = mx.sym.topk(mx.sym.max(scores, axis=-1), axis=-1, k=min(k, num_anchors),
                                ret_typ="both", dtype="float32")
    shortlist = gather(mx.sym.reshape(scores, shape=(-1, num_classes)), top_anchor, num_anchors)
    shortlist = shortlist * (shortlist > tail["score_thresh"])  # the decoder's threshold
    # Stage 2: the k best pairs of the shortlist.
    top_scores, top_pair = mx.sym.topk(mx.sym.reshape(shortlist, shape=(0, -1)), axis=-1, k=k,
                                       ret_typ="both", dtype="float32")
    slot = mx.sym.floor(top_pair / num_classes)
    class_id = top_pair - slot * num_classes
    class_id = mx.sym.where(top_scores > 0, class_id, mx.sym.ones_like(class_id) * -1)
    anchor = gather(mx.sym.reshape(top_anchor, shape=(-1,)), slot, min(k, num_anchors))

    std0, std1, std2, std3 = tail["stds"]
    boxes = mx.sym.contrib.box_decode(box, anchors, std0=std0, std1=std1, std2=std2, std3=std3,
                                      clip=tail["clip"], format=tail["box_format"])
    picked = gather(mx.sym.reshape(boxes, shape=(-1, 4)), anchor, num_anchors)  # (batch, k, 4)

    candidates = mx.sym.concat(mx.sym.expand_dims(class_id, axis=-1),
                               mx.sym.expand_dims(top_scores, axis=-1), picked, dim=-1)
    result = mx.sym.contrib.box_nms(candidates, overlap_thresh=nms["overlap_thresh"], topk=-1,
                                    valid_thresh=nms["valid_thresh"], id_index=0, score_index=1,
                                    coord_start=2, force_suppress=nms["force_suppress"])
    if tail.get("post_nms"):
        result = mx.sym.slice_axis(result, axis=1, begin=0, end=min(tail["post_nms"], k))
    return mx.sym.Group([mx.sym.slice_axis(result, axis=2, begin=0, end=1),
                         mx.sym.slice_axis(result, axis=2, begin=1, end=2),
                         mx.sym.slice_axis(result, axis=2, begin=2, end=6)])
