"""The decision rule's error rates, measured by simulation on runs shaped like this machine's.

A simulated run is a process: its whole run is off by a run-level jitter (log-normal), and its
100 measured steps are autocorrelated around that (AR(1), lag-1 correlation 0.55, step CV 13%:
what 8 repeats of nightly.yaml's tiny GPT showed on the 2-core development VM). Its figures are
made as the training loop makes them (tokens/s over the window, median step time) and stored
with the step series, which the rule must ignore. The jitter is 3% (a quiet bare-metal machine,
the issue's "a few percent") or 12% (what the VM showed between processes).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from harness.analysis.noise import run_noise
from harness.analysis.samples import compare_metric
from harness.analysis.stats import ALPHA, SHIPPED_REPEATS, RunNoise, log_ratio, simulated_detection_rate
from harness.claims import judge
from harness.claims.schema import Claim
from harness.regression.compare import compare_runs

STEPS, STEP_CV, LAG1 = 100, 0.13, 0.55
TOKENS_PER_STEP = 1024


def simulated_runs(rng, count: int, runs: int, ratio: float, jitter: float) -> np.ndarray:
    """(count, runs, STEPS) step times of runs whose true speed is `ratio` x the reference."""
    innovations = rng.standard_normal((count, runs, STEPS)) * STEP_CV * math.sqrt(1 - LAG1**2)
    noise = np.empty_like(innovations)
    noise[..., 0] = rng.standard_normal((count, runs)) * STEP_CV
    for k in range(1, STEPS):
        noise[..., k] = LAG1 * noise[..., k - 1] + innovations[..., k]
    run_level = jitter * rng.standard_normal((count, runs, 1))
    return 0.015 / ratio * np.exp(run_level + noise)


def as_trials(steps: np.ndarray, name: str) -> list[dict]:
    """One side's runs as stored trials: figures as the loop derives them, series kept."""
    trials = []
    for repeat, times in enumerate(steps):
        trials.append({"name": f"{name} #{repeat}", "status": "ok", "params": {"repeat": repeat},
                       "metrics": {"tokens_per_s": TOKENS_PER_STEP * STEPS / times.sum(),
                                   "step_time_s": float(np.median(times))},
                       "series": {"step_time_s": times.tolist()}, "warnings": [],
                       "spec": {"train": {"seed": 0}}})
    return trials


def called_rate(ratio: float, jitter: float, repeats: int, count: int, seed: int) -> float:
    rng = np.random.default_rng(seed)
    treated = simulated_runs(rng, count, repeats, ratio, jitter)
    reference = simulated_runs(rng, count, repeats, 1.0, jitter)
    calls = [compare_metric(as_trials(t, "b"), as_trials(r, "a"), "tokens_per_s").significant
             for t, r in zip(treated, reference)]
    return float(np.mean(calls))


@pytest.mark.parametrize("jitter", [0.03, 0.12])
def test_a_a_comparisons_call_a_difference_at_most_five_percent_of_the_time(jitter):
    assert called_rate(1.0, jitter, SHIPPED_REPEATS, 1000, seed=1) <= ALPHA


def test_a_twenty_percent_speedup_is_detected_at_least_eighty_percent_of_the_time():
    assert called_rate(1.2, 0.03, SHIPPED_REPEATS, 500, seed=2) >= 0.80
    assert called_rate(1.2, 0.03, 3, 500, seed=3) >= 0.80  # even at 3 repeats


def test_on_this_machine_noise_the_rule_stays_honest_rather_than_sensitive():
    # at 12% run-to-run jitter, 5 repeats detect a 20% change only some of the time: the rule
    # does not pretend otherwise (the README gives the minimum detectable change)
    rate = called_rate(1.2, 0.12, SHIPPED_REPEATS, 300, seed=4)
    assert 0.2 < rate < 0.9


def test_one_run_per_side_never_calls_a_difference_however_many_steps_it_has():
    rng = np.random.default_rng(5)
    calls = [compare_metric(as_trials(t, "b"), as_trials(r, "a"), "tokens_per_s").tested
             for t, r in zip(simulated_runs(rng, 200, 1, 1.0, 0.03),
                             simulated_runs(rng, 200, 1, 1.0, 0.03))]
    assert not any(calls)


def sweeps(rng, count: int, drift: float, jitter: float) -> list[list[dict]]:
    """`count` separate runs of one combination made at different times: each run's speed is
    off by its own drift (log-normal, `drift`), each repeat inside it by `jitter`."""
    return [as_trials(simulated_runs(rng, 1, SHIPPED_REPEATS, math.exp(drift * rng.standard_normal()),
                                     jitter)[0], "bf16") for _ in range(count)]


def test_between_runs_the_gate_judges_the_drift_and_raises_no_false_alarm():
    # runs drift by 5% while repeats inside a run agree within 3%: what this VM showed
    rng = np.random.default_rng(6)
    alarms = significant = within_only = 0
    simulations = 200
    for _ in range(simulations):
        *earlier, base, cand = sweeps(rng, 7, drift=0.05, jitter=0.03)
        noise = {m: run_noise(earlier, m, "5 earlier runs") for m in ("tokens_per_s", "step_time_s")}
        frame = compare_runs(base, cand, noise=noise)
        rows = frame[frame["metric"] == "tokens_per_s"]
        alarms += rows["status"].isin(("regressed", "improved")).any()
        significant += bool((rows["p_value"] < ALPHA).any())
        within_only += compare_metric(cand, base, "tokens_per_s").significant
    assert alarms / simulations <= ALPHA and significant / simulations <= ALPHA
    # Welch on the repeats alone would call most of these identical builds different
    assert within_only / simulations > 0.3


def test_a_run_left_with_one_quiet_repeat_raises_no_false_alarm():
    # four of the candidate's five repeats were busy and are left out: its one quiet repeat
    # carries the whole 12% jitter, which the run-level spread of 5-repeat runs hides
    rng = np.random.default_rng(11)
    alarms = naive = 0
    simulations = 200
    for _ in range(simulations):
        *earlier, base, cand = sweeps(rng, 7, drift=0.01, jitter=0.12)
        for trial in cand[:4]:
            trial["warnings"] = [{"code": "machine-busy", "message": "load 7"}]
        noise = {m: run_noise(earlier, m, "5 earlier runs") for m in ("tokens_per_s", "step_time_s")}
        rows = compare_runs(base, cand, noise=noise)
        alarms += rows[rows["metric"] == "tokens_per_s"]["status"].isin(("regressed", "improved")).any()
        # judged against the run-level spread alone, as if both runs had five repeats
        one_run = RunNoise(math.sqrt(noise["tokens_per_s"].run_variance), noise["tokens_per_s"].run_df, "-")
        point = compare_metric(cand, base, "tokens_per_s").point
        naive += log_ratio([point], [1.0], unit="runs", noise=one_run).significant
    assert alarms / simulations <= ALPHA
    assert naive / simulations > 0.1


def test_the_closed_form_simulation_matches_the_trial_path():
    # the README's repeats and detectable changes come from the vectorised simulation
    assert simulated_detection_rate(1.0, 0.05, SHIPPED_REPEATS) <= ALPHA
    assert simulated_detection_rate(1.2, 0.03, SHIPPED_REPEATS) >= 0.99


def test_an_equivalence_claim_is_confirmed_at_most_five_percent_of_the_time_when_false():
    flat = Claim.model_validate({
        "id": "flat", "claim": "memory stays flat", "conditions": "-", "confirmed_when": "±5%",
        "source": {"primary": "a paper"}, "scenario": "s.yaml", "baseline": {"grad_accum": 1},
        "treatment": {"grad_accum": 4}, "metric": "peak_memory_bytes",
        "expect": {"min": 0.95, "max": 1.05}})
    rng = np.random.default_rng(8)
    confirmed = 0
    for _ in range(1000):  # the truth sits just outside the range: 1.06
        estimate = log_ratio(rng.lognormal(math.log(1.06), 0.03, SHIPPED_REPEATS),
                             rng.lognormal(0.0, 0.03, SHIPPED_REPEATS))
        confirmed += judge(flat, estimate)[0] == "confirmed"
    assert confirmed / 1000 <= ALPHA
