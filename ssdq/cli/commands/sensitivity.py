"""ssdq sensitivity: rank the convolutions by how much running them in int8 costs (mAP and a
label-free prediction SNR), from one calibration pass."""
from ssdq.cli import flags

NAME = "sensitivity"
HELP = "rank layers by how much int8 costs them"
PINS = True


def add_arguments(parser):
    accuracy_arguments(parser)
    parser.add_argument("--no-map", action="store_true",
                        help="only the label-free SNR proxy (fast)")


def accuracy_arguments(parser, calib_skip=()):
    """What sensitivity and tune share: the fp32 checkpoint, its calibration, the eval images."""
    flags.threads(parser)
    flags.data(parser)
    flags.quant(parser, skip=calib_skip)
    flags.checkpoint(parser)
    flags.scaleout(parser)
    flags.add(parser, "--model-prefix", "--split", "--eval-images", "--out-dir")
