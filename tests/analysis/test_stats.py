"""The comparison statistics: bootstrap intervals cover the truth at about the stated rate,
degenerate samples say they have no interval, Mann–Whitney behaves at its edges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis.samples import compare_metric, metric_sample
from harness.analysis.stats import mann_whitney_p, ratio_of_medians


def test_the_bootstrap_interval_covers_a_known_ratio_at_about_the_stated_rate():
    rng = np.random.default_rng(7)
    true_ratio, hits, runs = 1.25, 0, 300
    for index in range(runs):
        baseline = rng.lognormal(0.0, 0.2, 30)  # median 1
        treatment = rng.lognormal(math.log(true_ratio), 0.2, 30)  # median 1.25
        estimate = ratio_of_medians(treatment, baseline, resamples=999, seed=index)
        hits += estimate.low <= true_ratio <= estimate.high
    assert 0.88 <= hits / runs <= 0.99  # stated 95%; percentile bootstrap of medians, n = 30


def test_a_single_value_per_side_has_no_interval_and_no_test():
    estimate = ratio_of_medians([3.0], [2.0])
    assert (estimate.point, estimate.low, estimate.high) == (1.5, 1.5, 1.5)
    assert not estimate.has_interval and math.isnan(estimate.p_value)
    assert estimate.basis == "one value per side: no interval"


def test_one_single_value_against_a_sample_resamples_the_sample_alone():
    estimate = ratio_of_medians([2.0], [0.9, 1.0, 1.1, 1.0, 0.95, 1.05], unit="step times")
    assert estimate.has_interval
    assert estimate.low < 2.0 < estimate.high
    assert 1.7 < estimate.low and estimate.high < 2.3


def test_identical_values_give_an_exact_ratio():
    estimate = ratio_of_medians([2.0, 2.0, 2.0], [1.0, 1.0])
    assert (estimate.low, estimate.point, estimate.high) == (2.0, 2.0, 2.0)
    assert estimate.significant(1.0)


def test_mann_whitney_needs_two_values_a_side_and_something_to_rank():
    assert math.isnan(mann_whitney_p([1.0], [2.0, 3.0]))
    assert math.isnan(mann_whitney_p([1.0, 1.0], [1.0, 1.0]))
    assert mann_whitney_p(range(10), range(100, 110)) < 1e-3
    assert mann_whitney_p([1, 3, 5, 7], [2, 4, 6, 8]) > 0.5


def test_significance_is_the_test_or_an_interval_that_excludes_no_effect():
    apart = ratio_of_medians(np.linspace(1.9, 2.1, 20), np.linspace(0.9, 1.1, 20))
    assert apart.significant(1.0) and apart.p_value < 1e-6
    same = ratio_of_medians(np.linspace(0.9, 1.1, 20), np.linspace(0.9, 1.1, 21))
    assert not same.significant(1.0)


def test_a_single_repeat_samples_its_step_times_around_its_own_figure():
    trial = {"status": "ok", "metrics": {"tokens_per_s": 1000.0, "step_time_s": 0.2},
             "series": {"step_time_s": [0.1, 0.2, 0.4]}}
    tokens = metric_sample([trial], "tokens_per_s")
    assert tokens.unit == "step times"
    assert tokens.values.tolist() == pytest.approx([2000.0, 1000.0, 500.0])
    assert metric_sample([trial], "step_time_s").values.tolist() == [0.1, 0.2, 0.4]
    assert metric_sample([trial], "peak_memory_bytes").values.size == 0


def test_repeats_are_the_sample_when_there_are_two_or_more():
    trials = [{"status": s, "metrics": {"tokens_per_s": v}} for s, v in
              (("ok", 10.0), ("ok", 12.0), ("failed", 99.0), ("ok", float("nan")))]
    sample = metric_sample(trials, "tokens_per_s")
    assert (sample.unit, sample.values.tolist()) == ("repeats", [10.0, 12.0])
    estimate = compare_metric(trials, [{"status": "ok", "metrics": {"tokens_per_s": 5.0}}], "tokens_per_s")
    assert estimate.point == pytest.approx(2.2)
