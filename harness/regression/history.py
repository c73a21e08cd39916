"""A metric over many runs of one scenario: its history, the regressions in it, its noise and
what changed in the environment between runs. Pure: runs' trials in, frames out.

Policy, as PyTorch's benchmark dashboard (HUD) judges its nightly series:

- Each run gives one value per trial key (the combination name, repeats folded) and metric:
  the median over that run's ok repeats.
- Each run's value is compared with the *median of the previous `window` runs* of the same
  key (fewer at the start; the first run gets no verdict). The median, not the previous run,
  so that one noisy night neither raises a flag on its own nor hides the next one.
- A run *violates* when `rule.change(reference, value)` (relative change in the metric's bad
  direction, harness.regression.rules) passes the larger of the rule's threshold and `noise_k`
  times the series' own run-to-run noise: the robust spread (1.4826 x the median absolute
  deviation, about one standard deviation for normal noise) of the earlier runs' log deviations
  from their own references. A series whose nights wander by 4% is not flagged for a 5% night:
  with the default k = 3 a night must move 12%. Until MIN_NOISE_RUNS earlier deviations exist
  the threshold alone decides, and a streak that starts then is at most *suspect*: on a machine
  whose nights drift by 10%, the first nights alone cannot tell drift from a regression.
- A series is one machine's (`harness.analysis.noise.machine_of`: host, device, device count):
  a store that holds runs from several machines gives each its own series, keyed
  "combination @ host", since two machines differ by more than any night's regression.
- Trials measured on a busy machine are left out of a run's value; a run where every repeat of
  a trial was busy has no value for it ("inconclusive: machine busy") and is passed over.
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

from harness.analysis.noise import machine_of
from harness.analysis.samples import is_busy
from harness.analysis.trials import as_number, combination_name
from harness.errors import InputError, did_you_mean
from harness.regression.environment import environment_differences, short_commit
from harness.regression.rules import Rule
# environment fields compared between consecutive runs: (label, path into the fingerprint);
# libraries other than torch follow torch, by name

HISTORY_COLUMNS = ["run_index", "run_id", "started_at", "commit", "key", "metric", "value", "repeats",
                   "busy_repeats"]
FLAG_COLUMNS = ["kind", "key", "metric", "run_id", "started_at", "runs", "last_run_id",
                "reference", "value", "last_value", "change", "threshold", "noise", "ongoing"]
MAD_TO_SIGMA = 1.4826  # the median absolute deviation of normal noise is 0.6745 sigma
MIN_NOISE_RUNS = 4  # earlier deviations before a series' noise is trusted
NOISE_K = 3.0


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
    noise_k: float
    history: pd.DataFrame  # HISTORY_COLUMNS
    judged: pd.DataFrame  # history + reference, change, noise, limit, violates
    flags: pd.DataFrame  # FLAG_COLUMNS, one row per streak of violations or busy run
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
    """One row per (run, trial key, metric) with the median over the run's ok, quiet repeats
    (`repeats` of them; `busy_repeats` left out: machine busy). A metric no ok repeat measured
    has no row; one only busy repeats measured has a row whose value is NaN. Runs keep the
    order given (oldest first)."""
    metrics = list(metrics)
    rows = []
    # a series is one machine's: where runs come from several, each keeps its own series
    names = machine_names([record.env for record in records])
    several = len(set(names.values())) > 1
    for index, record in enumerate(records):
        where = f" @ {names[machine_of(record.env)]}" if several else ""
        for trial in record.trials:
            if trial.get("status") != "ok":
                continue
            values, busy = trial.get("metrics") or {}, is_busy(trial)
            for metric in metrics:
                rows.append((index, record.run_id, record.started_at, short_commit(record.env),
                             combination_name(trial["name"]) + where, metric,
                             as_number(values.get(metric)), busy))
    frame = pd.DataFrame(rows, columns=[*HISTORY_COLUMNS[:-2], "busy"]).dropna(subset=["value"])
    keys = HISTORY_COLUMNS[:-3]  # everything but value and the counts
    quiet = frame[~frame["busy"].astype(bool)]  # an empty column is object-typed
    history = (quiet.groupby(keys, sort=False)["value"].agg(value="median", repeats="count")
               .reset_index())
    busy = (frame[frame["busy"].astype(bool)].groupby(keys, sort=False).size()
            .rename("busy_repeats").reset_index())
    history = history.merge(busy, on=keys, how="outer")
    history["repeats"] = history["repeats"].fillna(0).astype(int)
    history["busy_repeats"] = history["busy_repeats"].fillna(0).astype(int)
    history = history[HISTORY_COLUMNS]
    return history.sort_values(["run_index", "key", "metric"], kind="stable").reset_index(drop=True)


def machine_names(envs: list[dict[str, Any]]) -> dict[tuple, str]:
    """Each machine (`machine_of`) of `envs` by name: its host (its device where no host is
    recorded), with the device and device count added where two machines share a host."""
    def short(env: dict[str, Any]) -> str:
        return str(env.get("host") or env.get("device_name") or env.get("cpu_model")
                   or env.get("device") or "unknown machine")

    def full(env: dict[str, Any]) -> str:
        device = env.get("device_name") or env.get("cpu_model") or env.get("device") or "unknown device"
        count = f"{env['device_count']} × " if (env.get("device_count") or 1) > 1 else ""
        return f"{env.get('host') or 'unknown host'} ({env.get('device') or '?'}: {count}{device})"

    machines = {machine_of(env): env for env in envs}
    shorts = [short(env) for env in machines.values()]
    return {key: short(env) if shorts.count(short(env)) == 1 else full(env)
            for key, env in machines.items()}


def judge(history: pd.DataFrame, rules: dict[str, Rule], window: int,
          noise_k: float = NOISE_K) -> pd.DataFrame:
    """`history` with, per row, the reference (median of the key's previous `window` values),
    the relative change (positive = worse), the series' noise so far, the limit a change must
    pass (the larger of the threshold and `noise_k` x noise) and whether it violates it. Rows
    without a value (every repeat busy) get no verdict and are not part of any reference."""
    parts = []
    for (_, metric), series in history.groupby(["key", "metric"], sort=False):
        rule = rules[metric]
        series = series.sort_values("run_index").copy()
        valued = series[np.isfinite(series["value"])].copy()
        valued["reference"] = valued["value"].shift(1).rolling(window, min_periods=1).median()
        usable = np.isfinite(valued["reference"]) & (valued["reference"] > 0) & (valued["value"] > 0)
        valued["change"] = rule.change(valued["reference"].where(usable), valued["value"])
        deviation = np.log(valued["value"].where(usable) / valued["reference"].where(usable))
        valued["noise"] = [_robust_noise(deviation.iloc[:i]) for i in range(len(valued))]
        spread = _relative(rule, noise_k * valued["noise"].fillna(0.0))
        valued["limit"] = np.maximum(rule.threshold, spread)
        valued["violates"] = (valued["change"] > valued["limit"]).fillna(False).astype(bool)
        series = series.merge(
            valued[["run_index", "reference", "change", "noise", "limit", "violates"]],
            on="run_index", how="left")
        series["violates"] = series["violates"].fillna(False).astype(bool)
        parts.append(series)
    if not parts:
        return history.assign(reference=np.nan, change=np.nan, noise=np.nan, limit=np.nan,
                              violates=False)
    return pd.concat(parts).sort_values(["run_index", "key", "metric"]).reset_index(drop=True)


def _robust_noise(deviations: pd.Series) -> float:
    """MAD_TO_SIGMA x the median absolute deviation of the finite log deviations; NaN until
    MIN_NOISE_RUNS of them exist."""
    values = deviations[np.isfinite(deviations)].to_numpy()
    if len(values) < MIN_NOISE_RUNS:
        return np.nan
    return float(MAD_TO_SIGMA * np.median(np.abs(values - np.median(values))))


def _relative(rule: Rule, log_spread: pd.Series) -> pd.Series:
    """A spread of the log figure as a relative change in the bad direction."""
    return 1 - np.exp(-log_spread) if rule.better == "higher" else np.exp(log_spread) - 1


def flag_streaks(judged: pd.DataFrame, rules: dict[str, Rule], consecutive: int,
                 last_run_index: int) -> pd.DataFrame:
    """One row per streak of consecutive violations: a regression when it lasts at least
    `consecutive` runs, else suspect; `ongoing` when it reaches the run `last_run_index`. Runs
    with no value because every repeat was busy are passed over, and each gets an
    "inconclusive" row."""
    rows = []
    for (key, metric), series in judged.groupby(["key", "metric"], sort=False):
        series = series.sort_values("run_index")
        for row in series[~np.isfinite(series["value"])].to_dict("records"):
            rows.append({"kind": "inconclusive", "key": key, "metric": metric,
                         "run_id": row["run_id"], "started_at": row["started_at"], "runs": 1,
                         "last_run_id": row["run_id"], "reference": np.nan, "value": np.nan,
                         "last_value": np.nan, "change": np.nan, "threshold": np.nan,
                         "noise": np.nan, "ongoing": bool(row["run_index"] == last_run_index),
                         "_start": row["run_index"]})
        series = series[np.isfinite(series["value"])]
        streak_id = (~series["violates"]).cumsum()  # constant along a run of violations
        for _, streak in series[series["violates"]].groupby(streak_id[series["violates"]]):
            first, last = streak.iloc[0], streak.iloc[-1]
            # a streak that starts before the series' noise is known may be that noise: suspect
            known = np.isfinite(first["noise"])
            rows.append({
                "kind": "regression" if len(streak) >= consecutive and known else "suspect",
                "key": key, "metric": metric, "run_id": first["run_id"],
                "started_at": first["started_at"], "runs": len(streak), "last_run_id": last["run_id"],
                "reference": first["reference"], "value": first["value"],
                "last_value": last["value"], "change": first["change"],
                "threshold": first["limit"], "noise": first["noise"],
                "ongoing": bool(last["run_index"] == last_run_index), "_start": first["run_index"]})
    if not rows:
        return pd.DataFrame(columns=FLAG_COLUMNS)
    flags = pd.DataFrame(rows)
    flags["_kind"] = flags["kind"].map({"regression": 0, "suspect": 1, "inconclusive": 2})
    flags = flags.sort_values(["_kind", "_start", "key", "metric"], kind="stable")
    return flags[FLAG_COLUMNS].reset_index(drop=True)


def variance_frame(history: pd.DataFrame, judged: pd.DataFrame | None = None,
                   rules: dict[str, Rule] | None = None, noise_k: float = NOISE_K) -> pd.DataFrame:
    """Run-to-run spread per key and metric over the shown runs: coefficient of variation
    (sample std / mean), the median absolute deviation relative to the median (robust to the
    one bad night the CV is not), and, with `judged`, the noise the policy uses (robust spread
    of each run's log deviation from its reference) and the change a run must then pass."""
    valued = history[np.isfinite(history["value"])]
    grouped = valued.groupby(["key", "metric"], sort=False)["value"]
    stats = grouped.agg(runs="count", mean="mean", std="std", median="median").reset_index()
    mad = grouped.apply(lambda v: (v - v.median()).abs().median()).reset_index(name="mad")
    stats = stats.merge(mad, on=["key", "metric"])
    stats["cv"] = stats["std"] / stats["mean"]
    stats["mad_rel"] = stats["mad"] / stats["median"]
    columns = ["key", "metric", "runs", "mean", "std", "cv", "median", "mad", "mad_rel"]
    if judged is None or rules is None:
        return stats[columns]
    noise, limit = [], []
    for row in stats.itertuples():
        series = judged[(judged["key"] == row.key) & (judged["metric"] == row.metric)]
        reference = series["reference"].where(series["reference"] > 0)
        deviation = np.log(series["value"].where(series["value"] > 0) / reference)
        sigma = _robust_noise(deviation)
        noise.append(sigma)
        rule = rules[row.metric]
        spread = float(_relative(rule, pd.Series([noise_k * sigma])).iloc[0]) if np.isfinite(sigma) else 0.0
        limit.append(max(rule.threshold, spread))
    stats["noise"], stats["flag_past"] = noise, limit
    return stats[[*columns, "noise", "flag_past"]]


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
                    window: int = 5, consecutive: int = 2, noise_k: float = NOISE_K,
                    metrics: list[str] | None = None) -> HistoryAnalysis:
    """Every frame of the history of `records` (one scenario's runs, oldest first)."""
    if window < 1 or consecutive < 1:
        raise InputError("--window and --consecutive must be at least 1")
    if not (np.isfinite(noise_k) and noise_k >= 0):
        raise InputError(f"must be a number at least 0, got {noise_k}", field="--noise-k")
    chosen = choose_metrics(metrics, rules)
    history = history_frame(records, chosen)
    judged = judge(history, rules, window, noise_k)
    flags = flag_streaks(judged, rules, consecutive, last_run_index=len(records) - 1)
    return HistoryAnalysis(
        scenario=scenario, run_ids=[r.run_id for r in records],
        run_dates=[r.started_at for r in records],
        rules={m: rules[m] for m in chosen}, window=window, consecutive=consecutive,
        noise_k=noise_k, history=history, judged=judged, flags=flags,
        variance=variance_frame(history, judged, rules, noise_k),
        changes=environment_changes(records))
