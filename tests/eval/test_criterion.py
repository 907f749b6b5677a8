"""One accuracy criterion: points or percent of the baseline, parsed, met and said the same way
by every gate."""
import pytest

from ssdq.errors import SsdqError
from ssdq.eval.criterion import POINTS, RELATIVE, Criterion


def test_a_bare_number_takes_the_flags_own_unit_and_suffixes_override_it():
    assert Criterion.parse("0.5") == Criterion(0.5, POINTS)
    assert Criterion.parse("0.5", RELATIVE) == Criterion(0.5, RELATIVE)
    assert Criterion.parse("1%") == Criterion(1.0, RELATIVE)
    assert Criterion.parse("0.3pt", RELATIVE) == Criterion(0.3, POINTS)
    assert Criterion.parse(" 2 points ") == Criterion(2.0, POINTS)
    for bad in ("x", "-1", "1%%", "", "0.5 mAP"):
        with pytest.raises(SsdqError, match="bad accuracy criterion"):
            Criterion.parse(bad)


def test_points_and_percent_read_the_same_drop_differently():
    points, relative = Criterion(0.5), Criterion(1.0, RELATIVE)
    assert points.met(64.8, 64.3) and not points.met(64.8, 64.29)
    assert relative.floor(64.81) == pytest.approx(64.1619)
    assert relative.met(64.81, 64.17) and not relative.met(64.81, 64.16)
    assert points.format_drop(64.8, 64.5) == "0.300 points"
    assert relative.format_drop(50.0, 49.5) == "1.00%"
    assert str(points) == "0.5 points" and str(relative) == "1% of the baseline"
    assert relative.met(0.0, 0.0)  # a zero baseline: no relative drop to speak of
