"""What one side of a comparison measured, as a sample for `stats.ratio_of_medians`.

With two or more ok repeats, the sample is each repeat's figure. With one, a throughput or
step-time figure still has a sample: the measured window's step times (stored as the
`step_time_s` series), scaled so that their median is the trial's own figure. Any other
metric of a single repeat is one value, and its comparison has no interval.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from harness.analysis.stats import Estimate, finite, ratio_of_medians
from harness.analysis.trials import as_number

# per-step figures exist for these: time per step, and tokens per step over it
STEP_METRICS = {"step_time_s": 1, "tokens_per_s": -1}  # exponent of the step time


@dataclass(frozen=True)
class Sample:
    values: np.ndarray
    unit: str  # "repeats", "step times" or "value"


def metric_sample(trials: list[dict[str, Any]], metric: str) -> Sample:
    """The sample of `metric` over `trials` (one combination's repeats, export shape; with
    `series` when per-step samples are wanted). Only ok trials with a finite figure count."""
    figures = [(trial, as_number((trial.get("metrics") or {}).get(metric)))
               for trial in trials if trial["status"] == "ok"]
    figures = [(trial, value) for trial, value in figures if np.isfinite(value)]
    if len(figures) >= 2:
        return Sample(np.array([value for _, value in figures]), "repeats")
    if not figures:
        return Sample(np.array([]), "value")
    trial, value = figures[0]
    steps = finite((trial.get("series") or {}).get("step_time_s") or [])
    steps = steps[steps > 0]
    if metric in STEP_METRICS and len(steps) >= 2:
        scaled = (steps / np.median(steps)) ** STEP_METRICS[metric] * value
        return Sample(scaled, "step times")
    return Sample(np.array([value]), "value")


def compare_metric(treatment: list[dict[str, Any]], baseline: list[dict[str, Any]],
                   metric: str, *, seed: int = 0) -> Estimate:
    """Ratio of `metric` (treatment over baseline) with its interval and test."""
    t, b = metric_sample(treatment, metric), metric_sample(baseline, metric)
    unit = t.unit if t.unit == b.unit else f"{t.unit} / {b.unit}"
    return ratio_of_medians(t.values, b.values, seed=seed, unit=unit)
