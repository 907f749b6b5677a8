"""What the command line needs of ``data/`` without loading it: ``DataOptions`` (where a
command's images and ground truth come from), the embedded set's defaults and the batch size.

``source.open_data(options, split)`` opens the dataset the options name.
"""
import dataclasses
import os

from ssdq.options import Options, option

DEFAULT_ROOT = os.path.join("data", "synthetic")
# dev: model selection, early stopping and fine-tuning checkpoints; val: the reported tables,
# which no training step looks at
DEFAULT_SPLITS = {"train": 2500, "dev": 500, "val": 500}
DEFAULT_SEED = 2024
# GluonCV's SSD eval script and the Intel recipe run batches of 64 images
DEFAULT_BATCH_SIZE = 64
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
