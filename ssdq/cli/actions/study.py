"""What ``ssdq study`` does; its flags are ``cli/commands/study.py``'s."""
from ssdq.cli.commands.study import KINDS
from ssdq.compress.formats.study import run_study
from ssdq.compress.pruning.options import PruneStudyOptions
from ssdq.compress.pruning.study import run_study as run_prune_study
from ssdq.data.options import DataOptions
from ssdq.quant.options import CalibOptions
from ssdq.scaleout.engine import make_engine
from ssdq.scaleout.options import ScaleoutOptions

OPTIONS = {kind: options for kind, _, options in KINDS}


def run(args, context):
    data, calib = DataOptions.from_args(args), CalibOptions.from_args(args)
    engine = make_engine(ScaleoutOptions.from_args(args))
    try:
        if args.study == "prune":
            run_prune_study(PruneStudyOptions.from_args(args), data, calib, args.batch_size,
                            args.num_workers, context.progress, engine=engine)
        else:
            options = OPTIONS[args.study].from_args(args)
            run_study(args.study, options, data, calib, args.batch_size, args.num_workers,
                      context.threads, context.progress, engine)
    finally:
        engine.close()
