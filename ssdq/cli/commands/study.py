"""ssdq study KIND: the compression studies: low-bit formats (simulated, checked against the real
int8 path) and pruning + low-rank + W8A8 (real oneDNN int8) -> reports/study-KIND.{json,md,png}."""
from ssdq.cli import flags
from ssdq.compress.formats.options import BitwidthOptions, ClipOptions, Pow2Options
from ssdq.compress.pruning.options import PruneStudyOptions

NAME = "study"
HELP = ("compression studies (low-bit formats simulated, pruning with real int8) -> "
        "reports/study-KIND.{json,md,png}")
PINS = True
# (kind, help, its options); the format studies calibrate with naive ranges, so they take no
# --calib-mode or --percentile
KINDS = (("bitwidth", "Ristretto's dynamic fixed point analysis", BitwidthOptions),
         ("pow2", "power-of-two (DeepShift) weights", Pow2Options),
         ("clip", "power-of-two clipping, int8 inside the clips", ClipOptions),
         ("prune", "pruning + low-rank + W8A8 table of the reference work", PruneStudyOptions))
FORMAT_STUDIES_SKIP = ("calib_mode", "percentile")


def add_arguments(parser):
    kinds = parser.add_subparsers(dest="study", required=True, metavar="KIND")
    for kind, text, options in KINDS:
        p = kinds.add_parser(kind, help=text, formatter_class=flags.HELP_FORMAT)
        flags.threads(p)
        flags.data(p)
        flags.quant(p, skip=() if kind == "prune" else FORMAT_STUDIES_SKIP)
        flags.scaleout(p)
        flags.add_options(p, options, "study")
