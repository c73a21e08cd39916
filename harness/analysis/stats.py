"""Noise-aware comparison of two samples: a ratio of medians with a bootstrap confidence
interval, and a Mann–Whitney U test. Pure numbers in, numbers out; no rendering.

A sample is what one side measured: the figure of each repeat, or, with a single repeat, the
per-step figures of its measured window (so one run still yields an interval). A difference is
called only when it is significant: the Mann–Whitney p-value is below `alpha`, or the ratio's
interval excludes 1 (asv's rule, and the issue's). Where a side has one value there is no
interval and no test: the estimate says so in `basis`, and its interval is the point itself.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
RESAMPLES = 4000


@dataclass(frozen=True)
class Estimate:
    """A figure with its confidence interval; `low == high == point` when there is none."""

    point: float
    low: float
    high: float
    basis: str  # how the interval was made, in words: "bootstrap over 3 vs 3 repeats"
    p_value: float = math.nan  # Mann–Whitney, two-sided; NaN when not testable
    has_interval: bool = True

    def excludes(self, value: float) -> bool:
        return self.has_interval and not (self.low <= value <= self.high)

    def significant(self, null: float, alpha: float = ALPHA) -> bool:
        """A difference from `null` is called: the test or the interval says so."""
        return (not math.isnan(self.p_value) and self.p_value < alpha) or self.excludes(null)

    def map(self, fn, basis: str | None = None) -> Estimate:
        """The same estimate through a monotone function (e.g. 1 - r, 1 / r); the interval's
        ends are reordered when `fn` decreases."""
        low, high = sorted((fn(self.low), fn(self.high)))
        return Estimate(fn(self.point), low, high, basis or self.basis, self.p_value,
                        self.has_interval)


def finite(values) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def ratio_of_medians(treatment, baseline, *, confidence: float = CONFIDENCE,
                     resamples: int = RESAMPLES, seed: int = 0, unit: str = "values") -> Estimate:
    """median(treatment) / median(baseline), with a percentile bootstrap interval that
    resamples each side independently (scipy.stats.bootstrap), and the Mann–Whitney p-value.
    `unit` names what a sample holds ("repeats", "step times"), for `basis`."""
    t, b = finite(treatment), finite(baseline)
    if not len(t) or not len(b):
        return Estimate(math.nan, math.nan, math.nan, "no values", has_interval=False)
    point = float(np.median(t) / np.median(b))
    if len(t) < 2 and len(b) < 2:
        return Estimate(point, point, point, "one value per side: no interval", has_interval=False)
    basis = f"bootstrap over {len(t)} vs {len(b)} {unit}"
    p_value = mann_whitney_p(t, b)
    if np.ptp(t) == 0 and np.ptp(b) == 0:  # identical values: the ratio is exact
        return Estimate(point, point, point, basis + " (identical values)", p_value)
    rng = np.random.default_rng(seed)
    if len(t) < 2 or len(b) < 2:  # one side is a single value: resample the other alone
        varied, fixed, on_top = (b, float(t[0]), True) if len(t) < 2 else (t, float(b[0]), False)
        result = stats.bootstrap((varied,), lambda x, axis: np.median(x, axis=axis),
                                 confidence_level=confidence, n_resamples=resamples,
                                 method="percentile", rng=rng)
        ends = result.confidence_interval
        low, high = sorted((fixed / ends.low, fixed / ends.high) if on_top
                           else (ends.low / fixed, ends.high / fixed))
        return Estimate(point, float(low), float(high), basis, p_value)
    result = stats.bootstrap(
        (t, b), lambda x, y, axis: np.median(x, axis=axis) / np.median(y, axis=axis),
        confidence_level=confidence, n_resamples=resamples, method="percentile",
        paired=False, vectorized=True, rng=rng)
    ends = result.confidence_interval
    return Estimate(point, float(ends.low), float(ends.high), basis, p_value)


def mann_whitney_p(a, b) -> float:
    """Two-sided Mann–Whitney U p-value; NaN when a side has fewer than two values or
    every value is the same (nothing to rank)."""
    a, b = finite(a), finite(b)
    if len(a) < 2 or len(b) < 2 or np.ptp(np.concatenate([a, b])) == 0:
        return math.nan
    return float(stats.mannwhitneyu(a, b, alternative="two-sided").pvalue)
