"""ssdq finetune: fine-tune an fp32 checkpoint with a weight number format in the loop
(simulated: straight-through estimator), the kept epoch chosen on the dev split and scored once
on the eval split."""

from ssdq.cli import flags
from ssdq.compress.formats.options import FinetuneOptions

NAME = "finetune"
HELP = "fine-tune with a weight number format in the loop (simulated)"
PINS = True


def add_arguments(parser):
    flags.threads(parser)
    # training learns the model's class indices: a dataset folder, not a file of other classes
    flags.data(parser, only=("data_root", "dataset_format", "allow_size_mismatch"), batch=False)
    flags.add(parser, "--batch-size", help="images a batch when scoring")
    flags.add(parser, "--num-workers")
    parser.add_argument("--format", required=True, dest="number_format",
                        help="dfp:BITS, int:BITS, pow2:LO:HI, pow2clip:BITS[:J], clip:J "
                        "(dfp:32: the fp32 control, the same schedule without a format)")
    flags.add_options(parser, FinetuneOptions, "fine-tuning")
    flags.add(parser, "--split", help="split the kept epoch is scored on")
    flags.add(parser, "--eval-images", default=500,
              help="images of --split scored (and of --select-split)")
    flags.add(parser, "--model-prefix")
    parser.add_argument("--out", help="checkpoint prefix (default model/finetuned-FORMAT[-lqL])")
