"""What ``ssdq compare`` does; its flags are ``cli/commands/compare.py``'s."""
from ssdq.report.compare import compare


def run(args, context):
    ok, lines = compare(args.report, args.baseline, args.max_map_drop, args.min_speedup,
                        args.min_network_speedup, args.min_throughput)
    print("\n".join(lines))
    return 0 if ok else 1
