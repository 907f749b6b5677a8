"""The compression studies of the reference work: low-bit number formats, simulated and checked
against the real int8 path (``formats``), and channel pruning, sparsity training and low-rank
layers (``pruning``), each with its study; ``layers`` chooses which layers a variant touches."""
