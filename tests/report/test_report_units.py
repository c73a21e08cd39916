import math

import pytest

from harness.report import units


@pytest.mark.parametrize(("value", "text"), [
    (812.4, "812"), (79767.9, "79.8 k"), (1_234_567, "1.23 M"), (math.nan, "—"), (None, "—"),
    (math.inf, "inf")])
def test_tokens_per_s(value, text):
    assert units.tokens_per_s(value) == text


@pytest.mark.parametrize(("value", "text"), [
    (512, "0.5 KiB"), (10052612, "9.6 MiB"), (1.5 * 2**30, "1.50 GiB"), (40 * 2**30, "40.00 GiB"),
    (0.0, "0.0 KiB"), (math.nan, "—")])
def test_size(value, text):
    assert units.size(value) == text


def test_step_time_gives_the_spread_in_the_median_unit():
    assert units.step_time(0.012355, 0.011640, 0.013279) == "12.4 ms (11.6–13.3)"
    assert units.step_time(2.5, 2.0, 3.0) == "2.50 s (2.00–3.00)"
    assert units.step_time(0.012, math.nan, 0.013) == "12.0 ms"
    assert units.step_time(math.nan, 0.1, 0.2) == "—"


def test_ratio_loss_and_plain():
    assert units.ratio(1.5) == "1.50×" and units.ratio(math.nan) == "—"
    assert units.loss(2.9136) == "2.914" and units.loss(None) == "—"
    assert units.plain(True) == "true" and units.plain(None) == "—" and units.plain(132864) == "132,864"
