"""What ``ssdq finetune`` does; its flags are ``cli/commands/finetune.py``'s."""
import json

from ssdq.compress.formats.finetune import default_out, finetune_and_save
from ssdq.compress.formats.number_format import NumberFormat
from ssdq.compress.formats.options import FinetuneOptions
from ssdq.data.options import DataOptions
from ssdq.data.source import open_data
from ssdq.options import at_least


def run(args, context):
    NumberFormat(args.number_format)  # a bad spec fails before any data is read
    at_least(args, "eval_images")
    options = FinetuneOptions.from_args(args)
    data = DataOptions.from_args(args)
    train_set = open_data(data, "train", context.progress)
    eval_set = open_data(data, args.split, context.progress).subset(args.eval_images)
    select_set = open_data(data, options.select_split, context.progress) \
        .subset(args.eval_images) if options.selects() else None
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
