"""Time a forward function on a fixed batch: warm-up, repeated runs, median and spread.

The machine is shared and noisy, so each figure is the median of ``repeats`` timed runs after
``warmup`` untimed ones (oneDNN creates its primitives and reorders int8 weights on the first
run), and comparisons are ratios taken within one process.
"""
import statistics
import time


def time_forward(forward, batch, warmup=2, repeats=5):
    for _ in range(warmup):
        forward(batch)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        forward(batch)  # returns numpy arrays, so the work is finished when it returns
        seconds.append(time.perf_counter() - start)
    n = len(batch)
    rates = sorted(n / s for s in seconds)
    return {"batch_size": n, "repeats": repeats, "warmup": warmup,
            "images_per_sec": statistics.median(rates), "images_per_sec_min": rates[0],
            "images_per_sec_max": rates[-1],
            "latency_ms_median": statistics.median(seconds) * 1000}
