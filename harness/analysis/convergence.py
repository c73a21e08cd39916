"""Eval-loss curves of convergence trials and where they cross a target loss.

A trial that sets train.target_loss or train.eval_every_tokens stores three aligned series,
one point per evaluation: `eval_tokens` (global tokens trained, from 0), `eval_loss` (nats)
and `eval_time_s` (training wall time, evaluations left out). The trial's own
`tokens_to_target` is the first evaluation at or below the target, so it overshoots the true
crossing by up to one evaluation interval; `crossing` interpolates between the two
evaluations that bracket it, which is what comparing methods with different curves needs.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Any

import pandas as pd

from harness.analysis.trials import as_number

EVAL_SERIES = ("eval_tokens", "eval_loss", "eval_time_s")
EVAL_CURVE_COLUMNS = ("trial_id", "name", "tokens", "loss", "time_s", "flops")


def eval_curves(series_rows: Iterable[tuple[str, str, int, float | None]],
                trials: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (trial, evaluation), in planned trial order, for the trials that stored
    `eval_tokens` and `eval_loss`. `flops` is tokens x the trial's model FLOPs per token
    (NaN where the trial has none); `time_s` is NaN where `eval_time_s` is missing. A NULL
    loss (NaN in the trial) is NaN; an infinite one stays infinite."""
    order = {trial["trial_id"]: index for index, trial in enumerate(trials)}
    points: dict[str, dict[str, dict[int, float]]] = defaultdict(lambda: defaultdict(dict))
    for trial_id, series, step, value in series_rows:
        if series in EVAL_SERIES and trial_id in order:
            points[trial_id][series][int(step)] = math.nan if value is None else float(value)
    rows = []
    for trial in trials:
        found = points.get(trial["trial_id"])
        if not found or not found["eval_tokens"] or not found["eval_loss"]:
            continue
        per_token = _flops_per_token(trial)
        # the three series are appended together, so evaluation i is index i in each
        for index in sorted(set(found["eval_tokens"]) & set(found["eval_loss"])):
            tokens = found["eval_tokens"][index]
            rows.append((trial["trial_id"], trial["name"], tokens, found["eval_loss"][index],
                         found["eval_time_s"].get(index, math.nan), tokens * per_token))
    frame = pd.DataFrame(rows, columns=list(EVAL_CURVE_COLUMNS))
    return frame.astype({"tokens": float, "loss": float, "time_s": float, "flops": float})


def crossing(curve: pd.DataFrame, target: float | None) -> dict[str, float] | None:
    """Tokens, training time and FLOPs at which one trial's eval loss first reaches
    `target` (loss <= target), linearly interpolated between the two bracketing evaluations:
    in tokens, and by the same fraction of the interval in time and FLOPs. None when the
    curve never reaches it (or there is no target). `curve` is one trial's rows of
    `eval_curves`, in evaluation order."""
    if target is None or not math.isfinite(target) or curve.empty:
        return None
    previous = None
    for point in curve[["tokens", "loss", "time_s", "flops"]].itertuples(index=False):
        if math.isfinite(point.loss) and point.loss <= target:
            if previous is None:  # already there at the first evaluation (or after a gap)
                return {"tokens": point.tokens, "time_s": point.time_s, "flops": point.flops}
            fraction = (previous.loss - target) / (previous.loss - point.loss)
            return {key: getattr(previous, key) + fraction * (getattr(point, key) - getattr(previous, key))
                    for key in ("tokens", "time_s", "flops")}
        # a NaN or infinite evaluation gives nothing to interpolate from
        previous = point if math.isfinite(point.loss) else None
    return None


def final_eval_loss(curve: pd.DataFrame) -> float:
    """The last finite eval loss of one trial's curve (NaN when there is none)."""
    finite = curve.loc[curve["loss"].map(math.isfinite), "loss"]
    return float(finite.iloc[-1]) if len(finite) else math.nan


def _flops_per_token(trial: dict[str, Any]) -> float:
    return as_number((trial.get("metrics") or {}).get("flops_per_token"))
