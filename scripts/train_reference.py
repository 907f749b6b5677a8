"""Train the embedded reference model on the synthetic train split (kept epoch chosen on dev).

    W=ssdq/model/weights                       # the shipped weights, cards and logs
    python scripts/train_reference.py          # writes $W/reference-ssd300-vgg16-atrous.params
    python scripts/train_reference.py --epochs 2 --out /tmp/try.params
    # a second stage from earlier weights (the reference card lists every stage's command):
    python scripts/train_reference.py --init $W/reference-ssd300-vgg16-atrous.params \
        --epochs 30 --batch-size 16 --warmup 100 --eval-every 2 --out STAGE.params --stage 3
    # network slimming: sparsity training from the reference weights, in stages
    # ($W/sparse-ssd300-vgg16-atrous.json has every command); the first:
    python scripts/train_reference.py --init $W/reference-ssd300-vgg16-atrous.params \
        --sparsity 5e-3 --gamma-lr-mult 15 --epochs 1 --batch-size 16 --warmup 20 --eval-every 1 \
        --out STAGE1.params --log-file $W/sparse-train-log.jsonl

The defaults (--out, --log-file) write the shipped weights and log in the package data of the
ssdq this script imports: the checkout's (it puts the checkout first on sys.path).
"""
import argparse
import logging
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

# what the parser needs, without loading mxnet (threads are pinned after parsing)
from ssdq.compress.pruning.options import CRITERIA, WEIGHTINGS  # noqa: E402
from ssdq.data.options import DEFAULT_ROOT  # noqa: E402
from ssdq.host import cpus  # noqa: E402
from ssdq.model.weights import REFERENCE_TRAIN_LOG, REFERENCE_WEIGHTS  # noqa: E402


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data-root", default=DEFAULT_ROOT)
    parser.add_argument("--out", default=REFERENCE_WEIGHTS)
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--eval-every", type=int, default=4)
    parser.add_argument("--log-file", default=REFERENCE_TRAIN_LOG)
    parser.add_argument("--stage", type=int, help="recorded in every log line of this run")
    parser.add_argument("--init", help="start from these weights (a second training stage)")
    parser.add_argument("--warmup", type=int, default=300, help="linear warm-up iterations")
    parser.add_argument("--sparsity", type=float, default=0.0,
                        help="L1 penalty S on prunable BatchNorm gammas (network slimming)")
    parser.add_argument("--sparsity-weighting", default="uniform", choices=WEIGHTINGS,
                        help="params: scale each layer's S by the parameters one of its channels "
                        "costs over the mean (MorphNet's parameter regulariser)")
    parser.add_argument("--gamma-lr-mult", type=float, default=1.0,
                        help="learning-rate multiplier of the prunable gammas")
    parser.add_argument("--distill", nargs="?", const="", metavar="PREFIX",
                        help="learn the teacher's class scores and confident box offsets too "
                        "(default teacher: the shipped dense reference)")
    parser.add_argument("--prune-to", type=float, metavar="SHARE",
                        help="gradual pruning: mask channels at the start of the first "
                        "--prune-steps epochs down to this share of the parameters")
    parser.add_argument("--prune-steps", type=int, default=5)
    parser.add_argument("--prune-criterion", default="gamma", choices=CRITERIA)
    parser.add_argument("--keep", choices=("best", "last"),
                        help="the epoch saved: best dev mAP, or the last (default: best; last "
                        "with --sparsity, whose later epochs are the sparser)")
    args = parser.parse_args()
    cpus.pin_threads()
    train(args)


def train(args):
    # the library imports mxnet at its top: imported here, once the threads are pinned
    from ssdq.compress.pruning.progressive import GradualPruningHook
    from ssdq.compress.pruning.sparsity import SparsityHook
    from ssdq.data.synthetic import ensure_synthetic
    from ssdq.train.distill import distill_hooks
    from ssdq.train.reference import train_reference

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    ensure_synthetic(args.data_root)
    hooks = [SparsityHook(args.sparsity, args.sparsity_weighting, args.gamma_lr_mult)] \
        if args.sparsity else []
    if args.prune_to:
        hooks.append(GradualPruningHook(args.prune_to, args.prune_steps,
                                        criterion=args.prune_criterion))
    hooks += distill_hooks(args.distill or None, enabled=args.distill is not None)
    pruned = bool(args.sparsity or args.prune_to)
    train_reference(args.data_root, args.out, epochs=args.epochs, batch_size=args.batch_size,
                    lr=args.lr, seed=args.seed, eval_every=args.eval_every,
                    log_file=args.log_file, init_params=args.init, warmup=args.warmup,
                    hooks=hooks, keep=args.keep or ("last" if pruned else "best"),
                    log_extra={"stage": args.stage} if args.stage else None)


if __name__ == "__main__":
    main()
