"""What ``ssdq reproduce`` does; its flags are ``cli/commands/reproduce.py``'s."""
from ssdq.data.options import DataOptions
from ssdq.quant.options import CalibOptions
from ssdq.reproduce import reproduce


def run(args, context):
    reproduce(model=args.model, params_file=args.params, data=DataOptions.from_args(args),
              calib=CalibOptions.from_args(args), eval_split=args.split,
              batch_size=args.batch_size, num_workers=args.num_workers,
              model_dir=args.model_dir, out_dir=args.out_dir, threads=context.threads,
              progress=context.progress, backends=args.backends)
