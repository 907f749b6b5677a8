"""ssdq: reproduce Intel's int8 results for GluonCV SSD-VGG16 on Xeon CPUs.

Stages, each a module that hands the next one files: ``data`` (datasets) -> ``convert``
(Gluon -> symbolic checkpoint) -> ``quantize`` (calibrate, oneDNN int8) -> ``evaluate``
(pycocotools / VOC07) -> ``report``; ``reproduce`` runs them all. ``cli`` only parses arguments.
"""
__version__ = "0.1.0"
