"""What the command line needs of ``compress/formats/`` without loading MXNet: the options of
the format studies (``BitwidthOptions``, ``Pow2Options``, ``ClipOptions``, on ``StudyOptions``)
and of a fine-tuning with a number format in the loop (``FinetuneOptions``)."""
import dataclasses

from ssdq.model.options import CONVERTED_PREFIX
from ssdq.options import Options, at_least, option
from ssdq.train.options import FINETUNE_BATCH_SIZE, FINETUNE_LR, SELECTION_SPLIT


@dataclasses.dataclass
class StudyOptions(Options):
    """What every format study takes: the checkpoint, the images scored, where results go, and
    the fine-tuning of the format that fails."""

    model_prefix: str = option(CONVERTED_PREFIX, "the fp32 checkpoint studied")
    split: str = option("val", "split to score on")
    eval_images: int = option(None, "score on the first N images (default: all)")
    out_dir: str = option("reports", "where study-KIND.{json,md,png} go")
    fc_layers: tuple = option((), "convolutions to treat as FC (fc6 fc7)", nargs="*")
    train_images: int = option(None, "fine-tuning: first N train images")
    model_dir: str = option("model", "where fine-tuned checkpoints are cached")
    finetune_epochs: int = option(0, "fine-tune the failing format this many epochs")
    select_split: str = option(SELECTION_SPLIT, "fine-tuning: split whose mAP picks the kept "
                               "epoch ('none': the last)")

    def check(self):
        at_least(self, "eval_images", "train_images")
        at_least(self, "finetune_epochs", minimum=0)


@dataclasses.dataclass
class BitwidthOptions(StudyOptions):
    error_margin: float = option(2.0, "points of mAP a width may cost to pass")
    bits: tuple = option((16, 8, 4, 2, 1), "widths to sweep", nargs="+", type=int)


@dataclasses.dataclass
class Pow2Options(StudyOptions):
    formats: tuple = option(("pow2:-15:0", "pow2:-10:5", "pow2:-8:0"), "power-of-two weight "
                            "formats (exponent ranges) to compare", nargs="+")
    activation_format: str = option("dfp:8", "activation rounding of the rows with it")
    finetune_format: str = option("pow2:-10:5", "the format fine-tuned")
    finetune_epochs: int = option(3, "fine-tune --finetune-format this many epochs")


@dataclasses.dataclass
class ClipOptions(StudyOptions):
    lq_lambda: float = option(1e-3, "the Lq term of the fine-tuned row with it")
    error_margin: float = option(0.5, "points of mAP a clip may cost to be chosen")
    finetune_epochs: int = option(1, "fine-tune int8 in the chosen clips this many epochs")


@dataclasses.dataclass
class FinetuneOptions(Options):
    """The schedule of a fine-tuning with a number format in the loop."""

    epochs: int = option(1, "epochs on the train split")
    lq_lambda: float = option(0.0, "weight of lambda*sum((w-C(w))^2), the clipping paper's Lq")
    train_images: int = option(None, "first N train images (default: all)")
    lr: float = option(FINETUNE_LR, "Adam's peak learning rate (cosine decay)")
    seed: int = option(0, "seed of the data order and augmentation")
    layers: tuple = option(("all",), "groups (all conv fc heads first last), names or regexes",
                           nargs="+")
    fc_layers: tuple = option((), "convolutions to treat as FC (fc6 fc7)", nargs="*")
    train_batch_size: int = option(FINETUNE_BATCH_SIZE, "training batch size")
    select_split: str = option(SELECTION_SPLIT, "split whose mAP picks the kept epoch ('none': "
                               "keep the last epoch)")
    activation_clip: int = option(None, "clip every convolution's output to [-2^J, 2^J] in the "
                                  "forward pass, as the clipping paper trains (default: no "
                                  "clip)", metavar="J")

    def selects(self):
        """Whether an epoch is chosen on a selection split (else the last is kept)."""
        return self.select_split not in (None, "none")
