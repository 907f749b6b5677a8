"""What ``ssdq eval`` does; its flags are ``cli/commands/evaluate.py``'s."""
from ssdq.data.options import DataOptions
from ssdq.data.source import open_data
from ssdq.errors import SsdqError
from ssdq.eval.evaluate import evaluate_checkpoint, format_result
from ssdq.fileio import write_json
from ssdq.model.checkpoint import load_checkpoint, resolve_prefix
from ssdq.scaleout.engine import make_engine
from ssdq.scaleout.options import ScaleoutOptions


def run(args, context):
    if args.shards < 1:
        raise SsdqError("--shards must be at least 1")
    ckpt = load_checkpoint(resolve_prefix(args.model_prefix), args.classes, args.params)
    dataset = open_data(DataOptions.from_args(args), args.split, context.progress)
    scaleout = ScaleoutOptions.from_args(args)
    engine = make_engine(scaleout) if scaleout.ray or args.shards > 1 else None
    try:
        result = evaluate_checkpoint(ckpt, dataset, args.batch_size, args.num_workers,
                                     context.progress,
                                     speed_repeats=0 if args.no_speed else args.speed_repeats,
                                     shards=args.shards, engine=engine, backend=args.backend,
                                     save_detections=args.save_detections)
    finally:
        if engine is not None:
            engine.close()
    print(format_result(result))
    if args.out:
        write_json(args.out, dict(result, threads=context.threads))
