"""What ``ssdq tune`` does; its flags are ``cli/commands/tune.py``'s."""
from ssdq.cli.actions.sensitivity import calibrated
from ssdq.cli.commands.tune import ALL_MODES
from ssdq.quant import tune
from ssdq.quant.options import CALIB_MODES, TuneOptions
from ssdq.scaleout.engine import make_engine
from ssdq.scaleout.options import ScaleoutOptions


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
