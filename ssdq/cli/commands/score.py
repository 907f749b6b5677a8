"""ssdq score: score detections made anywhere (a COCO results list, or a dataset-shaped file
whose annotations carry scores) against any ground truth ssdq reads, with ``ssdq eval``'s own
scoring code: pycocotools' 12-number summary and per-class AP, GluonCV's convention, or VOC07
(11-point and all-point) for a VOC ground truth. Images are matched by id or by file name,
classes by id or by name; what matches nothing is counted and said."""
from ssdq.cli import flags

NAME = "score"
HELP = "score a detections file made by any tool"
PINS = False
DEFAULT_OUT = "reports/score.json"


def add_arguments(parser):
    parser.add_argument("--detections", required=True, metavar="FILE",
                        help="COCO results JSON ([{image_id, category_id, bbox, score}, ...]) "
                        "or a dataset file whose annotations carry scores")
    flags.data(parser, skip=("allow_size_mismatch",), batch=False)
    flags.add(parser, "--split", "--quiet")
    parser.add_argument("--out", default=DEFAULT_OUT, metavar="FILE",
                        help="the result's JSON (the Markdown goes beside it, same stem)")
