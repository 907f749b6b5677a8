"""What ``ssdq bench`` does; its flags are ``cli/commands/bench.py``'s."""
from ssdq.bench.harness import bench_checkpoints, benchmark, markdown, write_bench, zoo_checkpoints
from ssdq.bench.multi_instance import markdown as multi_markdown
from ssdq.bench.multi_instance import run_bench
from ssdq.data.options import DataOptions
from ssdq.data.source import open_data
from ssdq.errors import SsdqError


def run(args, context):
    image_set = open_data(DataOptions.from_args(args), args.split, context.progress)
    pruned = None
    if args.widths_from and not args.zoo:
        raise SsdqError("--widths-from needs --zoo (it shapes the zoo architecture)")
    if args.zoo:
        pairs = [zoo_checkpoints(args.zoo, image_set, progress=context.progress)]
        if args.widths_from:
            pruned = zoo_checkpoints(args.zoo, image_set, progress=context.progress,
                                     widths_from=args.widths_from,
                                     widths_multiple=args.widths_multiple)
    else:
        pairs = [(args.model_prefix, args.int8_prefix)]
    if any(v is not None for v in (args.instances, args.cores_per_instance, args.mode,
                                   args.instance_cores)):
        given = [flag for flag, value, default in (
            ("--backends", args.backends, ["mxnet"]), ("--extra-int8", args.extra_int8, []),
            ("--widths-from", args.widths_from, None), ("--profile", args.profile, False),
            ("--classes", args.classes, None), ("--params", args.params, None))
            if value != default]
        if given:
            raise SsdqError("a multi-instance bench runs one MXNet graph per instance; %s "
                            "applies to the in-process bench (drop --instances, "
                            "--cores-per-instance, --mode and --instance-cores)" % given[0])
        bench, paths = run_bench(
            image_set, *pairs[0], args.precisions, args.scopes, args.batch_sizes, args.instances,
            args.cores_per_instance, args.mode, args.numa_node, args.instance_cores, args.warmup,
            args.repeats, args.rounds, args.membind, args.strict, args.out, args.zoo,
            context.progress)
        print(multi_markdown(bench))
        print("wrote %s" % ", ".join(paths))
        return
    pairs, extra = bench_checkpoints(pairs, args.extra_int8, args.classes, args.params)
    bench = benchmark(pairs, image_set, args.precisions, args.scopes, args.batch_sizes,
                      args.warmup, args.repeats, args.eval_images, args.num_workers,
                      context.progress, profile=args.profile, extra_int8=extra,
                      backends=args.backends, pruned=pruned)
    paths = write_bench(bench, args.out)
    print(markdown(bench))
    print("wrote %s" % ", ".join(paths))
