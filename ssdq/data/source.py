"""Where a command's images and ground truth come from: a dataset folder, or a COCO file anywhere.

``DataOptions`` (``data.options``) holds what the data flags say (``--data-root``,
``--annotations``, ...); ``open_data(options, split)`` returns the dataset
(``dataset.open_dataset``). The embedded synthetic set is drawn first when the default root is
asked for and nothing is there yet (a fresh clone), so every command runs on the embedded
default; a split missing from a set already there is drawn on its own, and a split already there
is used as it is, whatever its size (``ssdq data synthetic``).
"""
import os

from ssdq.data.dataset import coco_annotation_path, open_dataset
from ssdq.data.options import DEFAULT_ROOT, DEFAULT_SPLITS
from ssdq.data.synthetic import ensure_synthetic


def data_root(options, progress=False, split=None):
    """``options.data_root``; on the default root, the embedded set (or the one ``split`` asked
    for) is drawn first where it is missing."""
    root = options.data_root
    if os.path.normpath(root) == os.path.normpath(DEFAULT_ROOT):
        wanted = DEFAULT_SPLITS if split is None or not os.path.exists(root) \
            else {split: DEFAULT_SPLITS[split]} if split in DEFAULT_SPLITS else {}
        missing = {s: n for s, n in wanted.items()
                   if not os.path.isfile(coco_annotation_path(root, s))}
        if missing:
            ensure_synthetic(root, missing, progress=progress)
    return root


def open_data(options, split, progress=False, require_images=True):
    """The dataset ``options`` (``DataOptions``) name: ``split`` of the root, or the COCO file
    (``require_images=False``: its ground truth alone, image files not needed)."""
    root = options.data_root if options.annotations else data_root(options, progress, split)
    return open_dataset(root, split, options.dataset_format, annotations=options.annotations,
                        images=options.images, class_map=options.class_map,
                        allow_size_mismatch=options.allow_size_mismatch,
                        require_images=require_images)
