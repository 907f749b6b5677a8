"""ssdq export onnx: a checkpoint as ONNX: fp32, or int8 as a QDQ model carrying ssdq's own
calibration (PREFIX-calib.json)."""
from ssdq.cli import flags
from ssdq.model.options import QUANTIZED_PREFIX

NAME = "export"
HELP = "a checkpoint in another runtime's format"
PINS = True


def add_arguments(parser):
    formats = parser.add_subparsers(dest="export_format", required=True, metavar="FORMAT")
    e = formats.add_parser("onnx", help="fp32, or int8 as a QDQ model with ssdq's calibration "
                           "(PREFIX-calib.json)", formatter_class=flags.HELP_FORMAT)
    flags.threads(e)
    flags.add(e, "--model-prefix", default=QUANTIZED_PREFIX)
    e.add_argument("--out", help="ONNX file (default: PREFIX.onnx)")
    e.add_argument("--per-tensor", action="store_true",
                   help="one weight scale per tensor instead of per output channel (MXNet's "
                        "oneDNN convolution uses per-channel weight scales)")
