"""What ``ssdq sensitivity`` does; its flags are ``cli/commands/sensitivity.py``'s."""
from ssdq.data.options import DataOptions
from ssdq.data.source import open_data
from ssdq.model.checkpoint import load_checkpoint
from ssdq.options import at_least
from ssdq.quant import sensitivity
from ssdq.quant.calibrated import Calibrated
from ssdq.quant.options import CalibOptions
from ssdq.quant.quantize import open_calibration_set
from ssdq.scaleout.engine import make_engine
from ssdq.scaleout.options import ScaleoutOptions


def calibrated(args, context, **calib_overrides):
    """The ``Calibrated`` fp32 model the flags describe (one calibration pass)."""
    at_least(args, "eval_images")
    data, calib = DataOptions.from_args(args), CalibOptions.from_args(args, **calib_overrides)
    eval_set = open_data(data, args.split, context.progress)
    if args.eval_images:
        eval_set = eval_set.subset(args.eval_images)
    return Calibrated(load_checkpoint(args.model_prefix, args.classes),
                      open_calibration_set(calib, data, context.progress), eval_set, calib,
                      args.batch_size, args.num_workers, context.progress)


def run(args, context):
    variants = calibrated(args, context)
    engine = make_engine(ScaleoutOptions.from_args(args))
    try:
        report = sensitivity.analyse(variants, with_map=not args.no_map,
                                     progress=context.progress, engine=engine)
    finally:
        engine.close()
    paths = sensitivity.write(report, args.out_dir)
    print(sensitivity.markdown_table(report, top=10))
    print("wrote %s" % ", ".join(paths))
