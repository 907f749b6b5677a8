"""Network slimming and low rank: pruning recipes and their execution (``slimming``), the L1
sparsity penalty as a training hook (``sparsity``), truncated SVD of layers (``lowrank``) and the
pruning + low-rank + W8A8 study (``study``)."""
