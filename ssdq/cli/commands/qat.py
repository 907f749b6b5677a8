"""ssdq qat: quantization-aware training of the BatchNorm network, exported as the oneDNN int8
graph of its trained weights and ranges (PREFIX), its fp32 checkpoint (PREFIX-fp32) and the
record of the run (PREFIX-qat.json)."""
from ssdq.cli import flags
from ssdq.data.options import DataOptions
from ssdq.data.source import open_data
from ssdq.model.convert import network_from
from ssdq.options import at_least
from ssdq.quant.options import CalibOptions, QatOptions
from ssdq.quant.qat import qat
from ssdq.quant.quantize import open_calibration_set

NAME = "qat"
HELP = "quantization-aware training -> a oneDNN int8 checkpoint of the trained weights"
PINS = True


def add_arguments(parser):
    flags.threads(parser)
    # training learns the model's class indices: a dataset folder, not a file of other classes
    flags.data(parser, only=("data_root", "dataset_format", "allow_size_mismatch"))
    flags.add_options(parser, QatOptions, "quantization-aware training")
    # the ranges start from a naive calibration: no --calib-mode, --percentile or exclusions
    flags.add_options(parser, CalibOptions, "starting ranges",
                      only=("num_calib_batches", "calib_split"))
    flags.add(parser, "--split", help="split the kept epoch is scored on")
    flags.add(parser, "--eval-images", default=500,
              help="images of --split scored (and of --select-split)")
    parser.add_argument("--out", default="model/qat", help="int8 checkpoint prefix to write")


def run(args, context):
    at_least(args, "eval_images")
    options = QatOptions.from_args(args)
    options.check()
    data, calib = DataOptions.from_args(args), CalibOptions.from_args(args)
    net, source = network_from(options.params)
    select_set = open_data(data, options.select_split, context.progress) \
        .subset(args.eval_images) if options.select_split != "none" else None
    qat(args.out, net, source, open_data(data, "train", context.progress),
        open_calibration_set(calib, data),
        open_data(data, args.split, context.progress).subset(args.eval_images), options, calib,
        select_set=select_set, batch_size=args.batch_size, num_workers=args.num_workers,
        progress=context.progress)
    print("wrote %s (int8), %s-fp32, %s-qat.json" % (args.out, args.out, args.out))
