"""The harness's one decision rule: does a technique, or a new build, change a figure?

Evidence is a sample of independent runs per side: repeats, each its own process (for a figure
that training learns, such as a loss, one value per seed: `harness.analysis.samples`). Per-step
times are never samples: the steps of one process share its placement, its clocks and its
neighbours, are autocorrelated, and say nothing about the next process.

The rule: Welch's t-test on the natural logarithm of each run's figure, two-sided, at ALPHA.
  ratio     exp(mean log treatment - mean log baseline): the ratio of geometric means
  interval  exp(difference ± t(0.975, ν) · SE), SE² = s_t²/n_t + s_b²/n_b, ν Welch–Satterthwaite
  called    p < ALPHA, which is the same as an interval that excludes 1: one rule, not two
Why this rule and not another:
  * logarithms: run-to-run noise is multiplicative (a slower process is slower by a share), and
    a ratio and its inverse get mirror-image intervals;
  * Welch rather than a rank test: Mann–Whitney with 3 runs a side can never reach p < 0.05 (its
    smallest two-sided p is 0.1), and Welch does not assume both sides are equally noisy;
  * no percentile bootstrap: with 2-3 runs a side it resamples from a handful of distinct
    medians, its interval collapses towards min..max and calls noise significant.
Its error rates at the shipped repeats are measured by simulation (tests/analysis/
test_decision_rule.py) and on real runs (tests/benchmarks/test_aa_false_positives.py).

With fewer than two runs on a side there is no test, unless the run-to-run noise of the figure
is known from earlier runs on the same machine (`RunNoise`, harness.analysis.noise): then the
difference is judged against that noise, and the basis says where it came from. A figure that
is counted, not timed (bytes of tensors, dispatched FLOPs), or identical in every run, is exact.

Two separate runs (sweeps) made at different times differ by the machine's drift between them
too (another tenant, a warmer CPU, a new boot), which their repeats cannot see: on the 2-core
development VM, six identical sweeps' run-level means wandered by 4-8% while repeats inside a
sweep agreed far better, and Welch on the repeats called 7.8% of A/A pairs regressed or improved.
So between runs the unit is the run: each side's geometric mean over its repeats, judged by the
same t-test against how that figure varies over earlier runs of the scenario on the machine
(`DriftNoise`: the drift between runs and the jitter of single repeats, apart, so a run with
fewer quiet repeats than usual counts as the noisier run it is, and a run whose own repeats
spread wider than the earlier runs' is judged by its own spread; `log_ratio_between_runs`);
until enough earlier runs exist there is no test.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 1 - CONFIDENCE
# The repeats (or seeds) of the shipped claim scenarios and nightly.yaml: with them the rule
# detects a 10% change at least 80% of the time up to about 4.5% run-to-run spread (README,
# "How many repeats"); tests/analysis/test_decision_rule.py measures its error rates there.
SHIPPED_REPEATS = 5
NO_VALUES = "no values"
NOT_POSITIVE = "a figure at or below zero: no test on ratios"
ONE_RUN = "one run per side: no test"
DRIFT_UNKNOWN = ("two runs made at different times: no test until earlier runs of the scenario "
                 "on this machine show how much a run's figure drifts between runs")
ONE_SEED = "one seed per side: no test (sweep train.seed and pool it)"
OTHER_MACHINES = ("two runs on different machines: no test (a machine's drift between runs says "
                  "nothing about the gap between two machines; harness procure compares hardware)")


@dataclass(frozen=True)
class RunNoise:
    """Spread of one run's figure on the log scale (≈ its coefficient of variation), estimated
    from earlier runs; `df` is the estimate's degrees of freedom."""

    sigma: float
    df: int
    basis: str  # where it was estimated, in words


@dataclass(frozen=True)
class DriftNoise:
    """How one run's figure (the log of its geometric mean over its repeats) varies from run to
    run on a machine, from earlier runs (harness.analysis.noise.run_noise). It has two parts:
    the drift of the machine between runs, which every repeat of a run shares, and the jitter
    of single repeats, which averages out over a run's repeats. Both are needed because the two
    runs compared may hold other repeat counts than the earlier runs did (busy repeats are left
    out): a run of one quiet repeat varies far more than a run of five.

      run_variance  V_m: variance of run-level figures across the earlier runs, `run_df` df;
                    its expectation is drift² + within² / repeats
      repeats       the earlier runs' repeat count (harmonic mean over runs and combinations)
      within        σ_w: spread of one repeat around its run's mean, `within_df` df (0 when the
                    earlier runs held one repeat each, and σ_w is then unknown, taken as 0)
    """

    run_variance: float
    run_df: int
    repeats: float
    within: float
    within_df: int
    basis: str  # where it was estimated, in words

    @property
    def drift(self) -> float:
        """The estimated drift between runs (log scale, ≈ a share), never below 0."""
        return math.sqrt(max(0.0, self.run_variance - self.within**2 / self.repeats))

    def variance_of_difference(self, n_t: int, n_b: int) -> float:
        """Variance of log(candidate run) - log(baseline run) for runs of n_t and n_b repeats:
        2·drift² + σ_w²·(1/n_t + 1/n_b), written as 2·V_m plus what fewer repeats than the
        earlier runs' add. Never below 2·V_m, the run-level variance as measured: runs with
        more repeats than the earlier ones get no credit for them, since subtracting an
        estimated σ_w² from V_m leaves an estimate noisier than V_m's degrees of freedom
        allow (a review's simulation: 6-9% false calls instead of 5%). With σ_w unknown it is
        2·V_m, which no run of one or more repeats exceeds; never below the jitter alone."""
        jitter = self.within**2 * (1 / n_t + 1 / n_b)
        fewer = max(0.0, jitter - 2 * self.within**2 / self.repeats)
        return max(2 * self.run_variance + fewer, jitter)

    def variance_seen(self, log_t: np.ndarray, log_b: np.ndarray) -> float:
        """`variance_of_difference`, or more where the two runs' own repeats spread wider than
        the earlier runs' did (a run disturbed by something the busy meter cannot see, such as
        a host slowing its vCPUs): each side's jitter is then its own, 2·drift² + Σ s²/n."""
        n_t, n_b = len(log_t), len(log_b)
        seen = sum(max(self.within**2, float(np.var(side, ddof=1)) if len(side) > 1 else 0.0) / len(side)
                   for side in (log_t, log_b))
        return max(self.variance_of_difference(n_t, n_b), 2 * self.drift**2 + seen)

    def describe(self) -> str:
        within = f", repeats σ {self.within:.1%}" if self.within_df else ""
        return f"runs σ {math.sqrt(self.run_variance):.1%}{within}, {self.run_df} df"


@dataclass(frozen=True)
class Estimate:
    """A ratio (or a measure derived from one) with its interval and test; `low == high ==
    point` when there is no interval. `tested` is False when the rule could not be applied."""

    point: float
    low: float
    high: float
    basis: str  # how it was made, in words: "Welch t over 5 vs 5 repeats"
    p_value: float = math.nan
    tested: bool = True
    busy: bool = False  # no test because the runs were measured on a busy machine
    caveat: str = ""  # e.g. "1 of 5 repeats left out: machine busy"

    @property
    def significant(self) -> bool:
        """The rule calls a difference: tested, and p < ALPHA (the interval excludes 1)."""
        return self.tested and not math.isnan(self.p_value) and self.p_value < ALPHA

    @property
    def exact(self) -> bool:
        return self.tested and self.low == self.high

    def map(self, fn, basis: str | None = None) -> Estimate:
        """The same estimate through a monotone function (e.g. 1 - r, 1 / r); the interval's
        ends are reordered when `fn` decreases."""
        low, high = sorted((fn(self.low), fn(self.high)))
        return replace(self, point=fn(self.point), low=low, high=high, basis=basis or self.basis)


def untested(point: float, basis: str, *, busy: bool = False, caveat: str = "") -> Estimate:
    return Estimate(point, point, point, basis, tested=False, busy=busy, caveat=caveat)


def finite(values) -> np.ndarray:
    array = np.asarray(values, dtype=float).ravel()
    return array[np.isfinite(array)]


def log_ratio(treatment, baseline, *, unit: str = "repeats", noise: RunNoise | None = None,
              counted: bool = False, confidence: float = CONFIDENCE) -> Estimate:
    """treatment / baseline by the rule above. `treatment` and `baseline` hold one figure per
    independent run; `counted` says the figure is exact by construction (the same in every run)."""
    t, b = finite(treatment), finite(baseline)
    if not len(t) or not len(b):
        return untested(math.nan, NO_VALUES)
    if (t <= 0).any() or (b <= 0).any():
        point = float(np.median(t) / np.median(b)) if np.median(b) else math.nan
        return untested(point, NOT_POSITIVE)
    lt, lb = np.log(t), np.log(b)
    difference = float(lt.mean() - lb.mean())
    point = math.exp(difference)
    sides = f"{len(t)} vs {len(b)} {unit}"
    identical = np.ptp(lt) == 0 and np.ptp(lb) == 0
    if identical and (counted or (len(t) >= 2 and len(b) >= 2)):
        why = "counted, not timed" if counted else f"identical in every run ({sides})"
        return _exact(point, difference, f"{why}: exact")
    if len(t) >= 2 and len(b) >= 2:
        p_value, se, df = welch(lt, lb)
        return _interval(point, difference, se, df, p_value, f"Welch t over {sides}", confidence)
    if noise is not None:
        if noise.sigma == 0:
            if identical:
                return _exact(point, difference, f"{sides}; {noise.basis}, where it never varied: exact")
            return untested(point, f"{sides}: {noise.basis} never varied, these runs do: no test")
        se = noise.sigma * math.sqrt(1 / len(t) + 1 / len(b))
        p_value = 2 * float(stats.t.sf(abs(difference) / se, noise.df))
        return _interval(point, difference, se, noise.df, p_value,
                         f"{sides}, against the run-to-run noise of {noise.basis} "
                         f"(σ {noise.sigma:.1%}, {noise.df} df)", confidence)
    if len(t) == len(b) == 1:
        return untested(point, {"repeats": ONE_RUN, "seeds": ONE_SEED}.get(
            unit, f"one value per side ({unit}): no test"))
    return untested(point, f"{sides}: too few for a test")


def log_ratio_between_runs(treatment, baseline, *, noise: DriftNoise | None,
                           counted: bool = False, other_machines: bool = False,
                           confidence: float = CONFIDENCE) -> Estimate:
    """treatment / baseline where each side is one separate run (its repeats' figures), made at
    different times: the unit is the run, and `noise` how a run's figure varies over earlier
    runs (DriftNoise). Counted figures are exact. Figures identical in every repeat of both
    runs are exact too unless earlier runs show them drifting between runs. Runs on
    `other_machines` have no test but for counted figures."""
    t, b = finite(treatment), finite(baseline)
    within = log_ratio(t, b, counted=counted, confidence=confidence)
    if math.isnan(within.point) or within.basis in (NO_VALUES, NOT_POSITIVE) or counted:
        return within
    if other_machines:
        return untested(within.point, OTHER_MACHINES)
    identical = bool(np.ptp(np.log(t)) == 0 and np.ptp(np.log(b)) == 0)
    if noise is None:
        return within if within.exact else untested(within.point, DRIFT_UNKNOWN)
    repeats = f"{len(t)} vs {len(b)} repeats"
    difference = math.log(within.point)
    if noise.run_variance == 0:
        if identical:
            return _exact(within.point, difference,
                          f"one run a side ({repeats}); {noise.basis}, where it never varied: exact")
        return untested(within.point, f"one run a side ({repeats}): {noise.basis} never varied, "
                                      f"these runs do: no test")
    se = math.sqrt(noise.variance_seen(np.log(t), np.log(b)))
    p_value = 2 * float(stats.t.sf(abs(difference) / se, noise.run_df))
    return _interval(within.point, difference, se, noise.run_df, p_value,
                     f"one run a side ({repeats}), against how a run's figure varies over "
                     f"{noise.basis} ({noise.describe()})", confidence)


def welch(log_t: np.ndarray, log_b: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Welch's two-sided test on the last axis (vectorised, for the simulations of the rule):
    (p-value, standard error of the difference of means, Welch–Satterthwaite df). Each side
    needs two or more values; a side with no spread adds nothing to the error."""
    n_t, n_b = log_t.shape[-1], log_b.shape[-1]
    var_t = np.var(log_t, axis=-1, ddof=1) / n_t
    var_b = np.var(log_b, axis=-1, ddof=1) / n_b
    se2 = var_t + var_b
    with np.errstate(divide="ignore", invalid="ignore"):
        df = se2**2 / (var_t**2 / (n_t - 1) + var_b**2 / (n_b - 1))
        t_stat = (log_t.mean(axis=-1) - log_b.mean(axis=-1)) / np.sqrt(se2)
    p_value = 2 * stats.t.sf(np.abs(t_stat), df)
    return p_value, np.sqrt(se2), df


def _interval(point: float, difference: float, se: float, df: float, p_value: float,
              basis: str, confidence: float) -> Estimate:
    half = float(stats.t.ppf(0.5 + confidence / 2, df)) * float(se)
    return Estimate(point, math.exp(difference - half), math.exp(difference + half), basis,
                    float(p_value))


def _exact(point: float, difference: float, basis: str) -> Estimate:
    return Estimate(point, point, point, basis, 0.0 if difference != 0 else 1.0)


# -- what the rule can detect ---------------------------------------------------------------
def simulated_detection_rate(change: float, sigma: float, repeats: int, *, simulations: int = 20000,
                             seed: int = 0) -> float:
    """Share of simulated comparisons of `repeats` vs `repeats` runs, each run's log figure
    normal with spread `sigma`, in which the rule calls a true ratio of `change` (1.0: the
    false-positive rate)."""
    rng = np.random.default_rng(seed)
    baseline = sigma * rng.standard_normal((simulations, repeats))
    treatment = math.log(change) + sigma * rng.standard_normal((simulations, repeats))
    p_value, _, _ = welch(treatment, baseline)
    return float(np.mean(p_value < ALPHA))


def repeats_needed(change: float, sigma: float, power: float = 0.8, most: int = 30) -> int | None:
    """The fewest repeats a side with which the rule detects a true ratio `change` at least
    `power` of the time, at run-to-run spread `sigma`; None when even `most` do not."""
    for repeats in range(2, most + 1):
        if simulated_detection_rate(change, sigma, repeats, simulations=4000) >= power:
            return repeats
    return None


def minimum_detectable_change(sigma: float, repeats: int, power: float = 0.8) -> float:
    """The smallest relative change (0.10 = 10%) the rule detects `power` of the time with
    `repeats` runs a side at spread `sigma` (bisection on the simulated detection rate)."""
    low, high = 0.0, 4.0
    for _ in range(30):
        middle = (low + high) / 2
        if simulated_detection_rate(1 + middle, sigma, repeats, simulations=4000) >= power:
            high = middle
        else:
            low = middle
    return high
