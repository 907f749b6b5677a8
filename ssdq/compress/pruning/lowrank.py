"""Low-rank fc6/fc7: truncated SVD of a convolution on the folded checkpoint's graph.

A convolution W (out, in, kh, kw) is read as the matrix (out, in*kh*kw) = U S V^T and replaced
by two: the same kernel (stride, pad, dilation) to R channels with weights sqrt(S) V^T, then a
1x1 to ``out`` channels with U sqrt(S) and the original bias. fc7 (1x1) becomes two 1x1s, fc6
(3x3 dilated) a 3x3 dilated to R channels then a 1x1. The graph is edited as JSON, like BN
folding in ``model.convert``, so it works on any fp32 checkpoint, pruned ones included.
"""
import mxnet as mx
import numpy as np

from ssdq.errors import SsdqError
from ssdq.model.checkpoint import load_checkpoint, save_checkpoint
from ssdq.model.graph import Graph

LAYER_ALIASES = {"fc6": "dilated_conv0_fwd", "fc7": "dilated_conv1_fwd"}


def choose_rank(singular_values, rank=None, energy=None):
    """``rank`` (capped at the full rank), or the fewest singular values whose squares keep
    ``energy`` of the total."""
    if (rank is None) == (energy is None):
        raise SsdqError("give exactly one of --rank and --energy")
    if rank is not None:
        if rank < 1:
            raise SsdqError("--rank must be at least 1")
        return min(rank, len(singular_values))
    if not 0 < energy <= 1:
        raise SsdqError("--energy must be in (0, 1]")
    kept = np.cumsum(singular_values ** 2) / np.sum(singular_values ** 2)
    return int(min(np.searchsorted(kept, energy - 1e-12) + 1, len(singular_values)))


def factorize(weight, rank):
    """(first conv's weight (rank, in, kh, kw), 1x1 weight (out, rank, 1, 1))."""
    out_ch = weight.shape[0]
    u, s, vt = np.linalg.svd(weight.reshape(out_ch, -1).astype(np.float64), full_matrices=False)
    root = np.sqrt(s[:rank])
    first = (root[:, None] * vt[:rank]).reshape((rank,) + weight.shape[1:])
    second = (u[:, :rank] * root[None, :]).reshape(out_ch, rank, 1, 1)
    return first.astype(np.float32), second.astype(np.float32)


def lowrank(fp32_prefix, out_prefix, layers=("fc7", "fc6"), rank=None, energy=None):
    """Write ``out_prefix`` with each named convolution split in two; return (prefix, summary)."""
    ckpt = load_checkpoint(fp32_prefix).require_fp32("factorize")
    graph = Graph(ckpt.symbol)
    args = {k: v.asnumpy() for k, v in ckpt.arg_params.items()}
    summary = {}
    for layer in layers:
        suffix = LAYER_ALIASES.get(layer, layer)
        found = [i for i, n in enumerate(graph.json["nodes"])
                 if n["op"] == "Convolution" and n["name"].endswith(suffix)]
        if len(found) != 1:
            raise SsdqError("layer %r matches %d convolutions in %s (fc6, fc7 or a node name)"
                            % (layer, len(found), ckpt.prefix))
        summary[layer] = _split(graph.json, args, found[0], rank, energy)
    symbol = graph.to_symbol()
    meta = dict(ckpt.meta, lowrank={"rank": rank, "energy": energy, "layers": summary},
                source_checkpoint=ckpt.prefix)
    return save_checkpoint(out_prefix, symbol, {k: mx.nd.array(v) for k, v in args.items()},
                           ckpt.aux_params, meta), summary


def _split(graph, args, index, rank, energy):
    nodes = graph["nodes"]
    conv = nodes[index]
    attrs = conv.setdefault("attrs", {})
    weight_name = nodes[conv["inputs"][1][0]]["name"]
    weight = args.pop(weight_name)
    s = np.linalg.svd(weight.reshape(weight.shape[0], -1), compute_uv=False)
    r = choose_rank(s, rank, energy)
    first, second = factorize(weight, r)
    base = conv["name"].rsplit("_fwd", 1)[0]
    args[base + "_svd0_weight"], args[base + "_svd1_weight"] = first, second
    # node k keeps its place as the 1x1 (its consumers need no rewiring); the new nodes go at
    # the end and every node is then put back in topological order
    first_w = _add(nodes, {"op": "null", "name": base + "_svd0_weight", "inputs": []})
    first_conv = _add(nodes, {"op": "Convolution", "name": base + "_svd0_fwd",
                              "attrs": dict(attrs, num_filter=str(r), no_bias="True"),
                              "inputs": [conv["inputs"][0], [first_w, 0, 0]]})
    second_w = _add(nodes, {"op": "null", "name": base + "_svd1_weight", "inputs": []})
    conv["inputs"] = [[first_conv, 0, 0], [second_w, 0, 0]] + conv["inputs"][2:]
    conv["attrs"] = dict(attrs, kernel="(1, 1)", pad="(0, 0)", stride="(1, 1)", dilate="(1, 1)")
    _topological_order(graph)
    return {"rank": r, "full_rank": len(s),
            "energy_kept": round(float(np.sum(s[:r] ** 2) / np.sum(s ** 2)), 6),
            "params_before": int(weight.size), "params_after": int(first.size + second.size)}


def _add(nodes, node):
    nodes.append(node)
    return len(nodes) - 1


def _topological_order(graph):
    nodes, order, placed = graph["nodes"], [], {}

    def visit(i):
        if i in placed:
            return
        for src, _, _ in nodes[i]["inputs"]:
            visit(src)
        placed[i] = len(order)
        order.append(i)

    for i in range(len(nodes)):
        visit(i)
    for i in order:
        nodes[i]["inputs"] = [[placed[s], o, v] for s, o, v in nodes[i]["inputs"]]
    graph["heads"] = [[placed[s], o, v] for s, o, v in graph["heads"]]
    graph["nodes"] = [nodes[i] for i in order]
