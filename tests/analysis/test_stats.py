"""The decision rule's arithmetic: Welch's t on log figures agrees with scipy's, the interval
and the test are one rule, and the cases with no test say so."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from harness.analysis.samples import compare_metric, metric_sample
from harness.analysis.stats import ONE_RUN, ONE_SEED, RunNoise, log_ratio, minimum_detectable_change, repeats_needed


def test_the_p_value_is_welchs_t_test_on_the_logs():
    rng = np.random.default_rng(3)
    t, b = rng.lognormal(0.1, 0.05, 5), rng.lognormal(0.0, 0.08, 4)
    estimate = log_ratio(t, b)
    reference = scipy_stats.ttest_ind(np.log(t), np.log(b), equal_var=False)
    assert estimate.p_value == pytest.approx(reference.pvalue, rel=1e-9)
    assert estimate.point == pytest.approx(math.exp(np.log(t).mean() - np.log(b).mean()))
    assert estimate.basis == "Welch t over 5 vs 4 repeats"


def test_the_interval_excludes_one_exactly_when_p_is_below_five_percent():
    rng = np.random.default_rng(11)
    for _ in range(300):
        t, b = rng.lognormal(rng.normal(0, 0.05), 0.05, 3), rng.lognormal(0, 0.05, 3)
        estimate = log_ratio(t, b)
        assert estimate.significant == (not estimate.low <= 1.0 <= estimate.high)


def test_the_interval_covers_a_known_ratio_at_the_stated_rate():
    rng = np.random.default_rng(7)
    covered = 0
    for _ in range(1000):
        estimate = log_ratio(rng.lognormal(math.log(1.25), 0.1, 5), rng.lognormal(0, 0.1, 5))
        covered += estimate.low <= 1.25 <= estimate.high
    assert 0.93 <= covered / 1000 <= 0.985  # stated 95%; Welch's df errs on the safe side


def test_one_run_per_side_is_no_test_and_gives_the_point():
    estimate = log_ratio([3.0], [2.0])
    assert estimate.point == pytest.approx(1.5)
    assert (estimate.tested, estimate.significant, estimate.basis) == (False, False, ONE_RUN)
    assert estimate.low == estimate.high == estimate.point
    assert log_ratio([3.0], [2.0], unit="seeds").basis == ONE_SEED
    assert log_ratio([3.0], [2.0, 2.1, 1.9]).basis == "1 vs 3 repeats: too few for a test"


def test_stored_noise_turns_one_run_per_side_into_a_test_named_by_its_basis():
    noise = RunNoise(0.02, 12, "6 earlier runs of nightly on this machine")
    apart = log_ratio([1.3], [1.0], noise=noise)
    assert apart.tested and apart.significant
    z = math.log(1.3) / (0.02 * math.sqrt(2))
    assert apart.p_value == pytest.approx(2 * scipy_stats.t.sf(z, 12))
    assert "run-to-run noise of 6 earlier runs of nightly on this machine (σ 2.0%, 12 df)" in apart.basis
    close = log_ratio([1.01], [1.0], noise=noise)
    assert close.tested and not close.significant
    assert log_ratio([1.0], [1.0], noise=RunNoise(0.0, 8, "x")).exact


def test_identical_repeats_and_counted_figures_are_exact():
    repeated = log_ratio([2.0, 2.0, 2.0], [1.0, 1.0])
    assert repeated.exact and repeated.significant and repeated.point == pytest.approx(2.0)
    assert repeated.basis == "identical in every run (3 vs 2 repeats): exact"
    assert not log_ratio([1.0, 1.0], [1.0, 1.0]).significant  # exactly no difference
    counted = log_ratio([0.25], [1.0], counted=True)
    assert counted.exact and counted.basis == "counted, not timed: exact"
    assert not log_ratio([0.25], [1.0]).tested  # the same numbers, timed: one run, no test


def test_figures_at_or_below_zero_have_no_ratio_test():
    estimate = log_ratio([0.0, 1.0], [1.0, 2.0])
    assert not estimate.tested and "at or below zero" in estimate.basis


def test_derived_measures_keep_the_test():
    estimate = log_ratio([0.3, 0.31, 0.29], [1.0, 1.02, 0.98]).map(lambda r: 1 - r)
    assert estimate.low < estimate.point < estimate.high
    assert estimate.point == pytest.approx(0.7, abs=0.01) and estimate.significant


def trial(value: float, *, metric: str = "tokens_per_s", repeat: int = 0, seed: int = 0,
          status: str = "ok", busy: bool = False, steps: list[float] | None = None) -> dict:
    return {"name": f"x #{repeat}", "status": status, "metrics": {metric: value},
            "spec": {"train": {"seed": seed}}, "params": {"repeat": repeat},
            "series": {"step_time_s": steps or []},
            "warnings": [{"code": "machine-busy", "message": "others used 40%"}] if busy else []}


def test_per_step_times_are_never_samples():
    one = [trial(1000.0, steps=[0.1, 0.2, 0.4, 0.1, 0.1])]
    sample = metric_sample(one, "tokens_per_s")
    assert (sample.unit, sample.values.tolist()) == ("repeats", [1000.0])
    estimate = compare_metric([trial(500.0, steps=[0.2] * 40)], [trial(1000.0, steps=[0.1] * 40)],
                              "tokens_per_s")
    assert not estimate.tested and estimate.basis == ONE_RUN


def test_repeats_of_one_seed_are_one_value_of_a_trained_figure():
    trials = [trial(v, metric="eval_loss", repeat=r) for r, v in enumerate((3.0, 3.0, 3.1))]
    sample = metric_sample(trials, "eval_loss")
    assert (sample.unit, sample.values.tolist()) == ("seeds", [3.0])
    seeds = [trial(v, metric="eval_loss", seed=s) for s, v in enumerate((3.0, 3.2, 3.1))]
    assert sorted(metric_sample(seeds, "eval_loss").values.tolist()) == [3.0, 3.1, 3.2]


def test_busy_trials_are_left_out_and_a_side_of_only_busy_ones_is_inconclusive():
    quiet = [trial(v, repeat=r) for r, v in enumerate((100.0, 101.0, 99.0))]
    busy = trial(50.0, repeat=3, busy=True)
    sample = metric_sample([*quiet, busy], "tokens_per_s")
    assert sorted(sample.values.tolist()) == [99.0, 100.0, 101.0] and sample.left_out_busy == 1
    estimate = compare_metric([*quiet, busy], [trial(v, repeat=r) for r, v in enumerate((100.0, 100.5, 99.5))],
                              "tokens_per_s")
    assert estimate.tested and estimate.caveat == "1 treatment run left out: machine busy"
    all_busy = compare_metric([trial(50.0, busy=True), trial(52.0, repeat=1, busy=True)], quiet,
                              "tokens_per_s")
    assert all_busy.busy and not all_busy.tested and not all_busy.significant
    assert all_busy.point == pytest.approx(51.0 / 100.0)  # shown for information


def test_failed_and_nan_trials_do_not_count():
    trials = [trial(10.0), trial(12.0, repeat=1), trial(99.0, repeat=2, status="failed"),
              trial(float("nan"), repeat=3)]
    assert sorted(metric_sample(trials, "tokens_per_s").values.tolist()) == [10.0, 12.0]


def test_the_repeats_needed_follow_from_the_noise():
    assert repeats_needed(1.10, 0.02) == 3
    assert repeats_needed(1.10, 0.03) <= 5 < repeats_needed(1.10, 0.06)
    assert repeats_needed(1.10, 0.5) is None
    assert minimum_detectable_change(0.03, 5) < 0.10 < minimum_detectable_change(0.10, 5)
