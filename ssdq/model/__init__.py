"""The detector as files: the SSD networks (``ssd``), the weights ssdq ships (``weights``),
Gluon -> symbolic checkpoint with BatchNorm folded (``convert``), checkpoints and their meta
(``checkpoint``, ``meta`` for checkpoints ssdq did not write), the symbol graph as data
(``graph``), the SSD tail and its fast replacement (``tail``), and running a checkpoint on MXNet
(``predictor``)."""
