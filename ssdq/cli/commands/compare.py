"""ssdq compare: the CI gate: fail if a report or bench regressed against a baseline."""
from ssdq.eval.criterion import POINTS, Criterion, criterion_type

NAME = "compare"
HELP = "CI gate: fail if a report regressed against a baseline"
PINS = False


def add_arguments(parser):
    parser.add_argument("report", help="the new report.json or bench.json")
    parser.add_argument("--baseline", help="the report.json to compare against")
    parser.add_argument("--max-map-drop", type=criterion_type(POINTS), default=Criterion(0.5),
                        metavar="DROP", help="how far int8 mAP may fall below this run's fp32 "
                        "and the baseline's: mAP points (0.5) or percent of the baseline (1%%)")
    parser.add_argument("--min-speedup", type=float,
                        help="minimum end-to-end int8/fp32 images/s ratio (measured within the "
                        "new run)")
    parser.add_argument("--min-network-speedup", type=float,
                        help="minimum network-only int8/fp32 ratio (needs a bench in the file)")
    parser.add_argument("--allow-different-baseline", action="store_true",
                        help="compare with a baseline of another model, dataset, split or "
                        "image count (refused by default)")
    parser.add_argument("--min-throughput", type=float,
                        help="multi-instance bench: minimum total img/s (all images / common "
                        "wall time)")
