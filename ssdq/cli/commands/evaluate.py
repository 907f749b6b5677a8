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
                        help="skip timing the forward pass after scoring (the speed line)")
    parser.add_argument("--out", help="also write the result as JSON here")
