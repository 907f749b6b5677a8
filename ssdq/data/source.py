"""Where a command's images and ground truth come from: a dataset folder, or a COCO file anywhere.

``DataOptions`` holds what the data flags say (``--data-root``, ``--annotations``, ...);
``open(split)`` returns the dataset (``dataset.open_dataset``). The embedded synthetic set is
drawn first when the default root is asked for and nothing is there yet (a fresh clone), so every
command runs on the embedded default; a split missing from a set already there is drawn on its
own, and a split already there is used as it is, whatever its size (``ssdq data synthetic``).
"""
import dataclasses
import os

from ssdq.data.dataset import coco_annotation_path, open_dataset
from ssdq.data.synthetic import DEFAULT_ROOT, DEFAULT_SPLITS, ensure_synthetic
from ssdq.options import Options, option

FORMATS = ("auto", "coco", "voc")


@dataclasses.dataclass
class DataOptions(Options):
    data_root: str = option(DEFAULT_ROOT, "COCO- or VOC-format dataset folder (default: the "
                            "embedded synthetic set)")
    dataset_format: str = option("auto", "the layout of --data-root", choices=FORMATS)
    annotations: str = option(None, "a COCO instances file anywhere (labelme's annotations.json, "
                              "...): use it instead of --data-root/--split", metavar="FILE")
    images: str = option(None, "the folder the COCO file's file_name entries are relative to "
                         "(default: the file's folder)", metavar="DIR")
    class_map: str = option(None, "JSON object renaming dataset classes to the model's, e.g. "
                            "{\"potted plant\": \"pottedplant\"}", metavar="FILE")
    allow_size_mismatch: bool = option(False, "an image whose decoded size differs from its "
                                       "annotation's width/height is a warning (the decoded size "
                                       "is used), not an error", action="store_true")

    @property
    def custom(self):
        """Whether a COCO file (not a split of the root) is named."""
        return bool(self.annotations or self.images)

    def root(self, progress=False, split=None):
        """``data_root``; on the default root, the embedded set (or the one ``split`` asked
        for) is drawn first where it is missing."""
        if os.path.normpath(self.data_root) == os.path.normpath(DEFAULT_ROOT):
            wanted = DEFAULT_SPLITS if split is None or not os.path.exists(self.data_root) \
                else {split: DEFAULT_SPLITS[split]} if split in DEFAULT_SPLITS else {}
            missing = {s: n for s, n in wanted.items()
                       if not os.path.isfile(coco_annotation_path(self.data_root, s))}
            if missing:
                ensure_synthetic(self.data_root, missing, progress=progress)
        return self.data_root

    def open(self, split, progress=False, require_images=True):
        """The dataset these options name: ``split`` of the root, or the COCO file
        (``require_images=False``: its ground truth alone, image files not needed)."""
        root = self.data_root if self.annotations else self.root(progress, split)
        return open_dataset(root, split, self.dataset_format, annotations=self.annotations,
                            images=self.images, class_map=self.class_map,
                            allow_size_mismatch=self.allow_size_mismatch,
                            require_images=require_images)
