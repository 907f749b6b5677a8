"""ssdq reproduce: the Intel recipe in one command: convert, calibrate and quantize, evaluate
fp32 and int8, time them in turns, and write reports/report.{json,md}."""
from ssdq.cli import flags
from ssdq.data.options import DataOptions
from ssdq.quant.options import CalibOptions
from ssdq.reproduce import reproduce

NAME = "reproduce"
HELP = "convert, quantize, evaluate fp32 and int8, write the report"
PINS = True


def add_arguments(parser):
    flags.threads(parser)
    flags.data(parser)
    flags.quant(parser)
    parser.add_argument("--model", default="reference",
                        help="'reference' (embedded) or a gluoncv zoo name")
    flags.add(parser, "--params", help="weights file to load instead of the zoo's/reference's")
    flags.add(parser, "--split", "--model-dir", "--out-dir")
    flags.add(parser, "--backends", default=[],
              help="also evaluate and time fp32 and int8 on these runtimes (report.json "
              "backends.NAME)")


def run(args, context):
    reproduce(model=args.model, params_file=args.params, data=DataOptions.from_args(args),
              calib=CalibOptions.from_args(args), eval_split=args.split,
              batch_size=args.batch_size, num_workers=args.num_workers,
              model_dir=args.model_dir, out_dir=args.out_dir, threads=context.threads,
              progress=context.progress, backends=args.backends)
