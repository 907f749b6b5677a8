"""ssdq.scaleout.sweep: speculative waves report exactly what the serial loop computes."""
from ssdq.scaleout.engine import LocalEngine
from ssdq.scaleout.sweep import run_sweeps


class Waves(LocalEngine):
    """Runs serially but reports a parallelism: the sweeps plan waves of that many trials."""

    def __init__(self, parallelism):
        self.parallelism = parallelism
        self.waves = []

    def map(self, fn, context, items, progress=False, desc="trials"):
        self.waves.append(list(items))
        return super().map(fn, context, items, progress, desc)


def _score(context, item):
    return context[item]


SCORES = {("conv", 16): 70, ("conv", 8): 69, ("conv", 4): 60, ("conv", 2): 5, ("conv", 1): 0,
          ("act", 16): 70, ("act", 8): 50, ("act", 4): 40, ("act", 2): 1, ("act", 1): 0,
          ("check", 0): 66, ("check", 1): 65}


def _sweeps():
    def failing(m):
        return m < 68

    return [([("conv", b) for b in (16, 8, 4, 2, 1)], failing),
            ([("act", b) for b in (16, 8, 4, 2, 1)], failing),
            ([("check", 0), ("check", 1)], None)]


def test_waves_stop_where_the_serial_loop_stops():
    serial, serial_ran = run_sweeps(LocalEngine(), _score, SCORES, _sweeps())
    assert serial == [[70, 69, 60], [70, 50], [66, 65]]  # each sweep ends at its first failure
    assert len(serial_ran) == 7
    for parallelism in (2, 3, 4, 16):
        engine = Waves(parallelism)
        values, ran = run_sweeps(engine, _score, SCORES, _sweeps())
        assert values == serial, parallelism
        assert all(len(wave) <= parallelism for wave in engine.waves)
        assert len(ran) == sum(len(wave) for wave in engine.waves) >= len(serial_ran)


def test_waves_fill_idle_slots_with_the_next_sweep_and_drop_what_ran_past_a_stop():
    engine = Waves(4)
    values, ran = run_sweeps(engine, _score, SCORES, _sweeps())
    assert engine.waves[0] == [("conv", 16), ("conv", 8), ("conv", 4), ("conv", 2)]
    # conv stopped at 4 bits inside the first wave: its 2-bit trial ran but is not reported
    assert engine.waves[1] == [("act", 16), ("act", 8), ("act", 4), ("act", 2)]
    assert engine.waves[2] == [("check", 0), ("check", 1)]
    assert [r["value"] for r in ran][:4] == [70, 69, 60, 5] and values[0] == [70, 69, 60]


def test_a_sweep_without_a_stop_runs_every_item_and_empty_sweeps_are_skipped():
    values, ran = run_sweeps(Waves(3), _score, SCORES,
                             [([], lambda m: True), ([("check", 0), ("check", 1)], None)])
    assert values == [[], [66, 65]] and len(ran) == 2
