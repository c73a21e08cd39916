"""Loss curves as a tidy frame: one row per (trial, step)."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import pandas as pd

CURVE_COLUMNS = ("trial_id", "name", "step", "loss", "warmup")


def loss_curves(series_rows: Iterable[tuple[str, str, int, float | None]],
                trials: list[dict[str, Any]]) -> pd.DataFrame:
    """The "loss" series of `ResultStore.series(run_id)`, with each trial's name and whether
    a step was a warm-up step (the first `spec.train.warmup_steps`), in planned trial order.
    A missing value (a NaN loss, stored as NULL) is NaN; an infinite one stays infinite."""
    order = {trial["trial_id"]: index for index, trial in enumerate(trials)}
    names = {trial["trial_id"]: trial["name"] for trial in trials}
    warmups = {trial["trial_id"]: _warmup_steps(trial) for trial in trials}
    rows = [
        (trial_id, names[trial_id], int(step), math.nan if value is None else float(value),
         int(step) < warmups[trial_id])
        for trial_id, series, step, value in series_rows
        if series == "loss" and trial_id in order
    ]
    frame = pd.DataFrame(rows, columns=list(CURVE_COLUMNS))
    frame = frame.astype({"step": int, "loss": float, "warmup": bool})
    frame["_order"] = frame["trial_id"].map(order)
    frame = frame.sort_values(["_order", "step"], kind="stable").drop(columns="_order")
    return frame.reset_index(drop=True)


def _warmup_steps(trial: dict[str, Any]) -> int:
    return int(((trial.get("spec") or {}).get("train") or {}).get("warmup_steps") or 0)
