"""ssdq prune: channel pruning by BatchNorm gammas (network slimming) -> a BN-folded checkpoint
with fewer channels."""
from ssdq.cli import flags
from ssdq.compress.pruning.options import PruneOptions

NAME = "prune"
HELP = "channel pruning by BatchNorm gammas (network slimming) -> a checkpoint with fewer channels"
PINS = True


def add_arguments(parser):
    flags.threads(parser)
    flags.add_options(parser, PruneOptions, "pruning")
    flags.data(parser, only=("data_root",), batch=False)
    parser.add_argument("--out", default="model/pruned", help="checkpoint prefix to write")
