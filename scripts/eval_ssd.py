"""Evaluate a checkpoint (fp32 or int8) with pycocotools (COCO) or the VOC07 metric.

The recipe's script name; it is `ssdq eval` with the same flags:

    python scripts/convert_model.py
    python scripts/quantize_ssd.py
    python scripts/eval_ssd.py --model-prefix model/converted --batch-size=64 --num-workers=1
    python scripts/eval_ssd.py --model-prefix model/quantized --batch-size=64 --num-workers=1
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from ssdq.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["eval"] + sys.argv[1:]))
