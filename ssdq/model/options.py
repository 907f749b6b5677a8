"""What the command line needs of ``model/`` without loading MXNet: where the recipe's stages
write their checkpoints (the shipped weights' paths are ``weights``')."""
import os

MODEL_DIR = "model"
# where the recipe's stages write (relative to the working directory, on purpose: a run's
# outputs land in the folder it runs in)
CONVERTED_PREFIX = os.path.join(MODEL_DIR, "converted")
QUANTIZED_PREFIX = os.path.join(MODEL_DIR, "quantized")
