"""ssdq quantize: calibrate an fp32 checkpoint and write its oneDNN int8 graph (or rebuild the
graph a ``ssdq tune`` recipe describes, without data)."""
from ssdq.cli import flags
from ssdq.data.options import DataOptions
from ssdq.errors import SsdqError
from ssdq.model.checkpoint import load_checkpoint
from ssdq.model.options import QUANTIZED_PREFIX
from ssdq.quant.options import PRESETS, CalibOptions
from ssdq.quant.quantize import open_calibration_set, quantize, quantize_from_recipe

NAME = "quantize"
HELP = "calibrate and quantize to int8"
PINS = True


def add_arguments(parser):
    flags.threads(parser)
    flags.data(parser, skip=("class_map",))  # calibration reads images only
    flags.quant(parser)
    flags.checkpoint(parser)
    flags.add(parser, "--model-prefix")
    parser.add_argument("--out", default=QUANTIZED_PREFIX, help="int8 checkpoint prefix to write")
    parser.add_argument("--exclude-layers", nargs="*", default=[],
                        help="layer names to keep in fp32 (fused or original conv names)")
    parser.add_argument("--exclude-ops", nargs="*", default=[],
                        help="operator types to keep in fp32")
    parser.add_argument("--preset", choices=PRESETS,
                        help="first-last: keep the first and the prediction-head convolutions "
                        "in fp32")
    parser.add_argument("--recipe", help="rebuild the graph a `ssdq tune` recipe describes "
                        "(its ranges and fp32 layers: no calibration)")


def run(args, context):
    fp32 = load_checkpoint(args.model_prefix, args.classes)
    data, calib = DataOptions.from_args(args), CalibOptions.from_args(args)
    if args.recipe:
        given = [name for name, value, default in (
            ("--calib-* / --percentile / --exclude-match", calib.to_dict(),
             CalibOptions().to_dict()),
            ("--data-root / --annotations / ...", data.to_dict(), DataOptions().to_dict()),
            ("--exclude-layers", args.exclude_layers, []), ("--exclude-ops", args.exclude_ops, []),
            ("--preset", args.preset, None)) if value != default]
        if given:
            raise SsdqError("--recipe rebuilds the recipe's own graph (its ranges and fp32 "
                            "layers, no calibration); drop %s" % ", ".join(given))
        print("wrote %s" % quantize_from_recipe(fp32, args.out, args.recipe))
        return
    quantize(fp32, args.out, open_calibration_set(calib, data, context.progress), calib,
             batch_size=args.batch_size, num_workers=args.num_workers,
             exclude_layers=args.exclude_layers, exclude_ops=args.exclude_ops,
             preset=args.preset, progress=context.progress)
    print("wrote %s" % args.out)
