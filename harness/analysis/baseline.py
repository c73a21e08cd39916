"""Each combination against the baseline combination: medians over ok repeats and ratios.

A ratio is a trial's (or a combination's median) figure over the baseline combination's
median over its ok repeats. It is NaN where either side has no value: a failed trial, an
unmeasured metric or a baseline that never finished give no ratio, never a made-up one.
A timed figure (one whose evidence is repeats: throughput, step time, host memory, energy)
measured on a busy machine is left out of every median and has no ratio; counted and trained
figures do not depend on the machine's load and keep them. Confidence intervals and claims
build on this later (harness.analysis.samples); this stays point estimates.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.samples import evidence_unit
from harness.analysis.trials import (
    IDENTITY,
    PARAM_PREFIX,
    axis_columns,
    combination_name,
    memory_metric,
)

# ratio column -> the metric it divides; "memory_ratio" divides whichever peak the run has
RATIO_COLUMNS = ("speedup", "step_time_ratio", "memory_ratio", "activation_ratio")


def ratio_sources(frame: pd.DataFrame) -> dict[str, str]:
    """Which metric each ratio column is computed from, for this run."""
    return {"speedup": "tokens_per_s", "step_time_ratio": "step_time_s",
            "memory_ratio": memory_metric(frame), "activation_ratio": "activation_bytes"}


def compare_to_baseline(frame: pd.DataFrame, baseline: dict[str, Any] | None) -> pd.DataFrame:
    """One row per combination (the params without `repeat`), in planned order: its name,
    swept values, `repeats` (trials), `ok_repeats`, `busy_repeats` (ok ones measured on a busy
    machine), `is_baseline`, the median of every metric over its ok repeats (timed metrics:
    its quiet ones) and, when there is a baseline, the RATIO_COLUMNS."""
    axes = axis_columns(frame)
    metrics = _metric_columns(frame)
    timed = timed_metrics(metrics)
    ok = frame["status"] == "ok"
    quiet = ok & ~frame["busy"].astype(bool)
    rows = []
    for _, group in frame.groupby(_combination_keys(frame, axes), sort=False):
        first = group.iloc[0]
        row: dict[str, Any] = {"combination": combination_name(first["name"])}
        row.update({axis: first[axis] for axis in axes})
        row.update({"repeats": len(group), "ok_repeats": int(ok[group.index].sum()),
                    "busy_repeats": int((ok & ~quiet)[group.index].sum())})
        row.update(group.loc[ok[group.index], metrics].median().to_dict())
        row.update(group.loc[quiet[group.index], timed].median().reindex(timed).to_dict())
        rows.append(row)
    columns = ["combination", *axes, "repeats", "ok_repeats", "busy_repeats", *metrics]
    combos = pd.DataFrame(rows, columns=columns)
    combos[metrics] = combos[metrics].astype(float)
    combos.insert(len(axes) + 4, "is_baseline", _matches(combos, baseline))
    if baseline is None:
        return combos
    reference = baseline_medians(frame, baseline)
    for ratio, metric in ratio_sources(frame).items():
        combos[ratio] = _ratio(combos[metric], reference[metric])
    return combos


def ratios_to_baseline(frame: pd.DataFrame, baseline: dict[str, Any] | None) -> pd.DataFrame:
    """The trial frame with `is_baseline` and, when there is a baseline, each trial's own
    RATIO_COLUMNS against the baseline combination's medians (NaN for a trial that is not
    ok: whatever it stored before failing is not a comparable figure; NaN for a timed figure
    measured on a busy machine)."""
    out = frame.copy()
    out["is_baseline"] = _matches(out, baseline)
    if baseline is None:
        return out
    reference = baseline_medians(frame, baseline)
    ok = out["status"] == "ok"
    quiet = ok & ~out["busy"].astype(bool)
    for ratio, metric in ratio_sources(frame).items():
        out[ratio] = _ratio(out[metric], reference[metric]).where(quiet if timed_metrics([metric]) else ok)
    return out


def baseline_medians(frame: pd.DataFrame, baseline: dict[str, Any]) -> pd.Series:
    """Median of every metric over the baseline combination's ok trials, a timed metric's over
    its quiet ones (NaN where none)."""
    metrics = _metric_columns(frame)
    chosen = frame[_matches(frame, baseline) & (frame["status"] == "ok")]
    medians = chosen[metrics].astype(float).median().reindex(metrics)
    timed = timed_metrics(metrics)
    quiet = chosen[~chosen["busy"].astype(bool)]
    medians[timed] = quiet[timed].astype(float).median().reindex(timed)
    return medians


def timed_metrics(metrics: list[str]) -> list[str]:
    """Those of `metrics` whose figure depends on the machine's load (evidence: repeats)."""
    return [m for m in metrics if evidence_unit(m) == "repeats"]


def _matches(frame: pd.DataFrame, baseline: dict[str, Any] | None) -> pd.Series:
    if baseline is None:
        return pd.Series(False, index=frame.index)
    hit = pd.Series(True, index=frame.index)
    for axis, value in baseline.items():
        column = PARAM_PREFIX + axis
        if column not in frame:
            return pd.Series(False, index=frame.index)
        hit &= frame[column].map(lambda v, want=value: v == want)
    return hit


def _combination_keys(frame: pd.DataFrame, axes: list[str]) -> pd.Series:
    # JSON of the swept values: hashable whatever the values are (None, bools, lists)
    if not axes:
        return pd.Series("", index=frame.index)
    return frame[axes].apply(lambda row: json.dumps(list(row), default=str), axis=1)


def _metric_columns(frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns
            if c not in IDENTITY and c not in axis_columns(frame) and c not in RATIO_COLUMNS
            and c not in ("is_baseline", "busy_repeats")]


def _ratio(values: pd.Series, reference: float) -> pd.Series:
    if not np.isfinite(reference) or reference == 0:
        return pd.Series(np.nan, index=values.index)
    return values.astype(float) / reference
