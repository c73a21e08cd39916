"""pareto_front on hand-made frames: dominated rows, ties, NaNs, a single row, the index kept."""

from __future__ import annotations

import math

import pandas as pd

from harness.analysis import pareto_front


def front(rows: list[tuple[float, float]], index: list | None = None) -> list[bool]:
    frame = pd.DataFrame(rows, columns=["speed", "memory"], index=index)
    result = pareto_front(frame, maximise="speed", minimise="memory")
    assert result.dtype == bool
    assert list(result.index) == list(frame.index)
    return result.tolist()


def test_dominated_rows_are_off_the_front() -> None:
    # (10, 5) beats (8, 6) on both; (12, 9) trades memory for speed; (12, 10) loses to (12, 9)
    assert front([(10, 5), (8, 6), (12, 9), (12, 10)]) == [True, False, True, False]


def test_better_in_one_and_equal_in_the_other_dominates() -> None:
    assert front([(10, 5), (10, 6), (9, 5)]) == [True, False, False]


def test_identical_points_are_both_on_the_front() -> None:
    assert front([(10, 5), (10, 5), (7, 7)]) == [True, True, False]


def test_rows_with_nan_are_off_the_front_and_dominate_nothing() -> None:
    nan = math.nan
    # (nan, 1) would beat (4, 2) on memory if a missing speed counted as anything
    assert front([(4, 2), (nan, 1), (20, nan), (3, 3)]) == [True, False, False, False]


def test_all_nan_gives_an_all_false_front() -> None:
    assert front([(math.nan, 1.0), (2.0, math.nan)]) == [False, False]


def test_a_single_row_is_its_own_front() -> None:
    assert front([(1.0, 100.0)]) == [True]


def test_an_empty_frame_gives_an_empty_series() -> None:
    assert front([]) == []


def test_the_frame_index_is_kept_not_reset() -> None:
    frame = pd.DataFrame({"speed": [1.0, 2.0], "memory": [1.0, 1.0]}, index=["slow", "fast"])
    result = pareto_front(frame, "speed", "memory")
    assert result.to_dict() == {"slow": False, "fast": True}
