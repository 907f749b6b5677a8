"""ssdq tune: accuracy-aware quantization: the fewest fp32 layers that meet an mAP budget, saved
as a checkpoint and a recipe (``ssdq quantize --recipe`` rebuilds it)."""
from ssdq.cli import flags
from ssdq.cli.commands.sensitivity import accuracy_arguments
from ssdq.quant.options import CALIB_MODES, TuneOptions

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
