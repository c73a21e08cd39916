"""A figure's noise on one machine, estimated from the earlier runs a store holds of the same
scenario (unchanged: same scenario hash) on the same machine (`stats.RunNoise`). Two kinds:

  repeat noise   the spread of one repeat's figure: every ok, quiet repeat of a combination in
                 those runs is one value, pooled around each combination's mean over all the
                 runs (process jitter and the drift between runs both count: it errs towards
                 calling less). For comparisons inside one run that has a single repeat a side.
  run noise      how one run's figure (the log of its geometric mean over repeats) varies
                 from run to run (`stats.DriftNoise`): each earlier run gives one value per
                 combination, pooled around each combination's mean, degrees of freedom at most
                 earlier runs - 1 (the combinations of one run drift together, so they are not
                 independent); and the spread of single repeats around their run's mean, so a
                 run with fewer quiet repeats than usual is judged as the noisier run it is.
                 For `harness compare`, whose two sides are runs made at different times.
Timed figures only: trained figures vary with the seed, counted ones not at all.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from harness.analysis.samples import evidence_unit, is_busy
from harness.analysis.stats import DriftNoise, RunNoise
from harness.analysis.trials import as_number, combination_name

EARLIER_RUNS = 20  # the most recent earlier runs looked at: a machine changes over months
MIN_DF = 2
MIN_RUNS_FOR_DRIFT = 3  # earlier runs before the drift between runs is estimated (2 df)


def machine_of(env: dict[str, Any]) -> tuple:
    """What makes two runs' noise comparable: the host, its device and how many."""
    return (env.get("host"), env.get("device"), env.get("device_name") or env.get("cpu_model"),
            env.get("device_count"))


def quiet_logs(trials: list[dict[str, Any]], metric: str) -> dict[str, list[float]]:
    """The log of `metric` of one run's ok, quiet trials with a positive figure, by combination."""
    logs: dict[str, list[float]] = {}
    for trial in trials:
        value = as_number((trial.get("metrics") or {}).get(metric))
        if trial["status"] == "ok" and not is_busy(trial) and np.isfinite(value) and value > 0:
            logs.setdefault(combination_name(trial["name"]), []).append(math.log(value))
    return logs


def repeat_noise(runs: list[list[dict[str, Any]]], metric: str, label: str) -> RunNoise | None:
    """The repeat noise of `metric` over the trials of `runs` (each a run's trial list); None
    when they hold fewer than MIN_DF degrees of freedom or the metric is not timed."""
    if evidence_unit(metric) != "repeats":
        return None
    groups: dict[str, list[float]] = {}
    for trials in runs:
        for name, logs in quiet_logs(trials, metric).items():
            groups.setdefault(name, []).extend(logs)
    squares = sum(float(np.sum((np.array(v) - np.mean(v)) ** 2)) for v in groups.values())
    df = sum(len(v) - 1 for v in groups.values())
    if df < MIN_DF:
        return None
    return RunNoise(math.sqrt(squares / df), df, label)


def run_noise(runs: list[list[dict[str, Any]]], metric: str, label: str) -> DriftNoise | None:
    """How `metric`'s run-level figure varies over `runs` (DriftNoise); None with fewer than
    MIN_RUNS_FOR_DRIFT runs that measured it, or when the metric is not timed."""
    if evidence_unit(metric) != "repeats":
        return None
    groups: dict[str, list[float]] = {}  # combination -> each run's mean log figure
    sizes: dict[str, list[int]] = {}  # combination -> the repeats behind each of those means
    within_squares, within_df, contributing = 0.0, 0, 0
    for trials in runs:
        per_combination = quiet_logs(trials, metric)
        for name, logs in per_combination.items():
            groups.setdefault(name, []).append(float(np.mean(logs)))
            sizes.setdefault(name, []).append(len(logs))
            within_squares += float(np.sum((np.array(logs) - np.mean(logs)) ** 2))
            within_df += len(logs) - 1
        contributing += bool(per_combination)
    spread = {name: v for name, v in groups.items() if len(v) >= 2}
    if contributing < MIN_RUNS_FOR_DRIFT or not spread:
        return None
    counts = [n for name in spread for n in sizes[name]]
    squares = sum(float(np.sum((np.array(v) - np.mean(v)) ** 2)) for v in spread.values())
    pooled_df = sum(len(v) - 1 for v in spread.values())
    # the combinations of one run drift together: no more df than earlier runs less one
    run_df = min(contributing - 1, pooled_df)
    if run_df < MIN_RUNS_FOR_DRIFT - 1:  # e.g. three runs, but no combination in more than two
        return None
    return DriftNoise(run_variance=squares / pooled_df, run_df=run_df,
                      repeats=len(counts) / sum(1 / n for n in counts),
                      within=math.sqrt(within_squares / within_df) if within_df else 0.0,
                      within_df=within_df, basis=label)


def noise_for_run(store, run, metrics: list[str], exclude: set[str] = frozenset(), *,
                  between_runs: bool = False) -> dict[str, RunNoise | DriftNoise]:
    """Noise of each of `metrics` from the runs in `store` before `run` (a RunInfo) of the same
    scenario, unchanged, on the same machine; runs in `exclude` are never used. The repeat
    noise, or with `between_runs` the run noise."""
    earlier = []
    for summary in store.runs():
        if (summary["scenario"] != run.scenario or summary["run_id"] in exclude
                or summary["run_id"] == run.run_id or summary["started_at"] >= run.started_at):
            continue
        other = store.run(summary["run_id"])
        if other.scenario_hash == run.scenario_hash and machine_of(other.env) == machine_of(run.env):
            earlier.append(other.run_id)
    earlier = earlier[-EARLIER_RUNS:]
    if not earlier:
        return {}
    runs = [store.trials(run_id) for run_id in earlier]
    label = (f"{len(earlier)} earlier run{'s' if len(earlier) > 1 else ''} of {run.scenario} on "
             f"this machine")
    estimate = run_noise if between_runs else repeat_noise
    found = {metric: estimate(runs, metric, label) for metric in metrics}
    return {metric: noise for metric, noise in found.items() if noise is not None}
