"""One accuracy criterion for every gate and target: an mAP that may fall at most so far below
a baseline, in absolute points or in percent of the baseline, its unit always said.

``ssdq compare --max-map-drop``, ``ssdq tune``'s budget and the studies' margins and targets
each had a unit of their own (points, relative %, points, relative %); they all take a
``Criterion`` now. On the command line ``0.5`` is the flag's own unit (its help says which),
``0.5pt`` points and ``1%`` percent of the baseline. Imports nothing heavy: the parser reads it.
"""
import argparse
import re
from dataclasses import dataclass

from ssdq.errors import SsdqError

POINTS, RELATIVE = "points", "relative"
_SPEC = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(%|pts?|points?)?\s*$")


def relative_drop_pct(baseline, value):
    """How far ``value`` falls below ``baseline``, in percent of the baseline (0 when the
    baseline is 0)."""
    return 100.0 * (baseline - value) / baseline if baseline else 0.0


@dataclass(frozen=True)
class Criterion:
    """``value`` in ``unit`` (``POINTS`` or ``RELATIVE``): how far an mAP may fall below its
    baseline."""

    value: float
    unit: str = POINTS

    def __post_init__(self):
        if self.unit not in (POINTS, RELATIVE):
            raise SsdqError("an accuracy criterion is in %s or %s, not %r"
                            % (POINTS, RELATIVE, self.unit))
        if not self.value >= 0:
            raise SsdqError("an accuracy criterion must be 0 or more, not %g" % self.value)

    @classmethod
    def parse(cls, text, default_unit=POINTS):
        """``"0.5"`` (``default_unit``), ``"0.5pt"`` / ``"0.5 points"``, ``"1%"``."""
        if isinstance(text, Criterion):
            return text
        match = _SPEC.match(str(text))
        if not match:
            raise SsdqError("bad accuracy criterion %r: a number of mAP points (0.5, 0.5pt) or "
                            "a percent of the baseline (1%%)" % (text,))
        suffix = match.group(2)
        unit = default_unit if suffix is None else RELATIVE if suffix == "%" else POINTS
        return cls(float(match.group(1)), unit)

    def drop(self, baseline, value):
        """How far ``value`` falls below ``baseline``, in this criterion's unit."""
        if self.unit == RELATIVE:
            return relative_drop_pct(baseline, value)
        return baseline - value

    def met(self, baseline, value):
        """Whether ``value`` is within the criterion of ``baseline`` (a hair of float slack)."""
        return self.drop(baseline, value) <= self.value + 1e-9

    def floor(self, baseline):
        """The lowest mAP that meets the criterion against ``baseline``."""
        if self.unit == RELATIVE:
            return baseline * (1 - self.value / 100.0)
        return baseline - self.value

    def describe(self):
        """``0.5 points`` or ``1% of the baseline``."""
        if self.unit == RELATIVE:
            return "%g%% of the baseline" % self.value
        return "%g points" % self.value

    def format_drop(self, baseline, value):
        """The drop as the criterion reads it: ``0.31 points`` or ``0.48%``."""
        drop = self.drop(baseline, value)
        return "%.2f%%" % drop if self.unit == RELATIVE else "%.3f points" % drop

    def to_dict(self):
        return {"value": self.value, "unit": self.unit}

    __str__ = describe


def criterion_type(default_unit):
    """An argparse ``type`` parsing a criterion whose bare number is in ``default_unit``."""
    def parse(text):
        try:
            return Criterion.parse(text, default_unit)
        except SsdqError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None
    parse.__name__ = "accuracy criterion"
    return parse
