"""Timing: a forward pass's median img/s with its spread and latency percentiles, a loop's wall
and lap seconds and its img/s, and peak memory.

Every speed figure of ssdq is timed and computed with these helpers: ``ssdq bench`` (each scope,
the multi-instance runs), the eval loop's img/s and ``ssdq eval``'s speed. (How long a command or
a trial took is a duration, not a speed figure.)
"""
import math
import statistics
import threading
import time

import numpy as np
import psutil


def time_forward(forward, batch, warmup=2, repeats=5):
    """Median/min/max img/s and latency percentiles of ``forward(batch)``."""
    for _ in range(warmup):
        forward(batch)
    return summarize(len(batch), [timed(forward, batch) for _ in range(repeats)], warmup)


def summarize(images_per_run, seconds, warmup):
    rates = sorted(images_per_run / s for s in seconds)
    return {"batch_size": images_per_run, "repeats": len(seconds), "warmup": warmup,
            "images_per_sec": statistics.median(rates), "images_per_sec_min": rates[0],
            "images_per_sec_max": rates[-1], **latency_percentiles(seconds)}


class PeakRss:
    """Peak resident memory of this process and its child processes (the runtimes' workers)
    while the block runs (sampled every 5 ms)."""

    def __enter__(self):
        self._process = psutil.Process()
        self.start_mb = self.peak_mb = self._rss_mb()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _rss_mb(self):
        total = self._process.memory_info().rss
        for child in self._process.children(recursive=True):
            try:
                total += child.memory_info().rss
            except psutil.Error:  # it ended meanwhile
                pass
        return total / 2**20

    def _sample(self):
        while not self._stop.wait(0.005):
            self.peak_mb = max(self.peak_mb, self._rss_mb())

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak_mb = max(self.peak_mb, self._rss_mb())


def timed(run, data):
    """The seconds ``run(data)`` took."""
    return timed_call(run, data)[1]


def timed_call(run, data):
    """``(run(data), the seconds it took)``: ``run`` returns computed outputs, so the work is
    finished when it returns."""
    start = time.perf_counter()
    out = run(data)
    return out, time.perf_counter() - start


class Stopwatch:
    """The wall time of a ``with`` block: ``start`` and ``end`` (``time.perf_counter()``,
    CLOCK_MONOTONIC on Linux: one clock for every process of the host) and ``seconds``; inside
    it, ``lap()`` returns the seconds since the last lap (or the start)."""

    def __enter__(self):
        self.start = self._last = time.perf_counter()
        self.end = self.seconds = None
        return self

    def lap(self):
        now = time.perf_counter()
        seconds, self._last = now - self._last, now
        return seconds

    def __exit__(self, *exc):
        self.end = time.perf_counter()
        self.seconds = self.end - self.start


def per_second(count, seconds):
    """``count / seconds`` (images per second), 0.0 for no time."""
    return count / seconds if seconds else 0.0


def latency_percentiles(seconds):
    ms = np.array(seconds) * 1000
    return {"latency_ms_median": float(np.median(ms)), "latency_ms_min": float(ms.min()),
            "latency_ms_max": float(ms.max()),
            "latency_ms": {"p50": float(np.percentile(ms, 50)), "p90": float(np.percentile(ms, 90)),
                           "p99": float(np.percentile(ms, 99))}}


def nearest_rank(values, percent):
    """The nearest-rank percentile: the smallest value with at least ``percent`` % of the values
    at or below it (always one of the values, never an interpolation)."""
    ordered = sorted(values)
    rank = max(1, math.ceil(percent / 100 * len(ordered)))
    return ordered[rank - 1]


def nearest_rank_latency_ms(seconds):
    """p50/p90/p99 in milliseconds, nearest rank (what multi-instance launchers report)."""
    return {"p%d" % q: nearest_rank(seconds, q) * 1000 for q in (50, 90, 99)}
