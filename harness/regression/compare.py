"""One run against another: for every trial both ran and every watched metric, the ratio with
its interval and test, the change in the bad direction, and a status.

Pure: two runs' trial lists (`ResultStore.trials(run_id)`) in, one frame out, one row per
(trial, metric). Repeats of a combination are pooled under its name without the " #2" suffix
and are the samples (harness.analysis.samples); per-step times never are. A change counts only
when it is past the rule's threshold *and* the decision rule calls it (harness.analysis.stats:
Welch's t on log figures). The two sides are runs made at different times, so the machine's
drift between them is inside every difference: the unit is the run, judged against the spread
of a run's figure over earlier runs of the scenario on this machine (`noise`,
harness.analysis.noise.run_noise); without enough earlier runs there is no test. A change past
the threshold that cannot be tested, or whose trials were measured on a busy machine, is
`inconclusive`, never a regression. A trial that was ok in the baseline and fails in the candidate is `failed-now`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.samples import compare_samples, metric_sample
from harness.analysis.stats import DriftNoise
from harness.analysis.trials import combination_name
from harness.regression.rules import DEFAULT_RULES, Rule

# a trial that ended in one of these did not do its job; "skipped" is a decision, not a failure
FAILURES = ("failed", "oom", "timeout", "diverged")
REGRESSIONS = ("regressed", "failed-now")
# rows in the order a reader triages them: what broke first, then what moved, then the rest
STATUS_ORDER = ("failed-now", "regressed", "inconclusive", "missing", "improved", "unchanged",
                "new", "removed")
TRIAL_ROW = "status"  # the `metric` of a row about the trial's outcome, not a figure

COLUMNS = ("trial", "metric", "family", "baseline", "candidate", "ratio", "low", "high",
           "p_value", "tested", "busy", "change", "threshold", "status", "note")

def compare_runs(baseline: list[dict[str, Any]], candidate: list[dict[str, Any]],
                 rules: Mapping[str, Rule] = DEFAULT_RULES,
                 noise: Mapping[str, DriftNoise] | None = None, *,
                 other_machines: bool = False) -> pd.DataFrame:
    """Every combination of the two runs against each other, on every metric of `rules`
    that either side measured; rows sorted by STATUS_ORDER, planned order within a status.
    `noise`: the run noise per metric from earlier runs (harness.analysis.noise);
    `other_machines`: the runs were made on different machines (only counted figures tested)."""
    base, cand = by_combination(baseline), by_combination(candidate)
    rows: list[dict[str, Any]] = []
    for key in [*base, *(k for k in cand if k not in base)]:
        if key not in cand:
            rows.append(_row(key, "removed", note=f"baseline: {outcomes(base[key])}"))
        elif key not in base:
            rows.append(_row(key, "new", note=f"candidate: {outcomes(cand[key])}"))
        else:
            rows += compare_combination(key, base[key], cand[key], rules, noise or {},
                                        other_machines=other_machines)
    frame = pd.DataFrame(rows, columns=list(COLUMNS))
    rank = frame["status"].map(STATUS_ORDER.index).to_numpy()
    return frame.iloc[np.argsort(rank, kind="stable")].reset_index(drop=True)


def by_combination(trials: list[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Trials grouped by combination name (repeats together), in order of first appearance."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for trial in trials:
        groups.setdefault(combination_name(trial["name"]), []).append(trial)
    return groups


def compare_combination(key: str, base: list[dict[str, Any]], cand: list[dict[str, Any]],
                        rules: Mapping[str, Rule], noise: Mapping[str, DriftNoise] | None = None,
                        *, other_machines: bool = False) -> list[dict[str, Any]]:
    """The rows of one combination: its outcome when that changed, then one row per metric
    when both sides have an ok repeat."""
    base_ok, cand_ok = _ok_count(base), _ok_count(cand)
    rows = []
    # more failing repeats than before, where the baseline had an ok one: it broke
    if base_ok and _failure_count(cand) > _failure_count(base):
        rows.append(_row(key, "failed-now", note=f"candidate: {outcomes(cand)}; "
                                                  f"baseline: {outcomes(base)}"))
    if not (base_ok and cand_ok):
        if not rows:
            rows.append(_row(key, "missing", note=f"no ok trial on one side or both: baseline: "
                                                  f"{outcomes(base)}; candidate: {outcomes(cand)}"))
        return rows
    for rule in rules.values():
        row = compare_figure(key, rule, base, cand, (noise or {}).get(rule.metric),
                             other_machines=other_machines)
        if row is not None:
            rows.append(row)
    return rows


def compare_figure(key: str, rule: Rule, base: list[dict[str, Any]], cand: list[dict[str, Any]],
                   noise: DriftNoise | None = None, *, other_machines: bool = False
                   ) -> dict[str, Any] | None:
    """One metric of one combination; None when neither side measured it."""
    base_sample, cand_sample = metric_sample(base, rule.metric), metric_sample(cand, rule.metric)
    if not any(len(s.values) or s.left_out_busy for s in (base_sample, cand_sample)):
        return None
    row = _row(key, "unchanged", rule=rule, baseline=_center(base_sample),
               candidate=_center(cand_sample))
    measured = [len(s.values) or s.left_out_busy for s in (base_sample, cand_sample)]
    if not all(measured):
        side, trials = ("baseline", base) if not measured[0] else ("candidate", cand)
        why = unmeasured_reason(trials, rule.metric)
        row.update(status="missing", note=f"not measured in the {side}" + (f": {why}" if why else ""))
        return row
    estimate = compare_samples(cand_sample, base_sample, noise, between_runs=True,
                               other_machines=other_machines)
    change = rule.change(1.0, estimate.point)
    past = abs(change) > rule.threshold
    if not estimate.tested:
        status = "inconclusive" if past or estimate.busy else "unchanged"
    elif estimate.significant and change > rule.threshold:
        status = "regressed"
    elif estimate.significant and change < -rule.threshold:
        status = "improved"
    else:
        status = "unchanged"
    note = "; ".join(part for part in (estimate.basis, estimate.caveat) if part)
    row.update(ratio=estimate.point, low=estimate.low, high=estimate.high,
               p_value=estimate.p_value, tested=estimate.tested, busy=estimate.busy, change=change,
               status=status, note=note)
    return row


def regression_count(frame: pd.DataFrame) -> int:
    """Rows that fail the gate: a metric past its threshold, or a trial that fails now."""
    return int(frame["status"].isin(REGRESSIONS).sum())


def inconclusive_count(frame: pd.DataFrame) -> int:
    return int((frame["status"] == "inconclusive").sum())


def verdict(frame: pd.DataFrame) -> str:
    count, open_ = regression_count(frame), inconclusive_count(frame)
    text = "no regressions" if count == 0 else f"{count} regression{'s' if count > 1 else ''}"
    busy = bool(frame.loc[frame["status"] == "inconclusive", "busy"].any())
    if open_:
        text += f" ({open_} inconclusive{': machine busy' if busy else ''})"
    return text


def outcomes(trials: list[dict[str, Any]]) -> str:
    """'ok ×2, oom (CUDA out of memory)': each distinct status and reason once, counted."""
    counts: dict[str, int] = {}
    for trial in trials:
        reason = " ".join(str(trial.get("reason") or "").split())
        reason = reason if len(reason) <= 120 else reason[:117] + "..."
        text = trial["status"] + (f" ({reason})" if reason and trial["status"] != "ok" else "")
        counts[text] = counts.get(text, 0) + 1
    return ", ".join(text + (f" ×{n}" if n > 1 else "") for text, n in counts.items())


def unmeasured_reason(trials: list[dict[str, Any]], metric: str) -> str | None:
    """Why the ok trials of a side have no figure for `metric`, as the trial recorded it."""
    for trial in trials:
        if trial["status"] == "ok" and (trial.get("unmeasured") or {}).get(metric):
            return str(trial["unmeasured"][metric])
    return None


def _row(key: str, status: str, *, rule: Rule | None = None, note: str = "",
         **figures: float) -> dict[str, Any]:
    row: dict[str, Any] = dict.fromkeys(COLUMNS, math.nan)
    row.update(trial=key, metric=rule.metric if rule else TRIAL_ROW,
               family=rule.family if rule else "", tested=False, busy=False,
               threshold=rule.threshold if rule else math.nan, status=status, note=note)
    row.update(figures)
    return row


def _ok_count(trials: list[dict[str, Any]]) -> int:
    return sum(trial["status"] == "ok" for trial in trials)


def _failure_count(trials: list[dict[str, Any]]) -> int:
    return sum(trial["status"] in FAILURES for trial in trials)


def _center(sample) -> float:
    """The side's figure as the rule sees it: the geometric mean of its runs (the busy runs',
    for information, when no quiet run is left)."""
    values = sample.values if len(sample.values) else sample.busy_values
    if not len(values):
        return math.nan
    if (values <= 0).any():
        return float(np.median(values))
    return float(np.exp(np.mean(np.log(values))))


