"""Graph rewrites at export that change no result but remove work from every forward pass.

``fold(symbol, args, auxs, data_shape)`` applies, in this order:

- ``fold_batchnorm``: every Convolution -> BatchNorm pair becomes one convolution with
  ``w * s`` and ``(b - mean) * s + beta``, ``s = gamma / sqrt(var + eps)``;
- ``fold_anchor_slices``: each SSD anchor generator slices a constant anchor table to its feature
  map's size (``slice_like``, which reads the feature map for its shape only): the sliced table
  becomes the constant, so nothing computes, or dequantizes, a feature map just to learn its
  shape (the input size is fixed: an SSD300 takes 300x300);
- ``fold_channel_scales``: a per-channel constant multiply of an activation whose every reader
  is a convolution (L2Norm's learned ``scale`` in front of the conv4_3 heads) goes into those
  convolutions' weights, ``w[:, c] * s[c]``: exact, zero padding included (``0 * s = 0``), and
  int8 then quantizes the unscaled tensor per tensor while the per-channel scale rides in the
  per-output-channel weight scales. gluoncv's ``data * init_scale`` in front of conv1_1 stays:
  folded, it made oneDNN's int8 conv1_1 (reading the quantized network input itself) differ
  from the bias and scales it was given on one output channel in eight (some of that
  channel's values one int8 step off), so the simulator stopped matching the real int8 graph,
  for a speed gain below the timing noise.

Arrays are numpy in, MXNet out; the graph is edited as JSON (``model.graph``).
"""
import mxnet as mx
import numpy as np

from ssdq.errors import SsdqError
from ssdq.model.graph import Graph


def fold(symbol, arg_params, aux_params, data_shape):
    """All three folds; -> (symbol, args, auxs, what was folded)."""
    args = {k: v.asnumpy() for k, v in arg_params.items()}
    auxs = {k: v.asnumpy() for k, v in aux_params.items()}
    graph = Graph(symbol)
    graph, batchnorms = fold_batchnorm(graph, args, auxs)
    graph, anchors = fold_anchor_slices(graph, args, data_shape)
    graph, scales = fold_channel_scales(graph, args)
    used = {n["name"] for n in graph.nodes if n["op"] == "null"}
    return (graph.to_symbol(), {k: mx.nd.array(v) for k, v in args.items() if k in used},
            {k: mx.nd.array(v) for k, v in auxs.items() if k in used},
            {"batchnorm": batchnorms, "anchor_slices": anchors, "channel_scales": scales})


def fold_batchnorm(graph, args, auxs):
    """Fold every Convolution -> BatchNorm pair (``args``/``auxs`` updated in place); ->
    (graph, number folded)."""
    nodes = graph.nodes
    redirect, dropped, new_bias = {}, set(), {}
    for i in graph.ops("BatchNorm"):
        node = nodes[i]
        conv_id = graph.input(i)
        conv = nodes[conv_id]
        if conv["op"] != "Convolution" or graph.uses(conv_id) != 1:
            continue
        attrs = node.get("attrs", {})
        gamma_n, beta_n, mean_n, var_n = (nodes[j]["name"] for j, _, _ in node["inputs"][1:5])
        gamma = args[gamma_n]
        if attrs.get("fix_gamma", "True") == "True":
            gamma = np.ones_like(gamma)
        variance = auxs[var_n] + float(attrs.get("eps", 1e-3))
        if not (variance > 0).all():  # also catches NaN
            bad = variance[~(variance > 0)]
            raise SsdqError("BatchNorm %s has %d channel(s) with running_var + eps <= 0 or NaN "
                            "(first: %g): its statistics are corrupt, not weights to fold"
                            % (node["name"], bad.size, bad[0]))
        scale = gamma / np.sqrt(variance)
        weight_n = nodes[graph.input(conv_id, 1)]["name"]
        args[weight_n] = args[weight_n] * scale.reshape(-1, 1, 1, 1)
        conv_attrs = conv.setdefault("attrs", {})
        if conv_attrs.get("no_bias", "False") == "True":
            bias_n = conv["name"].rsplit("_fwd", 1)[0] + "_bias"
            new_bias[conv_id] = bias_n
            conv_attrs["no_bias"] = "False"
            bias = np.zeros_like(scale)
        else:
            bias_n = nodes[graph.input(conv_id, 2)]["name"]
            bias = args[bias_n]
        args[bias_n] = (bias - auxs[mean_n]) * scale + args[beta_n]
        redirect[i] = conv_id
        dropped.add(i)
        dropped.update(j for j, _, _ in node["inputs"][1:5] if graph.uses(j) == 1)
    return graph.compact(dropped, redirect, new_bias), len(redirect)


def fold_anchor_slices(graph, args, data_shape):
    """Each ``slice_like(constant anchors, feature map)`` becomes the sliced constant; ->
    (graph, number folded)."""
    internals = graph.to_symbol().get_internals()
    dropped, folded = set(), 0
    for i in graph.ops("slice_like"):
        table, shaper = graph.input(i, 0), graph.input(i, 1)
        name = graph.nodes[table]["name"]
        if graph.op(table) != "null" or name not in args or not graph.reads_shape_only(i, 1):
            continue
        _, (shape,), _ = internals[graph.nodes[i]["name"] + "_output"].infer_shape(
            data=tuple(data_shape))
        axes = [int(a) for a in graph.attrs(i).get("axes", "()").strip("()").split(",") if a]
        index = tuple(slice(0, shape[k]) if k in axes else slice(None)
                      for k in range(args[name].ndim))
        sliced = graph.nodes[i]["name"].rsplit("_slice_like", 1)[0] + "_anchor_table"
        args[sliced] = np.ascontiguousarray(args[name][index])
        graph.nodes[i] = {"op": "null", "name": sliced, "inputs": [], "attrs": {
            "__shape__": str(tuple(args[sliced].shape)), "__dtype__": "0"}}
        dropped |= _only_feeding(graph, shaper, i) | ({table} if graph.uses(table) == 1 else set())
        folded += 1
    return graph.compact(dropped), folded


def _only_feeding(graph, start, reader):
    """``start`` and the shape-reading chain above it, when ``reader`` is all that reads it."""
    chain, node = set(), start
    while graph.op(node) in ("_mul_scalar", "zeros_like") and graph.uses(node) == 1:
        chain.add(node)
        node = graph.input(node)
    return chain


def fold_channel_scales(graph, args):
    """Fold each ``broadcast_mul(x, s)``, ``s`` a (1, C, 1, 1) constant, whose every reader is
    an ungrouped convolution reading it as data, into those convolutions' weights; ->
    (graph, [{"multiply", "scale" (the parameter folded away), "into" (the convolutions)}])."""
    nodes = graph.nodes
    redirect, dropped, folded = {}, set(), []
    for i in graph.ops("broadcast_mul"):
        x, const = graph.input(i, 0), graph.input(i, 1)
        name = nodes[const]["name"]
        if nodes[const]["op"] != "null" or name not in args or graph.uses(const) != 1 \
                or graph.op(x) == "null":
            continue
        scale = args[name]
        readers = graph.readers[i]
        if scale.ndim != 4 or scale.shape[0] != 1 or scale.shape[2:] != (1, 1) or not readers \
                or any(graph.op(j) != "Convolution" or slot != 0
                       or int(graph.attrs(j).get("num_group", "1")) != 1
                       or any(src == const for src, _, _ in nodes[j]["inputs"])
                       for j, slot in readers):
            continue
        for j, _ in readers:
            weight = nodes[graph.input(j, 1)]["name"]
            args[weight] = args[weight] * scale.reshape(1, -1, 1, 1)
        redirect[i] = x
        dropped |= {i, const}
        folded.append({"multiply": nodes[i]["name"], "scale": name,
                       "into": [nodes[j]["name"] for j, _ in readers]})
    return graph.compact(dropped, redirect), folded
