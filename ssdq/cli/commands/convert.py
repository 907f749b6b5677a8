"""ssdq convert: a Gluon SSD (the embedded reference, or a gluoncv zoo model) -> a symbolic
checkpoint with BatchNorm folded into the convolutions."""
from ssdq.cli import flags
from ssdq.model.options import CONVERTED_PREFIX

NAME = "convert"
HELP = "Gluon SSD -> symbolic checkpoint"
PINS = True


def add_arguments(parser):
    flags.threads(parser)
    parser.add_argument("--model", default="reference",
                        help="'reference' (embedded) or a gluoncv zoo name, e.g. "
                        "ssd_300_vgg16_atrous_coco")
    flags.add(parser, "--params", help="weights file to load instead of the zoo's/reference's")
    parser.add_argument("--out", "--model-prefix", dest="out", default=CONVERTED_PREFIX,
                        help="checkpoint prefix to write")
