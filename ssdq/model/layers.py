"""Which convolutions (and fully connected layers) a checkpoint has, and how to choose among them.

Everything is read from the symbol's JSON: each layer's weight and bias parameter names, the
tensor feeding it, whether a ReLU follows it, and its group: ``conv`` (every convolution not
treated as FC), ``fc`` (FullyConnected layers, plus convolutions named by ``fc_layers``: gluoncv's
SSD-VGG16-atrous has no FC layer, its fc6/fc7 are the dilated convolutions), ``heads`` (the
class/box predictors), ``first`` and ``last`` (in graph order).
"""
import re
from dataclasses import dataclass

from ssdq.errors import SsdqError
from ssdq.model.graph import Graph, short_name

LAYER_OPS = ("Convolution", "FullyConnected")
GROUPS = ("all", "conv", "fc", "heads", "first", "last")
# Ristretto's FC layers of VGG16, as they are named in gluoncv's atrous extractor.
FC_ALIASES = {"fc6": "dilated_conv0", "fc7": "dilated_conv1"}


@dataclass(frozen=True)
class Layer:
    name: str          # the Convolution/FullyConnected node
    op: str
    weight: str
    bias: str          # "" without bias
    data: str          # the node feeding it
    relu: str          # the Activation(relu) right after it, "" if none
    is_fc: bool
    is_head: bool

    @property
    def short(self):
        return short_name(self.name)


def list_layers(symbol, fc_layers=()):
    """Every Convolution/FullyConnected of ``symbol`` in graph order, as ``Layer`` records."""
    graph = Graph(symbol)
    nodes = graph.nodes
    wanted_fc = [FC_ALIASES.get(f, f) for f in fc_layers]
    layers = []
    for i, node in enumerate(nodes):
        if node["op"] not in LAYER_OPS:
            continue
        inputs = [nodes[j]["name"] for j, _, _ in node["inputs"]]
        relu = ""
        after = graph.readers[i]
        if len(after) == 1 and graph.is_relu(after[0][0]):
            relu = nodes[after[0][0]]["name"]
        short = short_name(node["name"])
        is_fc = node["op"] == "FullyConnected" or any(f == short or f == node["name"]
                                                     for f in wanted_fc)
        layers.append(Layer(node["name"], node["op"], inputs[1],
                            inputs[2] if len(inputs) > 2 else "", inputs[0], relu, is_fc,
                            "predictor" in node["name"]))
    unknown = [f for f in wanted_fc if not any(f in (l.short, l.name) for l in layers)]
    if unknown:
        raise SsdqError("--fc-layers: no layer named %s (known: %s)" % (
            ", ".join(unknown), ", ".join(l.short for l in layers)))
    return layers


def select_layers(layers, selection=("all",)):
    """Layers chosen by group (all, conv, fc, heads, first, last), exact name, short name or
    regular expression; unknown selectors are an error."""
    chosen = []
    for sel in selection:
        if sel == "all":
            found = layers
        elif sel == "conv":
            found = [l for l in layers if not l.is_fc]
        elif sel == "fc":
            found = [l for l in layers if l.is_fc]
        elif sel == "heads":
            found = [l for l in layers if l.is_head]
        elif sel == "first":
            found = layers[:1]
        elif sel == "last":
            found = layers[-1:]
        else:
            found = [l for l in layers if sel in (l.name, l.short)]
            if not found:
                try:
                    pattern = re.compile(sel)
                except re.error:
                    pattern = None
                found = [l for l in layers
                         if pattern and (pattern.search(l.name) or pattern.search(l.short))]
            if not found:
                raise SsdqError("no layer matches %r (groups: %s; or a name/regex)"
                                % (sel, ", ".join(GROUPS)))
        chosen.extend(l for l in found if l not in chosen)
    order = {l.name: i for i, l in enumerate(layers)}
    return sorted(chosen, key=lambda l: order[l.name])
