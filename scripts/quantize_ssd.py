"""Calibrate and quantize to oneDNN int8 (the recipe's step 2); same flags as `ssdq quantize`.

    python scripts/quantize_ssd.py                      # model/converted -> model/quantized
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ssdq.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["quantize"] + sys.argv[1:]))
