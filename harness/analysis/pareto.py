"""Which rows are Pareto-optimal for one figure to maximise and one to minimise.

A technique that buys throughput with memory (or the reverse) is only worth a reader's
attention when no other combination beats it on both; the front is what remains after
every dominated row is dropped. Kept apart from any figure so it can be tested by hand.
"""

from __future__ import annotations

import numpy as np
import pandas as pd


def pareto_front(frame: pd.DataFrame, maximise: str, minimise: str) -> pd.Series:
    """True for each row no other row dominates, indexed like `frame`.

    Row j dominates row i when j's `maximise` >= i's and j's `minimise` <= i's, strictly
    better in at least one. Two identical rows do not dominate each other, so both stay on
    the front. A row with NaN (or inf) in either column is False and dominates nothing:
    an unmeasured figure is not a point.
    """
    high = frame[maximise].to_numpy(dtype=float)
    low = frame[minimise].to_numpy(dtype=float)
    measured = np.isfinite(high) & np.isfinite(low)
    high, low = high[measured], low[measured]
    # pairwise [j, i]: does row j dominate row i? O(n^2), fine for a run's few combinations
    at_least_as_good = (high[:, None] >= high[None, :]) & (low[:, None] <= low[None, :])
    strictly_better = (high[:, None] > high[None, :]) | (low[:, None] < low[None, :])
    dominated = (at_least_as_good & strictly_better).any(axis=0)
    on_front = np.zeros(len(frame), dtype=bool)
    on_front[np.flatnonzero(measured)] = ~dominated
    return pd.Series(on_front, index=frame.index, dtype=bool)
