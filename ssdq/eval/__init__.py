"""Scoring: the one detection loop (``loop``), COCO and VOC07 metrics behind one interface
(``metrics``), a checkpoint's evaluation as ``ssdq eval`` reports it (``evaluate``), sharded
evaluation on a scale-out engine (``sharded``), and fp32/int8 across runtimes (``runtimes``)."""
