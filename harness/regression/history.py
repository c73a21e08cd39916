"""A metric over many runs of one scenario: its history, the regressions in it, its noise and
what changed in the environment between runs. Pure: runs' trials in, frames out.

Policy, as PyTorch's benchmark dashboard (HUD) judges its nightly series:

- Each run gives one value per trial key (the combination name, repeats folded) and metric:
  the median over that run's ok repeats.
- Each run's value is compared with the *median of the previous `window` runs* of the same
  key (fewer at the start; the first run gets no verdict). The median, not the previous run,
  so that one noisy night neither raises a flag on its own nor hides the next one.
- A run *violates* when `rule.change(reference, value) > rule.threshold` (relative change in
  the metric's bad direction, harness.regression.rules).
- Violations in consecutive runs (of that key: a run where the trial did not finish is
  passed over) form a streak; a run back within threshold ends it. A streak of at least
  `consecutive` runs is a *regression*, reported at its first run; a shorter one is
  *suspect* (one bad night, or a regression not yet confirmed).
- The reference window holds every previous run, violating or not: a lasting shift becomes
  the new reference after about window/2 runs, so a step change is flagged once and then
  accepted as the new level rather than flagged every night forever.

A regression is *ongoing* when its streak reaches the latest run: that is what a nightly job
fails on (`harness history` exits 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.trials import as_number, combination_name
from harness.errors import InputError, did_you_mean
from harness.regression.environment import environment_differences, short_commit
from harness.regression.rules import Rule
# environment fields compared between consecutive runs: (label, path into the fingerprint);
# libraries other than torch follow torch, by name

HISTORY_COLUMNS = ["run_index", "run_id", "started_at", "commit", "key", "metric", "value", "repeats"]
FLAG_COLUMNS = ["kind", "key", "metric", "run_id", "started_at", "runs", "last_run_id",
                "reference", "value", "last_value", "change", "threshold", "ongoing"]


@dataclass(frozen=True)
class RunRecord:
    """One run as history needs it: identity, environment fingerprint, stored trials."""
    run_id: str
    started_at: str
    env: dict[str, Any]
    trials: list[dict[str, Any]]


@dataclass(frozen=True)
class HistoryAnalysis:
    """Every frame of one history, computed once and rendered by table, markdown or HTML."""
    scenario: str
    run_ids: list[str]  # oldest first
    run_dates: list[str]  # started_at of each run
    rules: dict[str, Rule]
    window: int
    consecutive: int
    history: pd.DataFrame  # HISTORY_COLUMNS
    judged: pd.DataFrame  # history + reference, change, violates
    flags: pd.DataFrame  # FLAG_COLUMNS, one row per streak of violations
    variance: pd.DataFrame
    changes: pd.DataFrame  # run_index, run_id, previous_run_id, started_at, changes

    def ongoing_regressions(self) -> pd.DataFrame:
        return self.flags[(self.flags["kind"] == "regression") & self.flags["ongoing"]]


def choose_runs(runs: list[dict[str, Any]], scenario: str | None, last: int) -> tuple[str, list[dict]]:
    """The scenario (default: the latest run's) and its last `last` runs with trials, oldest
    first. `runs` is `ResultStore.runs()`."""
    runs = sorted((r for r in runs if r.get("trials", 1)), key=lambda r: r["started_at"])
    if not runs:
        raise InputError("no runs with stored trials in this database")
    scenarios = {r["scenario"] for r in runs}
    scenario = scenario or runs[-1]["scenario"]
    if scenario not in scenarios:
        raise InputError(f"no runs of scenario '{scenario}'{did_you_mean(scenario, scenarios)}",
                         field="--scenario")
    return scenario, [r for r in runs if r["scenario"] == scenario][-last:]


def choose_metrics(asked: list[str] | None, rules: dict[str, Rule]) -> list[str]:
    """The metrics to judge: those asked for (each needs a rule: it says which way is worse),
    else every rule's."""
    for metric in asked or []:
        if metric not in rules:
            raise InputError(f"no rule for metric '{metric}'{did_you_mean(metric, rules)}",
                             field="--metric")
    return list(dict.fromkeys(asked)) if asked else list(rules)


def history_frame(records: list[RunRecord], metrics: Iterable[str]) -> pd.DataFrame:
    """One row per (run, trial key, metric) with the median over the run's ok repeats; a
    metric no ok repeat measured has no row. Runs keep the order given (oldest first)."""
    metrics = list(metrics)
    rows = []
    for index, record in enumerate(records):
        for trial in record.trials:
            if trial.get("status") != "ok":
                continue
            values = trial.get("metrics") or {}
            for metric in metrics:
                rows.append((index, record.run_id, record.started_at, short_commit(record.env),
                             combination_name(trial["name"]), metric, as_number(values.get(metric))))
    frame = pd.DataFrame(rows, columns=HISTORY_COLUMNS[:-1]).dropna(subset=["value"])
    keys = HISTORY_COLUMNS[:-2]  # everything but value and repeats
    history = (frame.groupby(keys, sort=False)["value"].agg(value="median", repeats="count")
               .reset_index())
    history["repeats"] = history["repeats"].astype(int)
    return history.sort_values(["run_index", "key", "metric"], kind="stable").reset_index(drop=True)


def judge(history: pd.DataFrame, rules: dict[str, Rule], window: int) -> pd.DataFrame:
    """`history` with, per row, the reference (median of the key's previous `window` values),
    the relative change (positive = worse) and whether it violates the metric's threshold."""
    parts = []
    for (_, metric), series in history.groupby(["key", "metric"], sort=False):
        rule = rules[metric]
        series = series.sort_values("run_index").copy()
        series["reference"] = series["value"].shift(1).rolling(window, min_periods=1).median()
        usable = np.isfinite(series["reference"]) & (series["reference"] > 0)
        series["change"] = rule.change(series["reference"].where(usable), series["value"])
        series["violates"] = (series["change"] > rule.threshold).fillna(False).astype(bool)
        parts.append(series)
    if not parts:
        return history.assign(reference=np.nan, change=np.nan, violates=False)
    return pd.concat(parts).sort_values(["run_index", "key", "metric"]).reset_index(drop=True)


def flag_streaks(judged: pd.DataFrame, rules: dict[str, Rule], consecutive: int,
                 last_run_index: int) -> pd.DataFrame:
    """One row per streak of consecutive violations: a regression when it lasts at least
    `consecutive` runs, else suspect; `ongoing` when it reaches the run `last_run_index`."""
    rows = []
    for (key, metric), series in judged.groupby(["key", "metric"], sort=False):
        series = series.sort_values("run_index")
        streak_id = (~series["violates"]).cumsum()  # constant along a run of violations
        for _, streak in series[series["violates"]].groupby(streak_id[series["violates"]]):
            first, last = streak.iloc[0], streak.iloc[-1]
            rows.append({
                "kind": "regression" if len(streak) >= consecutive else "suspect",
                "key": key, "metric": metric, "run_id": first["run_id"],
                "started_at": first["started_at"], "runs": len(streak), "last_run_id": last["run_id"],
                "reference": first["reference"], "value": first["value"],
                "last_value": last["value"], "change": first["change"],
                "threshold": rules[metric].threshold,
                "ongoing": bool(last["run_index"] == last_run_index), "_start": first["run_index"]})
    if not rows:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    flags = pd.DataFrame(rows)
    flags["_kind"] = flags["kind"] != "regression"  # regressions first
    flags = flags.sort_values(["_kind", "_start", "key", "metric"], kind="stable")
    return flags[FLAG_COLUMNS].reset_index(drop=True)


def variance_frame(history: pd.DataFrame) -> pd.DataFrame:
    """Run-to-run spread per key and metric over the shown runs: coefficient of variation
    (sample std / mean) and the median absolute deviation relative to the median (robust
    to the one bad night the CV is not)."""
    grouped = history.groupby(["key", "metric"], sort=False)["value"]
    stats = grouped.agg(runs="count", mean="mean", std="std", median="median").reset_index()
    mad = grouped.apply(lambda v: (v - v.median()).abs().median()).reset_index(name="mad")
    stats = stats.merge(mad, on=["key", "metric"])
    stats["cv"] = stats["std"] / stats["mean"]
    stats["mad_rel"] = stats["mad"] / stats["median"]
    return stats[["key", "metric", "runs", "mean", "std", "cv", "median", "mad", "mad_rel"]]


def environment_changes(records: list[RunRecord]) -> pd.DataFrame:
    """Between consecutive runs, what changed in the fingerprint, as one line per step:
    "torch 2.10.0 → 2.11.0; driver 570 → 575" (commits short)."""
    rows = []
    for index in range(1, len(records)):
        before, after = records[index - 1], records[index]
        changed = environment_differences(before.env, after.env)
        if changed:
            rows.append((index, after.run_id, before.run_id, after.started_at, "; ".join(changed)))
    return pd.DataFrame(rows, columns=["run_index", "run_id", "previous_run_id", "started_at", "changes"])


def analyse_history(scenario: str, records: list[RunRecord], rules: dict[str, Rule], *,
                    window: int = 5, consecutive: int = 2,
                    metrics: list[str] | None = None) -> HistoryAnalysis:
    """Every frame of the history of `records` (one scenario's runs, oldest first)."""
    if window < 1 or consecutive < 1:
        raise InputError("--window and --consecutive must be at least 1")
    chosen = choose_metrics(metrics, rules)
    history = history_frame(records, chosen)
    judged = judge(history, rules, window)
    flags = flag_streaks(judged, rules, consecutive, last_run_index=len(records) - 1)
    return HistoryAnalysis(
        scenario=scenario, run_ids=[r.run_id for r in records],
        run_dates=[r.started_at for r in records],
        rules={m: rules[m] for m in chosen}, window=window, consecutive=consecutive,
        history=history, judged=judged, flags=flags, variance=variance_frame(history),
        changes=environment_changes(records))
