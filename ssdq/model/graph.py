"""A symbol's graph as data: its nodes, who reads each node, and walks through pass-through ops.

MXNet symbols serialise to JSON (``symbol.tojson()``): a list of nodes in topological order,
each with ``op``, ``name``, ``attrs`` and ``inputs`` (``[node index, output index, version]``),
and the graph's ``heads``. Everything ssdq reads or edits in a graph (BatchNorm folding, the
SSD tail, quantized layers, simulated rounding, low-rank splits, the ONNX Q/DQ placement) starts
from a ``Graph``; an edited graph becomes a symbol again with ``to_symbol``.
"""
import collections
import json
import re

import mxnet as mx

# Quantized convolutions as MXNet 1.9.1's oneDNN backend (``_sg_mkldnn_conv`` with
# ``quantized=true``) and MXNet 1.5's ``quantize_model`` (``_contrib_quantized_conv``) write them.
CONV_OPS = ("Convolution", "_sg_mkldnn_conv", "_contrib_quantized_conv")


class Graph:
    """The nodes of a symbol (or of its JSON dict), with their readers indexed."""

    def __init__(self, symbol):
        self.json = json.loads(symbol.tojson()) if hasattr(symbol, "tojson") else symbol
        self.nodes = self.json["nodes"]
        self.heads = self.json["heads"]
        self.readers = collections.defaultdict(list)  # node -> [(reader node, input slot)]
        self.output_readers = collections.defaultdict(list)  # (node, output) -> [reader node]
        for j, node in enumerate(self.nodes):
            for slot, (i, out, _) in enumerate(node["inputs"]):
                self.readers[i].append((j, slot))
                self.output_readers[(i, out)].append(j)
        self.index = {node["name"]: i for i, node in enumerate(self.nodes)}

    def __len__(self):
        return len(self.nodes)

    def node(self, name):
        return self.nodes[self.index[name]]

    def op(self, i):
        return self.nodes[i]["op"]

    def attrs(self, i):
        return self.nodes[i].get("attrs", {})

    def input(self, i, slot=0):
        """Index of the node feeding input ``slot`` of node ``i``."""
        return self.nodes[i]["inputs"][slot][0]

    def uses(self, i):
        """How many inputs (and graph heads) read node ``i``."""
        return len(self.readers[i]) + sum(1 for src, _, _ in self.heads if src == i)

    def ops(self, *names):
        """Indices of the nodes whose op is one of ``names``, in graph order."""
        return [i for i, node in enumerate(self.nodes) if node["op"] in names]

    def is_relu(self, i):
        return self.op(i) == "Activation" and self.attrs(i).get("act_type") == "relu"

    def producer(self, i, through=("Pooling",)):
        """The node whose values node ``i`` carries: ``i`` itself, or followed back through ops
        that keep their input's values in place (``through``: max-pooling) and ReLUs."""
        while self.op(i) in through or self.is_relu(i):
            i = self.input(i)
        return i

    def parameter_inputs(self, i):
        """Names of the parameter (``null``) nodes node ``i`` reads, in input order."""
        return [self.nodes[j]["name"] for j, _, _ in self.nodes[i]["inputs"]
                if self.nodes[j]["op"] == "null"]

    def reads_shape_only(self, j, slot):
        """Whether node ``j`` reads its input ``slot`` for its shape only (the SSD anchor
        generators: ``slice_like`` of the anchors to a feature map, through ``_mul_scalar``)."""
        op = self.op(j)
        if op == "slice_like" and slot == 1:
            return True
        if op in ("_mul_scalar", "zeros_like"):
            return all(self.reads_shape_only(k, s) for k, s in self.readers[j])
        return False

    def compact(self, dropped=(), redirect=None, new_params=None):
        """Rebuild the node list without the ``dropped`` nodes: inputs that pointed at a node
        of ``redirect`` ({index: index}) point at its target; ``new_params`` ({node index:
        name}) appends a new parameter input to that node. Returns a new ``Graph``."""
        redirect, new_params = redirect or {}, new_params or {}

        def target(i):
            while i in redirect:
                i = redirect[i]
            return i

        nodes, index = [], {}
        for i, node in enumerate(self.nodes):
            if i in dropped:
                continue
            node = dict(node, inputs=[[index[target(src)], out, version]
                                      for src, out, version in node["inputs"]])
            if i in new_params:
                nodes.append({"op": "null", "name": new_params[i], "inputs": []})
                node["inputs"].append([len(nodes) - 1, 0, 0])
            index[i] = len(nodes)
            nodes.append(node)
        return Graph(dict(self.json, nodes=nodes,
                          heads=[[index[target(src)], out, version]
                                 for src, out, version in self.heads]))

    def histogram(self):
        """{op: number of nodes}."""
        return dict(collections.Counter(node["op"] for node in self.nodes))

    def to_symbol(self):
        """The (possibly edited) graph as an MXNet symbol; ``arg_nodes`` recomputed."""
        nodes = self.json["nodes"]  # an edit may have replaced the list
        self.json["arg_nodes"] = [i for i, n in enumerate(nodes) if n["op"] == "null"]
        self.json.pop("node_row_ptr", None)
        return mx.sym.load_json(json.dumps(self.json))


def short_name(node_name):
    """A layer's name without the blocks' prefixes: ssd0_thinvggatrousextractor0_conv4_fwd ->
    conv4; ssd0_convpredictor2_conv0_fwd -> convpredictor2."""
    name = re.sub(r"^ssd\d+_", "", node_name)
    name = re.sub(r"^\w*?extractor\d+_", "", name)
    name = re.sub(r"_fwd$", "", name)
    return re.sub(r"^(convpredictor\d+)_conv0$", r"\1", name)


def quantized_conv_nodes(symbol):
    """Names of the convolution nodes that run in int8 in a (fused) symbol: ssdq's and MXNet
    1.5's (GluonCV's shipped int8 SSDs: ``_sg_mkldnn_conv`` with ``quantized=true`` and the
    calibration ranges as attributes)."""
    graph = Graph(symbol)
    found = []
    for i, node in enumerate(graph.nodes):
        quantized = graph.attrs(i).get("quantized", "").lower() == "true"
        if (node["op"] == "_sg_mkldnn_conv" and quantized) or node["op"] == "_contrib_quantized_conv":
            found.append(node["name"])
    return found


def conv_count(symbol):
    """Convolutions of a graph, fused or quantized ones counted once each."""
    return len(Graph(symbol).ops(*CONV_OPS))


def deployed_weights_mb(symbol, arg_params, skip=()):
    """Weight bytes as oneDNN runs the graph: int8 convolution weights at 1 byte, the rest at 4;
    parameters whose name holds one of ``skip`` (``"anchor"``: the anchor tables, a cache the
    graph could recompute) not counted."""
    graph = Graph(symbol)
    int8_weights = set()
    for i in graph.ops("_sg_mkldnn_conv", "_contrib_quantized_conv"):
        if graph.attrs(i).get("quantized", "true").lower() == "true":
            int8_weights.update(n for n in graph.parameter_inputs(i) if n.endswith("weight"))
    total = sum(v.size * (1 if k in int8_weights else 4) for k, v in arg_params.items()
                if not any(s in k for s in skip))
    return total / 2 ** 20
