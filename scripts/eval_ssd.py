"""Evaluate a checkpoint with pycocotools or VOC07 (the recipe's step 3); same flags as `ssdq eval`.

    python scripts/eval_ssd.py --model-prefix converted --batch-size 64 --num-workers 1

The `~~~~ MeanAP @ IoU=[0.50,0.95] ~~~~` block is in GluonCV's COCODetectionMetric convention
(three decimals, as the recipe's 24.059 is printed); pycocotools' own figure follows, labelled.
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ssdq.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["eval"] + sys.argv[1:]))
