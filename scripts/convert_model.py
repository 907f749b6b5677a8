"""Convert a Gluon SSD into a symbolic checkpoint (the recipe's step 1); same flags as `ssdq convert`.

    python scripts/convert_model.py                     # the reference model -> model/converted
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from ssdq.cli.main import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main(["convert"] + sys.argv[1:]))
