"""Image preprocessing shared by training, calibration and evaluation.

It follows gluoncv's ``SSDDefaultValTransform``: resize to the network input without keeping the
aspect ratio, RGB scaled to [0, 1], ImageNet mean/std, CHW layout. The normalisation stays
outside the exported graph and is recorded in each checkpoint's meta.json.
"""
import cv2
import numpy as np

INPUT_SIZE = 300
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)

_MEAN = np.array(MEAN, np.float32) * 255
_INV_STD = 1.0 / (np.array(STD, np.float32) * 255)


def resize(img, size=INPUT_SIZE):
    """Resize an HWC image to size x size (area filter when shrinking, as gluoncv's interp=9)."""
    h, w = img.shape[:2]
    interp = cv2.INTER_AREA if h * w > size * size else cv2.INTER_CUBIC
    return cv2.resize(img, (size, size), interpolation=interp)


def normalize(img):
    """HWC uint8 RGB at network size -> CHW float32, mean/std normalised."""
    return ((img.astype(np.float32) - _MEAN) * _INV_STD).transpose(2, 0, 1)


def preprocess(img, size=INPUT_SIZE):
    return normalize(resize(img, size))


class InputFormat:
    """What a checkpoint's ``data`` input takes, decided once from its (possibly inferred) meta.

    ssdq's own checkpoints take NCHW, ImageNet-normalised RGB. A graph exported with GluonCV's
    ``export_block(preprocess=True)`` holds the normalisation (and an HWC->CHW transpose) itself
    and takes the resized RGB image as it is, 0..255, NHWC: feeding it a normalised batch would
    normalise twice.
    """

    def __init__(self, meta_input=None):
        meta_input = meta_input or {}
        self.in_graph = bool(meta_input.get("preprocessing_in_graph", False))
        self.layout = meta_input.get("layout", "NCHW")
        self.size = int((meta_input.get("shape") or [1, 3, INPUT_SIZE, INPUT_SIZE])[2])

    def shape(self, batch_size):
        if self.layout == "NHWC":
            return (batch_size, self.size, self.size, 3)
        return (batch_size, 3, self.size, self.size)

    def __call__(self, img):
        """A decoded RGB image (HWC uint8, any size) -> one input of the graph."""
        return self.from_resized(resize(img, self.size)[None])[0]

    def from_resized(self, batch):
        """Resized RGB images (N, H, W, 3) uint8 -> a float32 batch the graph takes."""
        if self.in_graph:
            batch = batch.astype(np.float32)
            return batch if self.layout == "NHWC" else batch.transpose(0, 3, 1, 2)
        return np.stack([normalize(img) for img in batch])

    def describe(self):
        if self.in_graph:
            return "%s RGB 0..255 (normalisation in the graph)" % self.layout
        return "NCHW RGB, ImageNet mean/std"
