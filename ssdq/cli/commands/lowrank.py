"""ssdq lowrank: truncated SVD of fc6/fc7 (or any convolution) in an fp32 checkpoint."""
from ssdq.cli import flags

NAME = "lowrank"
HELP = "truncated SVD of fc6/fc7 in a checkpoint"
PINS = True


def add_arguments(parser):
    flags.threads(parser)
    flags.add(parser, "--model-prefix")
    parser.add_argument("--layers", nargs="+", default=["fc7", "fc6"],
                        help="fc6, fc7 or node names")
    rank = parser.add_mutually_exclusive_group(required=True)
    rank.add_argument("--rank", type=int)
    rank.add_argument("--energy", type=float, help="keep this share of the singular-value energy")
    parser.add_argument("--out", default="model/lowrank", help="checkpoint prefix to write")
