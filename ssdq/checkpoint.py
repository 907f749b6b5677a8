"""Symbolic checkpoints: ``PREFIX-symbol.json`` + ``PREFIX-0000.params`` + ``PREFIX-meta.json``.

Every stage hands the next one a checkpoint prefix. The meta file records what the graph cannot
say about itself: classes, input shape and normalisation (kept outside the graph), the NMS
settings baked into it, precision, and for int8 how it was calibrated. ``save_checkpoint`` writes
all three files under temporary names and renames them, meta last, so a prefix with a meta file
is always complete.
"""
import json
import os
from dataclasses import dataclass, field

from .errors import SsdqError
from .fileio import atomic_path, write_json

EPOCH = 0
MODEL_DIR = "model"


def checkpoint_files(prefix):
    return {"symbol": "%s-symbol.json" % prefix, "params": "%s-%04d.params" % (prefix, EPOCH),
            "meta": "%s-meta.json" % prefix}


def resolve_prefix(prefix):
    """Accept the recipe's bare ``converted``/``quantized`` as ``model/converted`` etc."""
    if os.path.exists(checkpoint_files(prefix)["symbol"]):
        return prefix
    if os.sep not in prefix:
        in_model_dir = os.path.join(MODEL_DIR, prefix)
        if os.path.exists(checkpoint_files(in_model_dir)["symbol"]):
            return in_model_dir
    return prefix


@dataclass
class Checkpoint:
    prefix: str
    symbol: object  # mx.sym.Symbol
    arg_params: dict
    aux_params: dict
    meta: dict = field(default_factory=dict)

    @property
    def classes(self):
        return tuple(self.meta.get("classes", ()))

    @property
    def precision(self):
        return self.meta.get("precision", "fp32")


def load_checkpoint(prefix):
    import mxnet as mx

    prefix = resolve_prefix(prefix)
    files = checkpoint_files(prefix)
    missing = [p for key, p in files.items() if key != "meta" and not os.path.isfile(p)]
    if missing:
        raise SsdqError("checkpoint %s is incomplete: missing %s (run `ssdq convert` or "
                        "`ssdq quantize` first)" % (prefix, ", ".join(missing)))
    try:
        symbol = mx.sym.load(files["symbol"])
    except (mx.base.MXNetError, ValueError) as exc:
        raise SsdqError("cannot read %s: %s" % (files["symbol"], _first_line(exc))) from None
    try:
        saved = mx.nd.load(files["params"])
    except mx.base.MXNetError as exc:
        raise SsdqError("cannot read %s: %s" % (files["params"], _first_line(exc))) from None
    arg_params = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux_params = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    meta = {}
    if os.path.isfile(files["meta"]):
        try:
            with open(files["meta"]) as f:
                meta = json.load(f)
        except ValueError as exc:
            raise SsdqError("cannot read %s: %s" % (files["meta"], exc)) from None
    else:
        raise SsdqError("checkpoint %s has no %s (classes, input and NMS settings); "
                        "re-create it with `ssdq convert`" % (prefix, files["meta"]))
    return Checkpoint(prefix, symbol, arg_params, aux_params, meta)


def save_checkpoint(prefix, symbol, arg_params, aux_params, meta):
    import mxnet as mx

    files = checkpoint_files(prefix)
    if os.path.exists(files["meta"]):
        os.unlink(files["meta"])  # the prefix is incomplete until the new meta lands
    saved = {"arg:%s" % k: v for k, v in arg_params.items()}
    saved.update({"aux:%s" % k: v for k, v in aux_params.items()})
    with atomic_path(files["params"]) as tmp:
        mx.nd.save(tmp, saved)
    with atomic_path(files["symbol"]) as tmp:
        symbol.save(tmp)
    meta = dict(meta, files={k: os.path.basename(v) for k, v in files.items()},
                size_mb=round(checkpoint_size_mb(prefix), 3))
    write_json(files["meta"], meta)
    return prefix


def checkpoint_size_mb(prefix):
    files = checkpoint_files(prefix)
    return sum(os.path.getsize(files[k]) for k in ("symbol", "params")) / 2 ** 20


def _first_line(exc):
    text = str(exc).strip()
    for line in text.splitlines():
        if line.strip() and not line.startswith(("Traceback", "  File", "[bt]", "Stack")):
            return line.strip()[:200]
    return type(exc).__name__
