"""Export a run's trials: JSON (one object per trial, DESIGN's shape), CSV and Parquet
(one flat row per trial: params.*, metrics, status), and pytest-benchmark's JSON (step times of
the ok trials, for `pytest-benchmark compare` and its dashboards)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from harness.errors import InputError
from harness.files import write_file
from harness.store.pytest_benchmark import pytest_benchmark_json

FORMATS = ("json", "csv", "parquet", "pytest-benchmark")
JSON_KEYS = ("schema_version", "run_id", "scenario", "trial_id", "name", "params", "status",
             "reason", "metrics", "unmeasured", "notes", "warnings", "scenario_hash",
             "harness_version", "git_commit", "git_dirty", "started_at", "finished_at", "spec",
             "env", "run", "position", "series")


def export_trials(trials: list[dict[str, Any]], fmt: str, out: Path | None) -> str | None:
    """Write `trials` (`ResultStore.trials(run_id, with_series=True)`) to `out`, or return the
    text (JSON and CSV, for standard output)."""
    if fmt == "json":
        # strict JSON (no bare NaN/Infinity, which JSON has not): a non-finite figure as the string
        # import reads back ("nan", "inf", "-inf")
        text = json.dumps(_json_safe([{key: trial[key] for key in JSON_KEYS if key in trial}
                                      for trial in trials]), indent=2, allow_nan=False)
        return _write_text(text + "\n", out)
    if fmt == "pytest-benchmark":
        # allow_nan=False: the document is read by JavaScript dashboards too, which reject NaN
        text = json.dumps(pytest_benchmark_json(trials), indent=4, allow_nan=False)
        return _write_text(text + "\n", out)
    frame = flat_frame(trials)
    if fmt == "csv":
        return _write_text(frame.to_csv(index=False), out)
    if fmt == "parquet":
        if out is None:
            raise InputError("parquet is binary: give --out FILE", field="--out")
        try:
            frame.to_parquet(out, index=False)
        except ImportError:
            raise InputError("parquet export needs pyarrow: pip install 'harness[parquet]'",
                             field="--format") from None
        return None
    raise InputError(f"unknown format '{fmt}' ({', '.join(FORMATS)})", field="--format")


def flat_frame(trials: list[dict[str, Any]]) -> pd.DataFrame:
    rows = []
    for trial in trials:
        row = {key: trial[key] for key in ("run_id", "scenario", "trial_id", "name", "status", "reason")}
        row.update({f"params.{k}": v for k, v in trial["params"].items()})
        row.update(trial["metrics"])
        row.update({"device": trial["env"].get("device"), "device_name": trial["env"].get("device_name"),
                    "git_commit": trial["git_commit"], "harness_version": trial["harness_version"]})
        rows.append(row)
    return pd.DataFrame(rows)


def _write_text(text: str, out: Path | None) -> str | None:
    if out is None:
        return text
    write_file(out, text, field="--out")
    return None


def _json_safe(value: Any) -> Any:
    """`value` with every non-finite float, however deep, as its string ('nan', 'inf', '-inf')."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)
    if isinstance(value, dict):
        return {key: _json_safe(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_safe(item) for item in value]
    return value
