"""ssdq prune: channel pruning by BatchNorm gammas (network slimming) -> a BN-folded checkpoint
with fewer channels."""
from ssdq.cli import flags
from ssdq.compress.pruning.options import PruneOptions
from ssdq.compress.pruning.slimming import prune
from ssdq.data.options import DataOptions
from ssdq.data.source import open_data

NAME = "prune"
HELP = "channel pruning by BatchNorm gammas (network slimming) -> a checkpoint with fewer channels"
PINS = True


def add_arguments(parser):
    flags.threads(parser)
    flags.add_options(parser, PruneOptions, "pruning")
    flags.data(parser, only=("data_root",), batch=False)
    parser.add_argument("--out", default="model/pruned", help="checkpoint prefix to write")


def run(args, context):
    options = PruneOptions.from_args(args)
    options.check()
    data = DataOptions.from_args(args)
    train_set = open_data(data, "train", context.progress) if options.needs_train_set else None
    select_set = open_data(data, options.select_split, context.progress) \
        if options.finetune_epochs and options.select_split != "none" else None
    prefix, recipe = prune(args.out, options, train_set, progress=context.progress,
                           select_set=select_set)
    print("kept %d of %d prunable channels (%.1f%% pruned), %d scales, conv layers %+d; "
          "wrote %s" % (recipe["channels"]["after"], recipe["channels"]["before"],
                        recipe["percent"], recipe["num_scales"],
                        recipe["conv_layers"]["delta"], prefix))
