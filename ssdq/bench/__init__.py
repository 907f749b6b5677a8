"""Benchmarks that write JSON: graphs timed in turns (``harness``), per-operator profiles
(``profile``), and the multi-instance benchmark (``multi_instance``, one ``instance`` process
each)."""
