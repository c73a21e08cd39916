"""What growing a model saves: the cost for the large model to reach the scratch model's
final eval loss, per growth method, against training it from scratch.

Within a group of trials that differ only in `growth.method` (and repeat), the target is the
scratch trials' final eval loss (their mean). A method's cost to the target is where its
eval curve crosses the target (`convergence.crossing`) plus what it spent before the large
model's training started:

    without the small model   + the growth operator's training (LiGO counts its operator
                                steps, as Wang et al. 2023 do; stacking has no operator)
    with the small model      + the small model's training too

The saving is 1 - cost / scratch cost, in tokens, FLOPs and wall time. Repeats of a method are
averaged evaluation by evaluation before the crossing is found, so the scratch curve's mean
ends exactly at the target (a single repeat that ends above the mean would never reach it).
"""

from __future__ import annotations

import json
import math
from typing import Any

import pandas as pd

from harness.analysis.convergence import crossing, final_eval_loss
from harness.analysis.trials import PARAM_PREFIX, axis_columns

METHOD_AXIS = PARAM_PREFIX + "growth.method"
SCRATCH = "scratch"
COSTS = ("tokens", "flops", "time_s")  # also the metrics' suffixes: operator_time_s, ...
# the costs each known method must have stored; any other prior cost a method lacks is 0
# (stacking trains no operator; scratch trains neither)
EXPECTED_PRIORS = {SCRATCH: (), "stack": ("small_train",), "ligo": ("small_train", "operator")}

GROWTH_COLUMNS = (
    "group", "method", "repeats", "target_loss",
    "crossing_tokens", "crossing_flops", "crossing_time_s",
    "tokens", "flops", "time_s", "tokens_with_small", "flops_with_small", "time_s_with_small",
    "tokens_saving", "flops_saving", "time_saving",
    "tokens_saving_with_small", "flops_saving_with_small", "time_saving_with_small", "note",
)


def growth_savings(frame: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (group, method), scratch first: costs to the target and savings against
    scratch (GROWTH_COLUMNS). `frame` is `trial_frame(...)`, `curves` is `eval_curves(...)`.
    Only ok trials count. A method that never reaches the target has NaN costs and savings
    and says why in `note`. Empty when no trial sweeps `growth.method`."""
    if METHOD_AXIS not in frame or curves.empty:
        return pd.DataFrame(columns=list(GROWTH_COLUMNS))
    ok = frame[(frame["status"] == "ok") & frame[METHOD_AXIS].notna()]
    others = [axis for axis in axis_columns(frame) if axis != METHOD_AXIS]
    rows: list[dict[str, Any]] = []
    if not ok.empty:
        keys = _group_keys(ok, others)
        for key in dict.fromkeys(keys):
            group = ok[keys == key]
            rows += _group_rows(group, curves, _group_name(group, others))
    return pd.DataFrame(rows, columns=list(GROWTH_COLUMNS))


def _group_rows(group: pd.DataFrame, curves: pd.DataFrame, name: str) -> list[dict[str, Any]]:
    methods = list(dict.fromkeys(group[METHOD_AXIS]))
    methods.sort(key=lambda m: m != SCRATCH)  # stable: scratch first, the rest as planned
    mean_curves = {m: _mean_curve(group[group[METHOD_AXIS] == m], curves) for m in methods}
    scratch = mean_curves.get(SCRATCH)
    target = final_eval_loss(scratch) if scratch is not None and not scratch.empty else math.nan
    rows = [_method_row(name, method, group[group[METHOD_AXIS] == method], mean_curves[method],
                        target) for method in methods]
    reference = next((row for row in rows if row["method"] == SCRATCH), None)
    for row in rows:
        for cost in COSTS:
            for suffix in ("", "_with_small"):
                base = reference[cost + suffix] if reference is not None else math.nan
                row[f"{cost.removesuffix('_s')}_saving{suffix}"] = _saving(row[cost + suffix], base)
    return rows


def _method_row(group: str, method: str, trials: pd.DataFrame, curve: pd.DataFrame,
                target: float) -> dict[str, Any]:
    row: dict[str, Any] = {"group": group, "method": method, "repeats": len(trials),
                           "target_loss": target, "note": ""}
    notes = []
    if math.isnan(target):
        notes.append("no ok scratch trial with eval losses in this group: no target")
    reached = crossing(curve, target) if not curve.empty else None
    if curve.empty:
        notes.append("no eval losses stored")
    elif reached is None and not math.isnan(target):
        notes.append(f"never reached the target {target:.4g} (best {curve['loss'].min():.4g} "
                     f"after {curve['tokens'].iloc[-1]:,.0f} tokens)")
    operator, small = (_prior(trials, method, prefix) for prefix in ("operator", "small_train"))
    for prefix, spent in (("operator", operator), ("small_train", small)):
        missing = [f"{prefix}_{c}" for c in COSTS if math.isnan(spent[c])]
        if missing:
            notes.append(f"{', '.join(missing)} not stored")
    for cost in COSTS:
        at = reached[cost] if reached is not None else math.nan
        row[f"crossing_{cost}"] = at
        row[cost] = at + operator[cost]
        row[cost + "_with_small"] = at + operator[cost] + small[cost]
    row["note"] = "; ".join(notes)
    return row


def _prior(trials: pd.DataFrame, method: str, prefix: str) -> dict[str, float]:
    """Mean over the repeats of one prior cost (operator or small model): 0 where the method
    does not have it, NaN where it should and a trial did not store it."""
    expected = prefix in EXPECTED_PRIORS.get(method, ())
    out = {}
    for cost in COSTS:
        column = f"{prefix}_{cost}"
        values = trials[column] if column in trials else pd.Series(math.nan, index=trials.index)
        if values.isna().any():
            # an unknown method may or may not have the cost: what it stored counts, else 0
            out[cost] = math.nan if expected or values.notna().any() else 0.0
        else:
            out[cost] = float(values.mean())
    return out


def _mean_curve(trials: pd.DataFrame, curves: pd.DataFrame) -> pd.DataFrame:
    """The repeats' curves averaged evaluation by evaluation (repeats share the schedule);
    only evaluations every repeat has are kept."""
    parts = [curves[curves["trial_id"] == trial_id].reset_index(drop=True)
             for trial_id in trials["trial_id"]]
    parts = [part for part in parts if not part.empty]
    if not parts:
        return pd.DataFrame(columns=["tokens", "loss", "time_s", "flops"])
    length = min(len(part) for part in parts)
    stacked = pd.concat([part.iloc[:length][["tokens", "loss", "time_s", "flops"]] for part in parts])
    return stacked.groupby(level=0).mean().sort_index()


def _saving(cost: float, reference: float) -> float:
    if math.isnan(cost) or math.isnan(reference) or reference <= 0:
        return math.nan
    return 1.0 - cost / reference


def _group_keys(frame: pd.DataFrame, axes: list[str]) -> pd.Series:
    # JSON of the other swept values: hashable whatever they are (None, lists, bools)
    if not axes:
        return pd.Series("", index=frame.index)
    return frame[axes].apply(lambda row: json.dumps(list(row), default=str), axis=1)


def _group_name(group: pd.DataFrame, axes: list[str]) -> str:
    first = group.iloc[0]
    return " ".join(f"{axis.removeprefix(PARAM_PREFIX)}={first[axis]}" for axis in axes) or "all"
