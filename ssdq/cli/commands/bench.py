"""ssdq bench: img/s by precision, scope and batch size, timed in turns -> reports/bench.{json,md,png};
with --instances/--cores-per-instance/--mode, the multi-instance benchmark Intel's launchers run."""
from ssdq.bench.options import DEFAULT_BATCH_SIZES, MODES, PRECISIONS, SCOPES
from ssdq.cli import flags

NAME = "bench"
HELP = "img/s by precision, scope and batch size -> reports/bench.{json,md,png}"
PINS = True


def add_arguments(parser):
    flags.threads(parser)
    flags.checkpoint(parser, params=True)
    flags.add(parser, "--model-prefix", "--int8-prefix")
    parser.add_argument("--zoo", nargs="?", const="ssd_300_vgg16_atrous_coco", metavar="NAME",
                        help="bench this gluoncv zoo architecture (default "
                        "ssd_300_vgg16_atrous_coco) with random weights instead of the "
                        "checkpoints; no download")
    flags.add(parser, "--backends")
    parser.add_argument("--precisions", nargs="+", default=list(PRECISIONS), choices=PRECISIONS)
    parser.add_argument("--scopes", nargs="+", default=list(SCOPES), choices=SCOPES)
    parser.add_argument("--batch-sizes", nargs="+", type=int, default=list(DEFAULT_BATCH_SIZES))
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=5)
    flags.add(parser, "--eval-images", default=64, help="images per eval_loop pass")
    flags.data(parser, only=("data_root",), batch=False)
    flags.add(parser, "--split", help="split whose images are run")
    flags.add(parser, "--num-workers")
    parser.add_argument("--extra-int8", nargs="+", default=[], metavar="LABEL=PREFIX",
                        help="more int8 graphs of the same fp32 weights, timed in turns with the "
                        "others as precision int8_LABEL, e.g. "
                        "gluoncv=ssd_300_vgg16_atrous_voc_int8 (GluonCV's shipped graph; binds "
                        "to --params, else to the fp32 weights)")
    parser.add_argument("--widths-from", metavar="CHECKPOINT",
                        help="with --zoo: also bench the architecture at this pruned "
                        "checkpoint's per-layer keep ratios (random weights), timed in turns "
                        "with the dense one")
    parser.add_argument("--widths-multiple", type=int, default=1, metavar="K",
                        help="with --widths-from: round each width up to a multiple of K "
                        "channels (16 fills AVX-512 int8 registers; 1: the keep ratios as they "
                        "are)")
    parser.add_argument("--profile", action="store_true",
                        help="also profile each graph per operator (MXNet profiler) at the "
                        "batch nearest 8: where the time goes, in bench.json and bench.md")
    parser.add_argument("--out", default="reports/bench.json")
    g = parser.add_argument_group("multi-instance (as Intel's launchers run CI; see docs)")
    g.add_argument("--instances", type=int, help="run N instances together, each on its own "
                   "cores")
    g.add_argument("--cores-per-instance", type=int, help="physical cores of each instance")
    g.add_argument("--mode", choices=MODES,
                   help="latency: 4 cores an instance within one node; throughput: one per node")
    g.add_argument("--instance-cores", nargs="+", metavar="CPUS",
                   help="explicit cores of each instance, e.g. 0-3 4-7")
    g.add_argument("--rounds", type=int, default=1,
                   help="times to run (one instance on all the cores, then the N) in turns")
