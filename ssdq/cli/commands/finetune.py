"""ssdq finetune: fine-tune an fp32 checkpoint with a weight number format in the loop
(simulated: straight-through estimator), the kept epoch chosen on the dev split and scored once
on the eval split."""
import json

from ssdq.cli import flags
from ssdq.compress.formats.finetune import default_out, finetune_and_save
from ssdq.compress.formats.number_format import NumberFormat
from ssdq.compress.formats.options import FinetuneOptions
from ssdq.data.options import DataOptions
from ssdq.data.source import open_data
from ssdq.options import at_least

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


def run(args, context):
    NumberFormat(args.number_format)  # a bad spec fails before any data is read
    at_least(args, "eval_images")
    options = FinetuneOptions.from_args(args)
    data = DataOptions.from_args(args)
    train_set = open_data(data, "train", context.progress)
    eval_set = open_data(data, args.split, context.progress).subset(args.eval_images)
    select_set = open_data(data, options.select_split, context.progress).subset(args.eval_images) \
        if options.selects() else None
    out = args.out or default_out(args.number_format, options.lq_lambda,
                                  activation_clip=options.activation_clip)
    run_record = finetune_and_save(args.model_prefix, out, train_set, eval_set,
                                   args.number_format, options, select_set=select_set,
                                   num_workers=args.num_workers, eval_batch_size=args.batch_size,
                                   progress=context.progress)
    for entry in run_record["history"]:
        print(json.dumps(entry))
    split = run_record["eval_split"]
    print("kept epoch %d: %s mAP %.2f" % (run_record["kept_epoch"], split,
                                          run_record["%s_map" % split]))
    print("wrote %s (and %s-finetune.json)" % (out, out))
