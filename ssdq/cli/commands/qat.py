"""ssdq qat: quantization-aware training of the BatchNorm network, exported as the oneDNN int8
graph of its trained weights and ranges (PREFIX), its fp32 checkpoint (PREFIX-fp32) and the
record of the run (PREFIX-qat.json)."""
from ssdq.cli import flags
from ssdq.quant.options import CalibOptions, QatOptions

NAME = "qat"
HELP = "quantization-aware training -> a oneDNN int8 checkpoint of the trained weights"
PINS = True


def add_arguments(parser):
    flags.threads(parser)
    # training learns the model's class indices: a dataset folder, not a file of other classes
    flags.data(parser, only=("data_root", "dataset_format", "allow_size_mismatch"))
    flags.add_options(parser, QatOptions, "quantization-aware training")
    # the ranges start from a naive calibration: no --calib-mode, --percentile or exclusions
    flags.add_options(parser, CalibOptions, "starting ranges",
                      only=("num_calib_batches", "calib_split"))
    flags.add(parser, "--split", help="split the kept epoch is scored on")
    flags.add(parser, "--eval-images", default=500,
              help="images of --split scored (and of --select-split)")
    parser.add_argument("--out", default="model/qat", help="int8 checkpoint prefix to write")
