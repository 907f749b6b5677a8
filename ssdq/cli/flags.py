"""Every flag of the command line, defined once.

Flags that travel together are the fields of an options dataclass (``ssdq.options``; each folder
keeps its own in its ``options`` module, which imports nothing heavy), turned into
flags by ``add_options`` with the field's default and help; a command reads them back with
``OptionsClass.from_args(args)``. Single flags that several commands share (``--model-prefix``,
``--split``, ...) are defined once in ``FLAGS`` and added with ``add``. The groups:

- ``threads``: pinning (``host.cpus.pin_threads``), ``--quiet``, ``--gpus`` (refused: CPU only);
- ``data``: ``DataOptions`` (where the images and ground truth come from), ``--batch-size`` and
  ``--num-workers``;
- ``quantization``: ``CalibOptions``;
- ``checkpoints without a -meta.json``: ``--classes`` (and ``--params``);
- ``scale-out (Ray)``: ``ScaleoutOptions``.

Nothing here imports mxnet, numpy or cv2: building the parser must not load them (threads are
pinned first).
"""
import argparse
import dataclasses
import inspect
import sys

from ssdq.backends import BACKENDS
from ssdq.data.options import DEFAULT_BATCH_SIZE, DataOptions
from ssdq.host.cpus import pin_threads
from ssdq.host.mempolicy import MEMBIND_MODES
from ssdq.model.options import CONVERTED_PREFIX, QUANTIZED_PREFIX
from ssdq.quant.options import CalibOptions
from ssdq.scaleout.options import ScaleoutOptions

PIN_DEFAULTS = {name: p.default for name, p in inspect.signature(pin_threads).parameters.items()}

# single flags several commands share: name -> argparse settings (a command may override some)
FLAGS = {
    "--model-prefix": dict(default=CONVERTED_PREFIX, metavar="PREFIX",
                           help="the fp32 checkpoint (PREFIX-symbol.json, PREFIX-0000.params)"),
    "--int8-prefix": dict(default=QUANTIZED_PREFIX, metavar="PREFIX",
                          help="the int8 checkpoint"),
    "--split": dict(default="val", help="split of --data-root to score on"),
    "--eval-images": dict(type=int, default=None, help="score on the first N images of the "
                          "split (default: all)"),
    "--out-dir": dict(default="reports", help="where the report files go"),
    "--model-dir": dict(default="model", help="where checkpoints are written"),
    "--batch-size": dict(type=int, default=DEFAULT_BATCH_SIZE, help="images a batch"),
    "--num-workers": dict(type=int, default=1, help="image decoding threads"),
    "--classes": dict(metavar="coco|voc|FILE", help="class names of a plain MXNet checkpoint: "
                      "GluonCV's COCO or VOC list, or a file with one name per line"),
    "--params": dict(metavar="FILE", help="weights for a symbol-only graph (GluonCV's shipped "
                     "*_int8-symbol.json binds to its fp32 model's exported params)"),
    "--backends": dict(nargs="+", default=["mxnet"], choices=BACKENDS,
                       help="runtimes timed side by side"),
    "--quiet": dict(action="store_true", help="no progress bars"),
}


class HELP_FORMAT(argparse.ArgumentDefaultsHelpFormatter):  # pylint: disable=invalid-name
    """argparse's defaults in the help, except where the help already says its default."""

    def _get_help_string(self, action):
        if "(default" in (action.help or ""):
            return action.help
        return super()._get_help_string(action)


def add(parser, *names, **settings):
    """Add the shared single flags ``names``; ``settings`` override their definitions here (a
    command's own default or help: give one name then)."""
    for name in names:
        parser.add_argument(name, **{**FLAGS[name], **settings})


def add_options(parser, cls, title=None, only=None, skip=(), **defaults):
    """A flag for every field of the options dataclass ``cls`` (``only``/``skip``: a subset),
    its default the field's unless ``defaults`` gives this command's; -> the argument group."""
    group = parser.add_argument_group(title) if title else parser
    for field in dataclasses.fields(cls):
        if (only is not None and field.name not in only) or field.name in skip:
            continue
        settings = dict(field.metadata)
        flag = settings.pop("flag", "--" + field.name.replace("_", "-"))
        if field.name in defaults:
            default = defaults.pop(field.name)
        elif field.default is not dataclasses.MISSING:
            default = field.default
        else:
            default = field.default_factory()
        if isinstance(default, tuple):
            default = list(default)
        if settings.get("action") != "store_true":
            settings.setdefault("type", _element_type(field.type))
        group.add_argument(flag, dest=field.name, default=default, **settings)
    if defaults:
        raise ValueError("defaults for fields %s that %s lacks" % (", ".join(defaults), cls))
    return group


def _element_type(annotation):
    return str if annotation in (tuple, list, str) else annotation


def threads(parser):
    """Pinning, progress and the refused ``--gpus``: every command that runs a network."""
    g = parser.add_argument_group("threads")
    g.add_argument("--cores", help="CPU cores to pin to, e.g. 0-3,6 (default: one per physical "
                   "core of one NUMA node)")
    g.add_argument("--threads", type=int, help="OpenMP threads (default: one per pinned core)")
    g.add_argument("--numa-node", metavar="N|all",
                   help="pin to this NUMA node's physical cores, or all nodes' (default: the node "
                        "of --cores, else one node unless --threads needs more)")
    g.add_argument("--membind", default=PIN_DEFAULTS["membind"], choices=MEMBIND_MODES,
                   help="memory policy for the pinned nodes, via set_mempolicy")
    g.add_argument("--strict", action="store_true",
                   help="fail if the kernel refuses the memory policy (default: warn, go on)")
    g.add_argument("--gpus", default="", help="GPU ids; ssdq runs on CPU only, so leave empty")
    add(g, "--quiet")


def data(parser, only=None, skip=(), batch=True):
    """Where a command's images come from (``DataOptions``), and how they are batched."""
    g = add_options(parser, DataOptions, "data", only=only, skip=skip)
    if batch:
        add(g, "--batch-size", "--num-workers")


def quant(parser, skip=()):
    add_options(parser, CalibOptions, "quantization", skip=skip)


def checkpoint(parser, params=False):
    """For checkpoints ssdq did not write (no PREFIX-meta.json): see model/meta.py."""
    g = parser.add_argument_group("checkpoints without a -meta.json")
    add(g, "--classes", *(["--params"] if params else []))


def scaleout(parser):
    add_options(parser, ScaleoutOptions, "scale-out (Ray)")


def show_progress(args):
    """Progress bars only where someone watches: not with --quiet, not into a pipe or file."""
    return not getattr(args, "quiet", False) and sys.stderr.isatty()
