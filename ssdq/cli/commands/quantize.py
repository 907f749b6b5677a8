"""ssdq quantize: calibrate an fp32 checkpoint and write its oneDNN int8 graph (or rebuild the
graph a ``ssdq tune`` recipe describes, without data)."""
from ssdq.cli import flags
from ssdq.model.options import QUANTIZED_PREFIX
from ssdq.quant.options import PRESETS

NAME = "quantize"
HELP = "calibrate and quantize to int8"
PINS = True


def add_arguments(parser):
    flags.threads(parser)
    flags.data(parser, skip=("class_map",))  # calibration reads images only
    flags.quant(parser)
    flags.checkpoint(parser)
    flags.add(parser, "--model-prefix")
    parser.add_argument("--out", default=QUANTIZED_PREFIX, help="int8 checkpoint prefix to write")
    parser.add_argument("--exclude-layers", nargs="*", default=[],
                        help="layer names to keep in fp32 (fused or original conv names)")
    parser.add_argument("--exclude-ops", nargs="*", default=[],
                        help="operator types to keep in fp32")
    parser.add_argument("--preset", choices=PRESETS,
                        help="first-last: keep the first and the prediction-head convolutions "
                        "in fp32")
    parser.add_argument("--recipe", help="rebuild the graph a `ssdq tune` recipe describes "
                        "(its ranges and fp32 layers: no calibration)")
