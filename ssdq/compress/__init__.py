"""Compression beyond the int8 recipe, each kind in its own module: number formats simulated in
fp32 (fake-quant), channel pruning, low-rank layers, and the studies that measure them."""
