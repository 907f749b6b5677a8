"""Convert a Gluon SSD (default: the embedded reference model) into model/converted-{symbol.json,0000.params,meta.json}.

The recipe's script name; it is `ssdq convert` with the same flags:

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
    sys.exit(main(["convert"] + sys.argv[1:]))
