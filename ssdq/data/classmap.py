"""Match a dataset's classes to a model's by name, not by position.

``match_classes(dataset, model_classes)`` is the one place this is decided, for any source of the
model's class list (a checkpoint's meta, a flag). A dataset class is matched to the model class of
the same name, after the dataset's ``class_map`` (``--class-map FILE``: JSON, dataset name ->
model name) renames it. A class the model lacks is ignored with a note if it has no annotations
(labelme's ``_background_``) and is an error otherwise; model classes the dataset lacks are not
scored (their detections are dropped before scoring).
"""
import difflib
import warnings
from dataclasses import dataclass

from ssdq.errors import SsdqError, SsdqNote
from ssdq.fileio import read_json


@dataclass(frozen=True)
class ClassMatch:
    """Dataset class index -> model class index, for the dataset classes scored."""

    dataset_classes: tuple
    model_classes: tuple
    dataset_to_model: dict
    ignored: tuple  # dataset class names left out: not model classes, no annotations

    @property
    def model_to_dataset(self):
        return {m: d for d, m in self.dataset_to_model.items()}

    @property
    def scored(self):
        """Names of the dataset classes scored, in the dataset's order."""
        return tuple(self.dataset_classes[d] for d in sorted(self.dataset_to_model))

    def describe(self):
        out = {"classes_scored": list(self.scored)}
        renamed = {self.dataset_classes[d]: self.model_classes[m]
                   for d, m in self.dataset_to_model.items()
                   if self.dataset_classes[d] != self.model_classes[m]}
        if renamed:
            out["classes_renamed"] = renamed
        if self.ignored:
            out["classes_ignored"] = list(self.ignored)
        unscored = [c for i, c in enumerate(self.model_classes) if i not in self.model_to_dataset]
        if unscored:
            out["model_classes_not_scored"] = len(unscored)
        return out


def load_class_map(path):
    """Read a ``--class-map`` JSON file: an object of dataset class name -> model class name."""
    mapping = read_json(path, "class map file")
    if not isinstance(mapping, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in mapping.items()):
        raise SsdqError('class map %s must be a JSON object of dataset class name -> model class '
                        'name, e.g. {"potted plant": "pottedplant"}' % path)
    return mapping


def match_classes(dataset, model_classes):
    """Return the ``ClassMatch`` of ``dataset`` onto ``model_classes`` (names, in model order)."""
    model_classes = tuple(model_classes)
    dataset_classes = tuple(dataset.classes)
    class_map = dict(getattr(dataset, "class_map", {}) or {})
    unknown = sorted(set(class_map) - set(dataset_classes))
    if unknown:
        raise SsdqError("--class-map renames %s, which is not a class of the dataset (%s)"
                        % (", ".join(repr(u) for u in unknown), _listing(dataset_classes)))
    counts = dataset.annotation_counts()
    model_index = {name: i for i, name in enumerate(model_classes)}
    dataset_to_model, ignored, missing, taken = {}, [], [], {}
    for d, name in enumerate(dataset_classes):
        target = class_map.get(name, name)
        if target in model_index:
            m = model_index[target]
            if m in taken:
                raise SsdqError("dataset classes %r and %r both map to the model's class %r; "
                                "each model class can stand for one dataset class"
                                % (taken[m], name, target))
            taken[m] = name
            dataset_to_model[d] = m
        elif counts.get(name, 0) == 0:
            ignored.append(name)
        else:
            missing.append((name, target))
    if not dataset_to_model:
        raise SsdqError("none of the dataset's classes (%s) is a class of the model (%s): the "
                        "wrong model, or map them with --class-map FILE"
                        % (_listing(dataset_classes), _listing(model_classes)))
    if missing:
        name, target = missing[0]
        renamed = " (renamed to %r by --class-map)" % target if target != name else ""
        others = " (and %d more: %s)" % (len(missing) - 1, ", ".join(
            repr(n) for n, _ in missing[1:4])) if len(missing) > 1 else ""
        guess = _closest(target, model_classes)
        raise SsdqError(
            "dataset class %r%s has %d annotations but is not a class of the model (%s)%s; "
            "map it with --class-map FILE, a JSON object such as {\"%s\": \"%s\"}"
            % (name, renamed, counts[name], _listing(model_classes), others, name,
               guess or "MODEL CLASS"))
    if ignored:
        warnings.warn("ignoring dataset class%s %s: no annotations and not a class of the model"
                      % ("es" if len(ignored) > 1 else "", ", ".join(repr(c) for c in ignored)),
                      SsdqNote)
    return ClassMatch(dataset_classes, model_classes, dataset_to_model, tuple(ignored))


def _closest(name, model_classes):
    """The model class ``name`` most likely means ('potted plant' -> 'pottedplant'), or None."""
    def key(text):
        return "".join(ch for ch in text.lower() if ch.isalnum())

    same = [m for m in model_classes if key(m) == key(name)]
    if same:
        return same[0]
    close = difflib.get_close_matches(key(name), [key(m) for m in model_classes], n=1, cutoff=0.8)
    return next((m for m in model_classes if close and key(m) == close[0]), None)


def _listing(names, limit=8):
    names = list(names)
    shown = ", ".join(names[:limit])
    return shown + (", ... %d in all" % len(names) if len(names) > limit else "")
