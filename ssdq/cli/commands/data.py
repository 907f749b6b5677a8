"""ssdq data: make the embedded synthetic dataset, or download COCO val2017 (resumable)."""
from ssdq.cli import flags
from ssdq.data.options import DEFAULT_ROOT, DEFAULT_SEED, DEFAULT_SPLITS

NAME = "data"
HELP = "make or fetch a dataset"
PINS = False


def add_arguments(parser):
    sources = parser.add_subparsers(dest="data_command", required=True, metavar="SOURCE")
    s = sources.add_parser("synthetic", help="generate the embedded COCO-format shapes dataset",
                           formatter_class=flags.HELP_FORMAT)
    s.add_argument("--root", default=DEFAULT_ROOT)
    for split, count in DEFAULT_SPLITS.items():
        s.add_argument("--" + split, type=int, default=count, help="%s images" % split)
    s.add_argument("--seed", type=int, default=DEFAULT_SEED)
    flags.add(s, "--quiet")
    c = sources.add_parser("coco", help="download COCO val2017 + annotations (resumable)",
                           formatter_class=flags.HELP_FORMAT)
    c.add_argument("--root", default="data/coco")
    c.add_argument("--base-url", default="http://images.cocodataset.org")
    flags.add(c, "--quiet")
