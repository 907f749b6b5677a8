"""ssdq eval: score a checkpoint with pycocotools (both COCO conventions) or VOC07, and time its
forward pass at the batch size it ran."""
from ssdq.backends import BACKENDS
from ssdq.cli import flags

NAME = "eval"
HELP = "evaluate a checkpoint"
PINS = True


def add_arguments(parser):
    flags.threads(parser)
    flags.data(parser)
    flags.checkpoint(parser, params=True)
    flags.scaleout(parser)
    flags.add(parser, "--model-prefix", "--split")
    parser.add_argument("--backend", default="mxnet", choices=BACKENDS,
                        help="runtime to evaluate on (onnxruntime/openvino run `ssdq export "
                        "onnx`'s model of the checkpoint; needs the runtimes extra)")
    parser.add_argument("--shards", type=int, default=1,
                        help="split the images into N shards (Ray tasks with --ray), merge, "
                        "score once")
    parser.add_argument("--no-speed", action="store_true",
                        help="leave out the speed line")
    parser.add_argument("--speed-repeats", type=int, default=None, metavar="N",
                        help="time N rounds of the network at the batch size after scoring "
                        "(default: the median of the eval loop's own batches, at no extra "
                        "cost)")
    parser.add_argument("--save-detections", metavar="FILE",
                        help="write the detections as a COCO results list (the dataset's image "
                        "and category ids) for `ssdq score` or other tools")
    parser.add_argument("--out", help="also write the result as JSON here")
