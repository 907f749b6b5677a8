"""ssdq tune: accuracy-aware quantization: the fewest fp32 layers that meet an mAP budget, saved
as a checkpoint and a recipe (``ssdq quantize --recipe`` rebuilds it)."""
from ssdq.cli import flags
from ssdq.cli.commands.sensitivity import accuracy_arguments, calibrated
from ssdq.quant import tune
from ssdq.quant.options import CALIB_MODES, TuneOptions
from ssdq.scaleout.engine import make_engine
from ssdq.scaleout.options import ScaleoutOptions

ALL_MODES = "all"

NAME = "tune"
HELP = "find the fewest fp32 layers that meet an mAP budget"
PINS = True


def add_arguments(parser):
    accuracy_arguments(parser, calib_skip=("calib_mode",))
    parser.add_argument("--calib-mode", default=ALL_MODES, choices=(ALL_MODES,) + CALIB_MODES,
                        help="the calibration methods tried: all of them, or only this one")
    flags.add_options(parser, TuneOptions, "budget")
    parser.add_argument("--out", default="model/tuned", help="checkpoint prefix to write")


def run(args, context):
    modes = CALIB_MODES if args.calib_mode == ALL_MODES else (args.calib_mode,)
    variants = calibrated(args, context, calib_mode=modes[0])
    engine = make_engine(ScaleoutOptions.from_args(args))
    try:
        report = tune.tune(variants, args.out, TuneOptions.from_args(args), modes=modes,
                           progress=context.progress, engine=engine)
    finally:
        engine.close()
    paths = tune.write(report, args.out_dir)
    print(tune.tune_markdown(report))
    print("wrote %s, %s" % (args.out, ", ".join(paths)))
