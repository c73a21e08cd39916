"""Scaling of data-parallel trials: throughput per device against ranks, and efficiency.

Within a group of trials that differ only in their rank count (world_size x nnodes), the
smallest is the reference. Efficiency = (tokens/s per device at N ranks) / (at the reference).
When the group keeps its global batch fixed that is strong-scaling efficiency; when it keeps
the per-device micro-batch fixed (the global batch grows with N) it is weak-scaling
efficiency. Either way 1.0 is ideal: per-device throughput held as ranks were added.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from harness.analysis.trials import PARAM_PREFIX, axis_columns

RANK_AXES = (PARAM_PREFIX + "world_size", PARAM_PREFIX + "nnodes")


def scaling_frame(frame: pd.DataFrame) -> pd.DataFrame | None:
    """One row per ok trial of a scenario that sweeps world_size or nnodes, with `ranks`,
    `global_batch`, `micro_batch`, `tokens_per_s_per_device`, `kind` (strong|weak) and
    `efficiency` against the group's smallest rank count; None when nothing is swept."""
    axes = axis_columns(frame)
    if not any(axis in axes for axis in RANK_AXES):
        return None
    ok = frame[frame["status"] == "ok"].copy()
    if ok.empty:
        return None
    ok["global_batch"] = ok["micro_batch"] * ok["grad_accum"] * ok["ranks"]
    ok["tokens_per_s_per_device"] = ok["tokens_per_s"] / ok["ranks"]
    group_by = [a for a in axes if a not in RANK_AXES]
    groups = ok.groupby(group_by, sort=False, dropna=False) if group_by else [((), ok)]
    rows = []
    for key, group in groups:
        group = group.sort_values("ranks")
        reference = group.iloc[0]
        kind = "strong" if group["global_batch"].nunique() == 1 else "weak"
        for _, row in group.iterrows():
            rows.append({**row.to_dict(), "group": _group_name(group_by, key), "kind": kind,
                         "efficiency": row["tokens_per_s_per_device"]
                         / reference["tokens_per_s_per_device"]})
    return pd.DataFrame(rows)


def _group_name(columns: list[str], key: Any) -> str:
    values = key if isinstance(key, tuple) else (key,)
    return " ".join(f"{c.removeprefix(PARAM_PREFIX)}={v}" for c, v in zip(columns, values)) or "all"
