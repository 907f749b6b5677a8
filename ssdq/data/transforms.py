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
