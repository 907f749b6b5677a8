"""What ``ssdq prune`` does; its flags are ``cli/commands/prune.py``'s."""
from ssdq.compress.pruning.options import PruneOptions
from ssdq.compress.pruning.slimming import prune
from ssdq.data.options import DataOptions
from ssdq.data.source import open_data


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
