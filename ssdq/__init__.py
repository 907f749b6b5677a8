"""ssdq: reproduce Intel's int8 results for GluonCV SSD-VGG16 on Xeon CPUs, and compress and
deploy the detector.

Stages hand each other files (a checkpoint prefix, a report JSON): ``data`` (datasets) ->
``model`` (Gluon -> symbolic checkpoint) -> ``quant`` (calibrate, oneDNN int8) -> ``eval``
(pycocotools / VOC07) -> ``bench`` (timed in turns) -> ``report``; ``reproduce`` runs them all.
Beside them: ``train``, ``compress`` (formats, pruning), ``backends`` (ONNX Runtime, OpenVINO),
``host`` (pinning, NUMA), ``scaleout`` (Ray). ``cli`` only parses arguments; docs/architecture.md
draws the map.
"""
__version__ = "0.2.0"
