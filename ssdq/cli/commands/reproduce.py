"""ssdq reproduce: the Intel recipe in one command: convert, calibrate and quantize, evaluate
fp32 and int8, time them in turns, and write reports/report.{json,md}."""
from ssdq.cli import flags

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
