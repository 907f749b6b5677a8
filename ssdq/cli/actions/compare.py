"""What ``ssdq compare`` does; its flags are ``cli/commands/compare.py``'s."""
from ssdq.report.compare import compare


def run(args, context):
    ok, lines = compare(args.report, args.baseline, args.max_map_drop, args.min_speedup,
                        args.min_network_speedup, args.min_throughput,
                        allow_different_baseline=args.allow_different_baseline)
    print("\n".join(lines))
    return 0 if ok else 1
