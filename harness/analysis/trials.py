"""One row per trial: identity, status, swept values and metrics, in planned order.

A metric a trial did not measure is NaN here (never 0); why it is missing stays in the
trial's `unmeasured` and is the report's business.
"""

from __future__ import annotations

import math
import re
from typing import Any

import pandas as pd

from harness.spec import VERDICT_BLOCKING

# Every metric DESIGN names, in the order a reader wants them. A column exists for each even
# when no trial measured it, so code downstream never has to ask whether it is there.
METRICS = (
    "tokens_per_s", "step_time_s", "step_time_p10_s", "step_time_p90_s", "step_time_cv",
    "peak_memory_bytes", "peak_reserved_bytes", "peak_rss_bytes", "activation_bytes",
    "flops_per_token", "achieved_tflops", "mfu", "mfu_achievable", "energy_j", "energy_per_token_j",
    "avg_power_w", "final_loss", "eval_loss", "tokens_to_target", "time_to_target_s",
    "flops_to_target", "compile_time_s",
)

# Swept axes become `params.<axis>` columns, the flat export's naming (harness.store.export),
# so one spelling serves both; `repeat` is not an axis and gets a column of its own.
PARAM_PREFIX = "params."
# `busy`: measured on a busy machine (a verdict-blocking warning): its timed figures are shown
# but never pooled or compared (harness.analysis.samples)
IDENTITY = ("trial_id", "name", "status", "reason", "repeat", "busy")
BATCH_SHAPE = ("micro_batch", "grad_accum", "ranks")

_REPEAT_SUFFIX = re.compile(r" #\d+$")


def trial_frame(trials: list[dict[str, Any]]) -> pd.DataFrame:
    """The trials of `ResultStore.trials(run_id)` as a frame, one row each, order kept."""
    axes: list[str] = []
    for trial in trials:
        axes += [axis for axis in trial["params"] if axis != "repeat" and axis not in axes]
    extra_metrics: list[str] = []
    for trial in trials:
        extra_metrics += [m for m in trial.get("metrics", {})
                          if m not in METRICS and m not in extra_metrics]

    rows = []
    for trial in trials:
        params = trial["params"]
        row: dict[str, Any] = {
            "trial_id": trial["trial_id"], "name": trial["name"], "status": trial["status"],
            "reason": trial.get("reason"), "repeat": int(params.get("repeat", 0)),
            "busy": is_busy(trial),
        }
        row.update({PARAM_PREFIX + axis: params.get(axis) for axis in axes})
        row.update(_batch_shape(trial.get("spec") or {}))
        metrics = trial.get("metrics") or {}
        row.update({name: as_number(metrics.get(name)) for name in (*METRICS, *extra_metrics)})
        rows.append(row)
    columns = [*IDENTITY, *(PARAM_PREFIX + a for a in axes), *BATCH_SHAPE, *METRICS, *extra_metrics]
    frame = pd.DataFrame(rows, columns=columns)
    metric_columns = [*METRICS, *extra_metrics]
    frame[metric_columns] = frame[metric_columns].astype(float)
    return frame


def _batch_shape(spec: dict[str, Any]) -> dict[str, Any]:
    """How a trial's optimizer step is made: micro-batch per rank, accumulation, ranks."""
    train, techniques = spec.get("train") or {}, spec.get("techniques") or {}
    return {"micro_batch": train.get("micro_batch_size"),
            "grad_accum": techniques.get("grad_accum", 1),
            "ranks": techniques.get("world_size", 1) * techniques.get("nnodes", 1)}


def is_busy(trial: dict[str, Any]) -> bool:
    """The trial was measured on a busy machine: a warning that blocks verdicts."""
    return any(isinstance(w, dict) and w.get("code") in VERDICT_BLOCKING
               for w in trial.get("warnings") or [])


def axis_columns(frame: pd.DataFrame) -> list[str]:
    """The `params.<axis>` columns of a trial frame: what tells combinations apart."""
    return [c for c in frame.columns if c.startswith(PARAM_PREFIX)]


def combination_name(trial_name: str) -> str:
    """A trial's name without its repeat suffix: "precision=bf16 #2" -> "precision=bf16"."""
    return _REPEAT_SUFFIX.sub("", trial_name)


def memory_metric(frame: pd.DataFrame) -> str:
    """The peak-memory metric a run is judged by: the device allocator's peak when any trial
    measured it (a GPU run), else the host's resident-set peak (a CPU run). One choice per
    run, so a column or a ratio never mixes device bytes with host bytes."""
    if "peak_memory_bytes" in frame and frame["peak_memory_bytes"].notna().any():
        return "peak_memory_bytes"
    return "peak_rss_bytes"


def as_number(value: Any) -> float:
    """A stored figure as a float: NaN for None or anything unparseable.
    JSON may carry a diverged figure as None or a string such as "inf"."""
    if value is None:
        return math.nan
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan
