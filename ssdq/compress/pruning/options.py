"""What the command line needs of ``compress/pruning/`` without loading MXNet: how ``ssdq prune``
thins the reference model (``PruneOptions``), the rows of ``ssdq study prune``
(``PruneStudyOptions``), the names their flags choose from, and the check of pruning settings
that runs before any data or weights are read."""
import dataclasses
import os

from ssdq.errors import SsdqError
from ssdq.model.weights import REFERENCE_WEIGHTS, SPARSE_WEIGHTS
from ssdq.options import Options, at_least, option
from ssdq.quant.options import QatOptions
from ssdq.train.options import FINETUNE_LR, SELECTION_SPLIT

MODES = ("normal", "regular", "max", "regular-max")
# gamma: network slimming's |gamma|; gamma-per-param: |gamma| per deployed parameter a channel
# costs, the greedy answer to "keep the most gamma within a parameter budget"
CRITERIA = ("gamma", "gamma-per-param")
# oneDNN runs fp32 convolutions on channels blocked by 8 (AVX2) or 16 (AVX-512): a layer of 5 or
# 37 channels is padded or falls off the blocked kernels, so a pruned network with the
# threshold's own widths can run slower than the dense one. Kept counts are rounded up to this
# multiple (docs/results.md, "widths rounded up to multiples of 8", has the timings).
CHANNEL_MULTIPLE = 8
WEIGHTINGS = ("uniform", "params")  # of the sparsity penalty (``sparsity``)


def check_settings(percent, mode, criterion="gamma", params_share=None, min_keep=0.0,
                   multiple=1):
    """Refuse pruning settings that cannot work, before any data or weights are read."""
    if mode not in MODES:
        raise SsdqError("unknown pruning mode %r (one of %s)" % (mode, ", ".join(MODES)))
    if criterion not in CRITERIA:
        raise SsdqError("unknown pruning criterion %r (one of %s)" % (criterion, ", ".join(CRITERIA)))
    if not 0 <= percent < 100:
        raise SsdqError("--percent must be in [0, 100), not %g" % percent)
    if params_share is not None and not 0 < params_share <= 1:
        raise SsdqError("--params-share must be in (0, 1], not %g" % params_share)
    if not 0 <= min_keep <= 1:
        raise SsdqError("--min-keep must be in [0, 1], not %g" % min_keep)
    if not isinstance(multiple, int) or multiple < 1:
        raise SsdqError("--channel-multiple must be a whole number of at least 1, not %s"
                        % multiple)


@dataclasses.dataclass
class PruneOptions(Options):
    """How ``ssdq prune`` thins the reference model: which weights, how many channels, how."""

    params: str = option(SPARSE_WEIGHTS, "weights to prune: a file of the reference model's "
                         "(default: the shipped sparse-trained ones) or the prefix of a "
                         "checkpoint ssdq prune or ssdq qat wrote", metavar="FILE|PREFIX")
    percent: float = option(30.0, "share of all prunable gammas under the global threshold")
    params_share: float = option(None, "instead of --percent: prune the fewest channels that "
                                 "leave at most this share of the parameters (e.g. 0.25)")
    mode: str = option("normal", "normal, regular (widths of 8, 16, 32, ...), max (drop the "
                       "scales whose gammas all fall), regular-max", choices=MODES)
    criterion: str = option("gamma", "gamma: network slimming's |gamma|; gamma-per-param: "
                            "|gamma| per parameter the channel costs (cuts expensive channels "
                            "first)", choices=CRITERIA)
    min_keep: float = option(0.0, "every layer keeps at least this share of its channels "
                             "(default: one)")
    channel_multiple: int = option(CHANNEL_MULTIPLE, "round every layer's kept channels up to "
                                   "a multiple of this, so oneDNN's blocked kernels run it "
                                   "(1: the threshold's counts as they fall)")
    recalibrate_images: int = option(128, "re-estimate BatchNorm statistics on this many train "
                                     "images (0: no)")
    finetune_epochs: int = option(0, "train the pruned network this many epochs on the train "
                                  "split (Adam, cosine decay) before BatchNorm folding")
    finetune_lr: float = option(FINETUNE_LR, "the fine-tuning's peak learning rate")
    select_split: str = option(SELECTION_SPLIT, "the fine-tuning keeps the epoch best on this "
                               "split ('none': the last)")

    def check(self):
        """Refuse settings that cannot work, before any data or weights are read."""
        check_settings(self.percent, self.mode, self.criterion, self.params_share, self.min_keep,
                       self.channel_multiple)
        at_least(self, "finetune_epochs", "recalibrate_images", minimum=0)

    @property
    def needs_train_set(self):
        return bool(self.recalibrate_images or self.finetune_epochs)


@dataclasses.dataclass
class PruneStudyOptions(Options):
    """The rows of ``ssdq study prune``: what they are made from and how, and how they are
    scored and timed."""

    percent: float = option(30.0, "the pruned rows: share of the prunable gammas pruned")
    energy: float = option(0.9, "the low-rank rows: share of the singular-value energy kept")
    params: str = option(None, "dense weights (default: the reference model's)", metavar="FILE")
    sparse_params: str = option(SPARSE_WEIGHTS, "the sparse-trained weights the rows are "
                                "pruned from", metavar="FILE")
    split: str = option("val", "split to score on")
    eval_images: int = option(None, "score on the first N images (default: all)")
    repeats: int = option(5, "timed rounds: every row once a round, in turns")
    recalibrate_images: int = option(128, "pruned rows: re-estimate BatchNorm statistics on "
                                     "this many train images")
    finetune_params_share: float = option(0.25, "the fine-tuned row: prune to this share of the "
                                          "parameters (max mode), then fine-tune")
    finetune_percent: float = option(None, "the fine-tuned row: prune this share of the "
                                     "channels instead")
    finetune_criterion: str = option("gamma", "the fine-tuned row's pruning criterion",
                                     choices=CRITERIA)
    finetune_min_keep: float = option(0.0, "the fine-tuned row: every layer keeps at least "
                                      "this share of its channels")
    channel_multiple: int = option(CHANNEL_MULTIPLE, "the pruned rows: every layer's kept "
                                   "channels rounded up to a multiple of this (1: as the "
                                   "threshold leaves them)")
    finetune_epochs: int = option(2, "the fine-tuned row's epochs on the train split (0: leave "
                                  "the row out)")
    select_split: str = option(SELECTION_SPLIT, "the fine-tunings keep the epoch best on this "
                               "split ('none': the last)")
    qat_first_last_fp32: bool = option(False, "the QAT rows keep the first convolution and the "
                                       "prediction heads in fp32 (the pruning study's rule; "
                                       "default: int8 everywhere, as the post-training rows)",
                                       action="store_true")
    qat_sparsity: float = option(0.2, "quantize-then-prune: the L1 penalty on the prunable "
                                 "gammas kept on during the first QAT, as in the sparse "
                                 "model's last stage (params weighting, gammas at 15x the "
                                 "rate), so pruning by the QAT model's gammas finds the "
                                 "channels it learnt to do without (0: off)")
    model_dir: str = option(os.path.join("model", "study-prune"), "where the rows' checkpoints go")
    out_dir: str = option("reports", "where study-prune.{json,md,png} go")

    def check(self):
        at_least(self, "eval_images", "repeats")
        at_least(self, "finetune_epochs", "qat_sparsity", minimum=0)
        self.pruning("normal").check()
        self.finetune_pruning().check()
        for path in (self.params or REFERENCE_WEIGHTS, self.sparse_params):
            if not os.path.isfile(path):
                raise SsdqError("weights file not found: %s" % path)

    def pruning(self, mode):
        """How the rows without fine-tuning are pruned."""
        return PruneOptions(params=self.sparse_params, percent=self.percent, mode=mode,
                            channel_multiple=self.channel_multiple,
                            recalibrate_images=self.recalibrate_images)

    def finetune_pruning(self, finetune=True, params=None):
        """How the fine-tuned rows are pruned (max mode): to ``finetune_params_share`` of the
        parameters, or at ``finetune_percent`` of the channels when that is given; then
        fine-tuned in fp32 unless ``finetune`` is False (the QAT rows train with int8 in the
        loop instead). ``params``: prune these weights instead of the sparse-trained ones."""
        by_percent = self.finetune_percent is not None
        return PruneOptions(params=params or self.sparse_params, mode="max",
                            percent=self.finetune_percent if by_percent else 0.0,
                            params_share=None if by_percent else self.finetune_params_share,
                            criterion=self.finetune_criterion, min_keep=self.finetune_min_keep,
                            channel_multiple=self.channel_multiple,
                            recalibrate_images=self.recalibrate_images,
                            finetune_epochs=self.finetune_epochs if finetune else 0,
                            finetune_lr=FINETUNE_LR)

    def qat_options(self, params, epochs):
        """QAT of a row: the fine-tuning's rate and seed, ``epochs`` on the train split."""
        return QatOptions(params=params, epochs=epochs, lr=FINETUNE_LR,
                          first_last_fp32=self.qat_first_last_fp32,
                          select_split=self.select_split)

    def qat_epochs(self):
        """Quantize-then-prune's split of ``finetune_epochs``: (QAT of the sparse model, QAT of
        the thinned one), the second at least one epoch."""
        first = self.finetune_epochs // 2
        return first, self.finetune_epochs - first

    def control_pruning(self):
        """The fine-tuned rows' control: the dense weights through the same pipeline (BatchNorm
        statistics re-estimated, fine-tuned the same epochs at the same rate and seed, the
        epoch kept on the same split), nothing pruned."""
        return PruneOptions(params=self.params or REFERENCE_WEIGHTS, percent=0.0,
                            recalibrate_images=self.recalibrate_images,
                            finetune_epochs=self.finetune_epochs, finetune_lr=FINETUNE_LR)
