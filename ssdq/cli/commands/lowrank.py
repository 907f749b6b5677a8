"""ssdq lowrank: truncated SVD of fc6/fc7 (or any convolution) in an fp32 checkpoint."""
from ssdq.cli import flags
from ssdq.compress.pruning.lowrank import lowrank

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


def run(args, context):
    prefix, summary = lowrank(args.model_prefix, args.out, args.layers, args.rank, args.energy)
    for layer, s in summary.items():
        print("%s: rank %d of %d, energy %.4f, params %d -> %d" % (
            layer, s["rank"], s["full_rank"], s["energy_kept"], s["params_before"],
            s["params_after"]))
    print("wrote %s" % prefix)
