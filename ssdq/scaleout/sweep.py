"""Sweeps with stop rules on an engine: speculative waves whose outcome is the serial loop's.

A sweep is an ordered list of trials that ends after the first one its stop rule rejects (the
bit-width analysis stops after the first width below the error margin). The driver keeps that
rule: trials run in waves of ``engine.parallelism``, a sweep's later trials speculatively beside
its earlier ones, and the results are read back in order, so what a sweep reports is exactly
what the serial loop would have computed; trials that ran past a stop are dropped (their cost
shows in the engine's per-trial record, not in the figures).
"""


def run_sweeps(engine, fn, context, sweeps, progress=False, desc="sweeps", keep_going=None):
    """Run ``sweeps``, a list of ``(items, stop)``: ``fn(context, item)`` for each item in order
    until ``stop(value)`` is true (that item included; ``stop`` None: every item).

    Each wave takes the next items of the sweeps still open, in the order given, so the idle
    slots of a short sweep go to the next one. ``keep_going()``, asked before every wave, ends
    all sweeps where they are when it says False (a time limit). Returns ``(values, results)``:
    per sweep the values the serial loop computes, and the engine's result of every trial that
    ran, dropped ones included."""
    values = [[] for _ in sweeps]
    issued = [0] * len(sweeps)
    open_ = [bool(items) for items, _ in sweeps]
    ran = []
    while any(open_) and (keep_going is None or keep_going()):
        wave = []
        for s, (items, _) in enumerate(sweeps):
            while open_[s] and issued[s] < len(items) and len(wave) < engine.parallelism:
                wave.append((s, issued[s]))
                issued[s] += 1
        results = engine.map(fn, context, [sweeps[s][0][i] for s, i in wave], progress, desc)
        ran.extend(results)
        for (s, i), result in zip(wave, results):
            if not open_[s]:
                continue  # speculative: this sweep stopped at an earlier item of the wave
            items, stop = sweeps[s]
            values[s].append(result["value"])
            if (stop is not None and stop(result["value"])) or i == len(items) - 1:
                open_[s] = False
    return values, ran
