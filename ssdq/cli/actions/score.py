"""What ``ssdq score`` does; its flags are ``cli/commands/score.py``'s."""
import os

from ssdq.data.options import DataOptions
from ssdq.data.source import open_data
from ssdq.eval.score import read_detections, score_detections
from ssdq.fileio import write_artifacts
from ssdq.report.score import markdown, summary_lines


def run(args, context):
    dets = read_detections(args.detections)  # a bad file fails before the ground truth loads
    dataset = open_data(DataOptions.from_args(args), args.split, context.progress,
                        require_images=False)
    result = score_detections(dets, dataset)
    print("\n".join(summary_lines(result)))
    stem = args.out[:-len(".json")] if args.out.endswith(".json") else args.out
    os.makedirs(os.path.dirname(os.path.abspath(stem)), exist_ok=True)
    paths = write_artifacts(stem, result, markdown(result))
    print("wrote %s" % ", ".join(paths))
