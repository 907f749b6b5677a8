"""What the command line needs of ``quant/`` without loading MXNet: how a checkpoint is
calibrated (``CalibOptions``), what quantization-aware training trains (``QatOptions``), the
tuner's budget (``TuneOptions``), and the names their flags choose from."""
import dataclasses

from ssdq.model.weights import REFERENCE_WEIGHTS
from ssdq.options import Options, at_least, option
from ssdq.train.options import FINETUNE_BATCH_SIZE, FINETUNE_LR, SELECTION_SPLIT

CALIB_MODES = ("naive", "entropy", "percentile", "mse")
DEFAULT_EXCLUDE_MATCH = ("flatten", "concat")
PRESETS = ("first-last",)


@dataclasses.dataclass
class CalibOptions(Options):
    """How an fp32 checkpoint is calibrated: on which images, and how ranges are chosen."""

    calib_mode: str = option("naive", "how each layer's range is chosen from the statistics",
                             choices=CALIB_MODES)
    num_calib_batches: int = option(5, "calibration batches of --batch-size images")
    calib_split: str = option("train", "split to calibrate on (not the eval split)")
    calib_annotations: str = option(None, "calibrate on this COCO file's images (default: "
                                    "--annotations' if given)", metavar="FILE")
    calib_images: str = option(None, "the folder of --calib-annotations' images", metavar="DIR")
    percentile: float = option(99.99, "for --calib-mode percentile: the percentile of |x| kept")
    exclude_match: tuple = option(DEFAULT_EXCLUDE_MATCH, "leave in fp32 every layer whose name "
                                  "contains one of these", nargs="*")

    def describe(self, calib_set, batch_size):
        """What a checkpoint's meta and a report record of the calibration."""
        out = {"mode": self.calib_mode, "batches": self.num_calib_batches,
               "batch_size": batch_size, "images": len(calib_set),
               "dataset": calib_set.describe()}
        if self.calib_mode == "percentile":
            out["percentile"] = self.percentile
        return out


@dataclasses.dataclass
class QatOptions(Options):
    """What ``ssdq qat`` trains, for how long, and which layers stay fp32."""

    params: str = option(REFERENCE_WEIGHTS, "BatchNorm weights to train: a file of the reference "
                         "model's (default: the shipped ones) or the prefix of a checkpoint "
                         "ssdq prune or ssdq qat wrote", metavar="FILE|PREFIX")
    epochs: int = option(2, "epochs on the train split")
    lr: float = option(FINETUNE_LR, "Adam's peak learning rate (cosine decay), for the weights "
                       "and the ranges")
    seed: int = option(0, "seed of the data order and augmentation")
    train_images: int = option(None, "first N train images (default: all)")
    train_batch_size: int = option(FINETUNE_BATCH_SIZE, "training batch size")
    first_last_fp32: bool = option(False, "keep the first convolution and the prediction heads "
                                   "in fp32 (the pruning study's rule)", action="store_true")
    select_split: str = option(SELECTION_SPLIT, "split whose (fake-quantized) mAP picks the kept "
                               "epoch ('none': the last)")

    def check(self):
        at_least(self, "epochs", minimum=0)
        at_least(self, "train_images", "train_batch_size")


@dataclasses.dataclass
class TuneOptions(Options):
    max_relative_drop: float = option(0.5, "budget: int8 mAP within this many percent "
                                      "(relative) of fp32")
    max_trials: int = option(40, "stop after this many trials with the best found")
    time_limit: float = option(1800, "stop after this many seconds with the best found")
