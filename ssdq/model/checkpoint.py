"""Symbolic checkpoints: ``PREFIX-symbol.json`` + ``PREFIX-0000.params`` + ``PREFIX-meta.json``.

Every stage hands the next one a checkpoint prefix. The meta file records what the graph cannot
say about itself: classes, input shape and normalisation (kept outside the graph), the NMS
settings baked into it, precision, and for int8 how it was calibrated. ``save_checkpoint`` writes
all three files under temporary names and renames them, meta last, so a prefix with a meta file
is always complete; it holds ``PREFIX.lock`` while it writes, so two runs writing one prefix at
once get a one-line error instead of a symbol from one beside params from the other, and the meta
records the sha256 of the symbol and params it was written with, so a prefix torn some other way
(a copy interrupted, one file replaced) is a one-line error when loaded.

A prefix without a meta file (``net.export``, ``export_block``, the recipe's files, GluonCV's
shipped int8 symbols with ``params_file``) loads too: ``model.meta.infer_meta`` reads the
meta from the graph, the class names come from ``classes`` (``coco``, ``voc`` or a file), and the
checkpoint says so (``meta_inferred``) wherever it is used. Nothing is written beside it.
"""
import collections
import contextlib
import errno
import fcntl
import hashlib
import importlib.util
import os
from dataclasses import dataclass, field

import mxnet as mx

from ssdq.data.transforms import InputFormat
from ssdq.errors import SsdqError, first_line
from ssdq.fileio import atomic_path, read_json, write_json
from ssdq.model.meta import class_list, infer_meta
from ssdq.model.options import MODEL_DIR

EPOCH = 0


def checkpoint_files(prefix):
    return {"symbol": "%s-symbol.json" % prefix, "params": "%s-%04d.params" % (prefix, EPOCH),
            "meta": "%s-meta.json" % prefix}


def resolve_prefix(prefix):
    """Accept the recipe's bare ``converted``/``quantized`` as ``model/converted`` etc., a
    ``...-symbol.json`` path as its prefix, and the bare name of a graph GluonCV ships
    (``ssd_300_vgg16_atrous_voc_int8``) as the file in its installed package."""
    if prefix.endswith("-symbol.json"):
        prefix = prefix[:-len("-symbol.json")]
    if os.path.exists(checkpoint_files(prefix)["symbol"]):
        return prefix
    if os.sep not in prefix:
        for folder in (MODEL_DIR, gluoncv_shipped_dir()):
            candidate = os.path.join(folder, prefix) if folder else None
            if candidate and os.path.exists(checkpoint_files(candidate)["symbol"]):
                return candidate
    return prefix


def gluoncv_shipped_dir():
    """gluoncv/model_zoo/quantized of the installed gluoncv (its int8 symbols), without
    importing gluoncv; None if it is not installed."""
    spec = importlib.util.find_spec("gluoncv")
    if spec is None or not spec.submodule_search_locations:
        return None
    return os.path.join(list(spec.submodule_search_locations)[0], "model_zoo", "quantized")


@dataclass
class Checkpoint:
    prefix: str
    symbol: object  # mx.sym.Symbol
    arg_params: dict
    aux_params: dict
    meta: dict = field(default_factory=dict)
    inferred: bool = False  # meta read from the graph (no meta file)
    params_file: str = None  # weights bound from another file than PREFIX-0000.params

    @property
    def classes(self):
        return tuple(self.meta.get("classes", ()))

    @property
    def precision(self):
        return self.meta.get("precision", "fp32")

    @property
    def input_format(self):
        return InputFormat(self.meta.get("input"))

    def require_fp32(self, action):
        """This checkpoint if it is fp32, else a one-line error saying what needs fp32
        (``action``: "quantize" gives "... is int8; quantize an fp32 checkpoint")."""
        if self.precision != "fp32":
            raise SsdqError("%s is %s; %s an fp32 checkpoint" % (self.prefix, self.precision,
                                                                  action))
        return self

    def require_classes(self):
        """The class names, or a one-line error saying how to give them."""
        if not self.classes:
            raise SsdqError("checkpoint %s has no -meta.json, so its class names are unknown: "
                            "pass --classes coco|voc|FILE (one name per line)" % self.prefix)
        return self.classes

    @property
    def meta_inferred(self):
        """The meta read from the graph when the checkpoint has no meta file, else None: every
        result made from such a checkpoint records it."""
        return self.meta if self.inferred else None


def load_checkpoint(prefix, classes=None, params_file=None):
    """Load ``prefix`` (or return it if it is already a ``Checkpoint``).

    ``classes``: ``coco``, ``voc`` or a file of names, for a checkpoint without a meta file.
    ``params_file``: weights to bind instead of ``PREFIX-0000.params`` (GluonCV's shipped int8
    symbols come without any; they bind to the fp32 checkpoint's)."""
    if isinstance(prefix, Checkpoint):
        return prefix
    prefix = resolve_prefix(prefix)
    files = checkpoint_files(prefix)
    if params_file is not None:
        files["params"] = params_file
    required = [p for key, p in files.items() if key != "meta"]
    missing = [p for p in required if not os.path.isfile(p)]
    if missing:
        hint = ("pass the weights it binds to with --params FILE"
                if missing == [files["params"]] and params_file is None
                else "run `ssdq convert` or `ssdq quantize` first")
        state = "not found" if missing == required else "incomplete"
        raise SsdqError("checkpoint %s is %s: missing %s (%s)"
                        % (prefix, state, ", ".join(missing), hint))
    try:
        symbol = mx.sym.load(files["symbol"])
    except (mx.base.MXNetError, ValueError) as exc:
        raise SsdqError("cannot read %s: %s" % (files["symbol"], first_line(exc, 200))) from None
    try:
        saved = mx.nd.load(files["params"])
    except mx.base.MXNetError as exc:
        raise SsdqError("cannot read %s: %s" % (files["params"], first_line(exc, 200))) from None
    if not isinstance(saved, dict):
        raise SsdqError("%s holds no named weights" % files["params"])
    arg_params = {k[4:]: v for k, v in saved.items() if k.startswith("arg:")}
    aux_params = {k[4:]: v for k, v in saved.items() if k.startswith("aux:")}
    if not arg_params and not aux_params:  # Gluon's save_parameters: no arg:/aux: prefixes
        raise SsdqError("%s is a Gluon parameter file (save_parameters), not an exported "
                        "checkpoint's: export the network (net.export) and pass that file"
                        % files["params"])
    has_meta = os.path.isfile(files["meta"])
    if params_file is not None or not has_meta:
        arg_params, aux_params = bind_names(symbol, arg_params, aux_params, files["params"])
    if has_meta:
        meta = read_json(files["meta"], "checkpoint meta")
        if params_file is None:
            _check_hashes(prefix, files, meta)
        if classes is not None and tuple(meta.get("classes", ())) != _class_names(classes):
            raise SsdqError("--classes %s differs from the classes in %s; drop --classes"
                            % (classes, files["meta"]))
        ckpt = Checkpoint(prefix, symbol, arg_params, aux_params, meta)
    else:

        names = _class_names(classes) if classes is not None else None
        meta = infer_meta(symbol, arg_params, names, classes)
        ckpt = Checkpoint(prefix, symbol, arg_params, aux_params, meta, inferred=True)
    ckpt.params_file = params_file
    return ckpt


def _class_names(spec):
    return class_list(spec) if isinstance(spec, str) else tuple(spec)


def bind_names(symbol, arg_params, aux_params, params_path):
    """Match a graph's weights with a params file it did not come with.

    Gluon names every weight after the block's instance (``ssd0_``, ``ssd3_``...), so weights
    exported from another process may differ from the graph's by that first name part only;
    those are renamed. Weights the graph needs and the file lacks are a one-line error."""
    wanted_args = [n for n in symbol.list_arguments() if n != "data"]
    wanted_aux = list(symbol.list_auxiliary_states())
    lacking = [n for n in wanted_args if n not in arg_params] + \
        [n for n in wanted_aux if n not in aux_params]
    if not lacking:
        return arg_params, aux_params
    graph_prefix = _block_prefix(wanted_args + wanted_aux)
    file_prefix = _block_prefix(list(arg_params) + list(aux_params))
    if graph_prefix and file_prefix and graph_prefix != file_prefix:
        def rename(params):
            return {(graph_prefix + k[len(file_prefix):] if k.startswith(file_prefix) else k): v
                    for k, v in params.items()}

        arg_params, aux_params = rename(arg_params), rename(aux_params)
        lacking = [n for n in wanted_args if n not in arg_params] + \
            [n for n in wanted_aux if n not in aux_params]
    if lacking:
        raise SsdqError("%s lacks %d of the %d weights the graph needs (e.g. %s): is it the "
                        "checkpoint this graph was made from?" % (
                            params_path, len(lacking), len(wanted_args) + len(wanted_aux),
                            lacking[0]))
    return arg_params, aux_params


def _block_prefix(names):
    """The first name part most weights share (``ssd0_``), or None."""
    heads = collections.Counter(n.split("_", 1)[0] + "_" for n in names if "_" in n)
    if not heads:
        return None
    head, count = heads.most_common(1)[0]
    return head if count > len(names) / 2 else None


_held = {}  # prefix -> (lock file, depth): this process's write locks (re-entrant)


@contextlib.contextmanager
def writing(prefix):
    """Hold ``PREFIX.lock`` for the block: the one writer of ``prefix``. Another process holding
    it is a one-line error; the same process may nest (quantize writes the ranges file, then the
    checkpoint)."""
    key = os.path.abspath(prefix)
    if key in _held:
        handle, depth = _held[key]
        _held[key] = (handle, depth + 1)
    else:
        os.makedirs(os.path.dirname(key) or ".", exist_ok=True)
        handle = open(key + ".lock", "a+")
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            handle.close()
            if exc.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            raise SsdqError("another run is writing checkpoint %s (it holds %s.lock): wait for it "
                            "to finish, or write to another prefix" % (prefix, prefix)) from None
        _held[key] = (handle, 1)
    try:
        yield
    finally:
        handle, depth = _held[key]
        if depth > 1:
            _held[key] = (handle, depth - 1)
        else:
            del _held[key]
            fcntl.flock(handle, fcntl.LOCK_UN)
            handle.close()
            with contextlib.suppress(OSError):
                os.unlink(key + ".lock")


def save_checkpoint(prefix, symbol, arg_params, aux_params, meta):
    """Write the three files of ``prefix`` (meta last, with the others' sha256) under its lock."""
    files = checkpoint_files(prefix)
    with writing(prefix):
        # an old meta stays until the new one lands: if this run is killed halfway, its hashes
        # no longer match, and the prefix loads as torn, not as a plain checkpoint
        saved = {"arg:%s" % k: v for k, v in arg_params.items()}
        saved.update({"aux:%s" % k: v for k, v in aux_params.items()})
        with atomic_path(files["params"]) as tmp:
            mx.nd.save(tmp, saved)
        with atomic_path(files["symbol"]) as tmp:
            symbol.save(tmp)
        meta = dict(meta, files={k: os.path.basename(v) for k, v in files.items()},
                    sha256={k: sha256(files[k]) for k in ("symbol", "params")},
                    size_mb=round(checkpoint_size_mb(prefix), 3))
        write_json(files["meta"], meta)
    return prefix


def sha256(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_hashes(prefix, files, meta):
    """A one-line error if the symbol or params are not the files the meta was written with
    (checkpoints written before ssdq recorded hashes carry none: nothing to check)."""
    torn = [key for key, digest in (meta.get("sha256") or {}).items()
            if key in ("symbol", "params") and sha256(files[key]) != digest]
    if torn:
        raise SsdqError("checkpoint %s is torn: its %s %s not the file%s its -meta.json was "
                        "written with (two runs wrote it, or a copy was interrupted); write it "
                        "again" % (prefix, " and ".join(os.path.basename(files[k]) for k in torn),
                                   "are" if len(torn) > 1 else "is",
                                   "s" if len(torn) > 1 else ""))


def checkpoint_size_mb(prefix, params_file=None):
    files = checkpoint_files(prefix)
    files["params"] = params_file or files["params"]
    return sum(os.path.getsize(files[k]) for k in ("symbol", "params")) / 2 ** 20
