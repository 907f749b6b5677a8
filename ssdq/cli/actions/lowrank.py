"""What ``ssdq lowrank`` does; its flags are ``cli/commands/lowrank.py``'s."""
from ssdq.compress.pruning.lowrank import lowrank


def run(args, context):
    prefix, summary = lowrank(args.model_prefix, args.out, args.layers, args.rank, args.energy)
    for layer, s in summary.items():
        print("%s: rank %d of %d, energy %.4f, params %d -> %d" % (
            layer, s["rank"], s["full_rank"], s["energy_kept"], s["params_before"],
            s["params_after"]))
    print("wrote %s" % prefix)
