"""Noise from earlier runs: how a run's figure varies (drift between runs and jitter between a
run's repeats, apart), and what a comparison of two runs makes of it."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats as scipy_stats

from harness.analysis.noise import repeat_noise, run_noise
from harness.analysis.stats import (
    DRIFT_UNKNOWN,
    OTHER_MACHINES,
    DriftNoise,
    RunNoise,
    log_ratio,
    log_ratio_between_runs,
)


def run(*speeds: float, name: str = "bf16", busy: int = 0) -> list[dict]:
    """One earlier run's trials of one combination: a repeat per speed, the first `busy` of
    them measured on a busy machine."""
    return [{"name": f"{name} #{i}", "status": "ok", "metrics": {"tokens_per_s": s},
             "warnings": [{"code": "machine-busy", "message": "load 7"}] if i < busy else []}
            for i, s in enumerate(speeds)]


def test_run_noise_splits_the_drift_between_runs_from_the_jitter_between_repeats():
    runs = [run(100, 110), run(120, 120), run(90, 100, 110)]
    noise = run_noise(runs, "tokens_per_s", "3 earlier runs")
    means = [np.mean(np.log([100, 110])), math.log(120), np.mean(np.log([90, 100, 110]))]
    assert noise.run_variance == pytest.approx(np.var(means, ddof=1))
    assert noise.run_df == 2  # three runs, less one
    assert noise.repeats == pytest.approx(3 / (1 / 2 + 1 / 2 + 1 / 3))  # harmonic mean
    squares = (np.var(np.log([100, 110])) * 2 + np.var(np.log([90, 100, 110])) * 3)
    assert noise.within == pytest.approx(math.sqrt(squares / 4))  # 1 + 1 + 2 df
    assert noise.within_df == 4
    assert noise.drift == pytest.approx(math.sqrt(noise.run_variance - noise.within**2 / noise.repeats))


def test_run_noise_leaves_out_busy_repeats_and_needs_three_runs():
    runs = [run(100, 50, busy=1), run(101), run(99)]
    noise = run_noise(runs, "tokens_per_s", "x")
    assert noise.repeats == 1 and noise.within_df == 0  # the busy 100 is gone
    assert noise.run_variance == pytest.approx(np.var(np.log([50, 101, 99]), ddof=1))
    assert run_noise(runs[:2], "tokens_per_s", "x") is None
    assert run_noise(runs, "peak_memory_bytes", "x") is None  # counted figures have no noise


def test_the_degrees_of_freedom_never_exceed_the_runs_less_one():
    # two combinations in each of three runs: 4 pooled df, but the runs drift together
    runs = [run(100, name="a") + run(50, name="b"), run(104, name="a") + run(52, name="b"),
            run(98, name="a") + run(49, name="b")]
    assert run_noise(runs, "tokens_per_s", "x").run_df == 2
    # three runs, but only two of them measured the one combination seen twice: 1 df, too few
    apart = [run(100, name="a"), run(104, name="a"), run(50, name="b")]
    assert run_noise(apart, "tokens_per_s", "x") is None


def test_a_run_of_fewer_quiet_repeats_than_usual_is_judged_as_the_noisier_run_it_is():
    noise = DriftNoise(run_variance=0.02**2 + 0.10**2 / 5, run_df=5, repeats=5, within=0.10,
                       within_df=40, basis="6 earlier runs")
    assert noise.drift == pytest.approx(0.02)
    assert noise.variance_of_difference(5, 5) == pytest.approx(2 * noise.run_variance)
    assert noise.variance_of_difference(1, 5) == pytest.approx(2 * 0.02**2 + 0.10**2 * (1 + 1 / 5))
    # more repeats than the earlier runs had earn no credit: never below 2·V_m
    assert noise.variance_of_difference(20, 20) == pytest.approx(2 * noise.run_variance)
    # a difference that five quiet repeats would make significant is not, from one repeat
    apart = 1.25
    full = log_ratio_between_runs([apart] * 5, [1.0] * 5, noise=noise)
    single = log_ratio_between_runs([apart], [1.0] * 5, noise=noise)
    assert full.significant and not single.significant
    z = math.log(apart) / math.sqrt(noise.variance_of_difference(1, 5))
    assert single.p_value == pytest.approx(2 * scipy_stats.t.sf(z, 5))
    assert "runs σ" in single.basis and "repeats σ 10.0%" in single.basis and "5 df" in single.basis


def test_with_single_repeats_before_the_run_variance_is_all_there_is():
    noise = DriftNoise(run_variance=0.03**2, run_df=4, repeats=1, within=0.0, within_df=0, basis="x")
    assert noise.variance_of_difference(1, 1) == noise.variance_of_difference(5, 3) == pytest.approx(2 * 0.03**2)


def test_figures_that_never_varied_before_are_exact_only_while_they_still_do_not():
    still = DriftNoise(0.0, 4, 5, 0.0, 20, "5 earlier runs")
    assert log_ratio_between_runs([2.0, 2.0], [1.0, 1.0], noise=still).exact
    varying = log_ratio_between_runs([2.0, 2.1], [1.0, 1.0], noise=still)
    assert not varying.tested and "never varied, these runs do: no test" in varying.basis
    # identical repeats inside each run, but earlier runs drifted: tested, not exact
    drifting = DriftNoise(0.05**2, 4, 5, 0.0, 20, "5 earlier runs")
    same_inside = log_ratio_between_runs([1.02] * 3, [1.0] * 3, noise=drifting)
    assert same_inside.tested and not same_inside.exact and not same_inside.significant
    # with no earlier runs at all, identical repeats keep their exactness; varying ones no test
    assert log_ratio_between_runs([2.0, 2.0], [1.0, 1.0], noise=None).exact
    assert log_ratio_between_runs([2.0, 2.1], [1.0, 1.1], noise=None).basis == DRIFT_UNKNOWN
    # counted figures are exact whatever the earlier runs did, on whatever machines
    assert log_ratio_between_runs([2.0], [1.0], noise=drifting, counted=True).exact
    assert log_ratio_between_runs([2.0], [1.0], noise=None, counted=True, other_machines=True).exact
    # other figures of two machines are never tested, identical repeats or not
    other = log_ratio_between_runs([1.2] * 3, [1.0] * 3, noise=None, other_machines=True)
    assert (other.tested, other.basis) == (False, OTHER_MACHINES)


def test_repeat_noise_that_never_varied_is_contradicted_by_a_side_that_does():
    still = RunNoise(0.0, 8, "5 earlier runs")
    assert log_ratio([2.0], [1.0], noise=still).exact
    contradicted = log_ratio([2.0], [1.0, 1.1, 0.9], noise=still)
    assert not contradicted.tested and "never varied, these runs do" in contradicted.basis


def test_repeat_noise_pools_every_combination_around_its_own_mean():
    runs = [run(100, 110, name="a") + run(50, 55, name="b"), run(105, name="a")]
    noise = repeat_noise(runs, "tokens_per_s", "x")
    a, b = np.log([100, 110, 105]), np.log([50, 55])
    squares = np.sum((a - a.mean()) ** 2) + np.sum((b - b.mean()) ** 2)
    assert (noise.df, noise.sigma) == (3, pytest.approx(math.sqrt(squares / 3)))


def runs_of(rng, drift: float, jitter: float, counts: list[int]) -> list[list[dict]]:
    """Runs of one combination, `counts[i]` repeats in run i: each run off by its own drift,
    each repeat by its own jitter (log-normal)."""
    return [run(*(100 * np.exp(drift * rng.standard_normal() + jitter * rng.standard_normal(n))))
            for n in counts]


@pytest.mark.parametrize("earlier, compared", [([1, 1, 5], 5), ([2, 2, 2], 20)])
def test_runs_with_more_repeats_than_the_earlier_ones_raise_no_more_false_alarms(earlier, compared):
    # earlier runs thinned by busy repeats, then two full runs: an estimate of the drift that
    # subtracts the jitter would be too noisy for its df (6.9-9.1% false calls in review)
    rng = np.random.default_rng(7)
    calls = 0
    for _ in range(1000):
        noise = run_noise(runs_of(rng, 0.05, 0.03, earlier), "tokens_per_s", "x")
        base, cand = runs_of(rng, 0.05, 0.03, [compared, compared])
        calls += log_ratio_between_runs([t["metrics"]["tokens_per_s"] for t in cand],
                                        [t["metrics"]["tokens_per_s"] for t in base],
                                        noise=noise).significant
    assert calls / 1000 <= 0.05


def test_a_run_disturbed_unseen_is_judged_by_its_own_spread():
    # the baseline's repeats spread 20% (a host slowing its vCPUs: no busy flag), the earlier
    # runs' and the candidate's 3%: judged by the earlier runs alone, 21.5% of these A/A
    # comparisons were called different (2,000 simulated)
    rng = np.random.default_rng(3)
    calls = 0
    for _ in range(500):
        noise = run_noise(runs_of(rng, 0.03, 0.03, [5] * 4), "tokens_per_s", "x")
        (base,), (cand,) = runs_of(rng, 0.03, 0.20, [5]), runs_of(rng, 0.03, 0.03, [5])
        calls += log_ratio_between_runs([t["metrics"]["tokens_per_s"] for t in cand],
                                        [t["metrics"]["tokens_per_s"] for t in base],
                                        noise=noise).significant
    assert calls / 500 <= 0.05
    noise = DriftNoise(0.02**2, 4, 5, 0.03, 16, "x")
    wide = np.log([0.8, 1.0, 1.2, 0.9, 1.1])
    assert noise.variance_seen(wide, np.zeros(5)) == pytest.approx(
        2 * noise.drift**2 + np.var(wide, ddof=1) / 5 + 0.03**2 / 5)
    assert noise.variance_seen(np.zeros(5), np.zeros(5)) == noise.variance_of_difference(5, 5)
