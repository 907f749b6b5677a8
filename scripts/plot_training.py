"""Plot a training log (``train.loop.fit``'s JSON lines) as mAP and loss per epoch, one curve per
stage, with the convergence check's fine-tuning beside it when given.

    python scripts/plot_training.py ssdq/model/weights/reference-train-log.jsonl \
        --check reports/control3-finetune.log.jsonl --out docs/images/reference-training.png
"""
import argparse
import json
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ssdq.fileio import figure  # noqa: E402

MAP_KEYS = ("dev_map", "val_map")


def read_log(path):
    """Log lines as dicts (a line may start with a logging timestamp before its JSON)."""
    with open(path) as f:
        return [json.loads(line[line.index("{"):]) for line in f if "{" in line]


def curves(lines):
    """{stage: {"epoch": [...], "map": {key: [(epoch, value)]}, "loss": [(epoch, loss)]}}, each
    stage's epochs counted on from where the previous stage stopped."""
    stages, offset, last_stage, last_epoch = {}, 0, None, 0
    for line in lines:
        stage = line.get("stage", 1)
        if stage != last_stage:
            offset, last_stage = offset + last_epoch, stage
            last_epoch = 0
        epoch = line.get("epoch", 0)
        last_epoch = max(last_epoch, epoch)
        entry = stages.setdefault(stage, {"map": {}, "loss": []})
        for key in MAP_KEYS:
            if key in line:
                entry["map"].setdefault(key, []).append((offset + epoch, line[key]))
        if "cls_loss" in line and "box_loss" in line and "iter" in line:
            entry["loss"].append((offset + epoch, line["cls_loss"] + line["box_loss"]))
    return stages, offset + last_epoch


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("log")
    parser.add_argument("--check", help="the convergence check's fine-tuning log, drawn after "
                        "the last stage")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    stages, end = curves(read_log(args.log))
    with figure(args.out, figsize=(10, 4.5), ncols=2) as (fig, (ax_map, ax_loss)):
        for stage, entry in stages.items():
            for key, points in entry["map"].items():
                ax_map.plot(*zip(*points), marker="o", ms=3,
                            label="stage %s, %s" % (stage, key.replace("_map", " mAP")))
            if entry["loss"]:
                ax_loss.plot(*zip(*entry["loss"]), lw=0.8, label="stage %s" % stage)
        if args.check:
            points = [(end + l["epoch"], l["val_map"]) for l in read_log(args.check)
                      if "val_map" in l]
            ax_map.plot(*zip(*points), marker="s", ms=4, color="black",
                        label="convergence check: +%d epochs, val mAP" % (len(points) - 1))
        ax_map.set(xlabel="epoch (all stages)", ylabel="mAP@[.5:.95] (%)",
                   title="mAP during training")
        ax_loss.set(xlabel="epoch (all stages)", ylabel="training loss (cls + box)",
                    title="loss", yscale="log")
        for ax in (ax_map, ax_loss):
            ax.grid(alpha=0.3)
            ax.legend(fontsize=8)
    print("wrote %s" % args.out)


if __name__ == "__main__":
    main()
