"""What ``ssdq quantize`` does; its flags are ``cli/commands/quantize.py``'s."""
from ssdq.data.options import DataOptions
from ssdq.errors import SsdqError
from ssdq.model.checkpoint import load_checkpoint
from ssdq.quant.options import CalibOptions
from ssdq.quant.quantize import open_calibration_set, quantize, quantize_from_recipe


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
