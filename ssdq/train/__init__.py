"""Training: the one loop with hooks (``loop``), what it feeds the network (``augment``), and the
reference model's recipe (``reference``). Compression adds hooks (``compress``)."""
