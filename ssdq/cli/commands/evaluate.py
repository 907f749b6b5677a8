"""ssdq eval: score a checkpoint with pycocotools (both COCO conventions) or VOC07, and time its
forward pass at the batch size it ran."""
from ssdq.backends import BACKENDS
from ssdq.cli import flags
from ssdq.data.options import DataOptions
from ssdq.data.source import open_data
from ssdq.errors import SsdqError
from ssdq.eval.evaluate import evaluate_checkpoint, format_result
from ssdq.fileio import write_json
from ssdq.model.checkpoint import load_checkpoint, resolve_prefix
from ssdq.scaleout.engine import make_engine
from ssdq.scaleout.options import ScaleoutOptions

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


def run(args, context):
    if args.shards < 1:
        raise SsdqError("--shards must be at least 1")
    ckpt = load_checkpoint(resolve_prefix(args.model_prefix), args.classes, args.params)
    dataset = open_data(DataOptions.from_args(args), args.split, context.progress)
    scaleout = ScaleoutOptions.from_args(args)
    engine = make_engine(scaleout) if scaleout.ray or args.shards > 1 else None
    try:
        result = evaluate_checkpoint(ckpt, dataset, args.batch_size, args.num_workers,
                                     context.progress, speed_repeats=0 if args.no_speed else 5,
                                     shards=args.shards, engine=engine, backend=args.backend)
    finally:
        if engine is not None:
            engine.close()
    print(format_result(result))
    if args.out:
        write_json(args.out, dict(result, threads=context.threads))
