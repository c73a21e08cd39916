"""Which technique bought what: main effects and two-way interactions of a factorial sweep.

A scenario that sweeps techniques as a cartesian product (precision x checkpointing x
compile) answers more than "which combination won": each technique's own effect on a
metric and whether two techniques help each other. Throughput and memory compose by
multiplication (a 1.5x and a 2x speed-up give 3x when independent), so effects are taken on
log(metric) and reported as ratios: a main effect of 1.8 means "this level, all else held
equal, gives 1.8x the reference level's figure", and an interaction of 1.0 means the two
techniques' effects simply multiply (>1 they reinforce each other, <1 they overlap).

Every effect averages only over the cells where all the combinations it compares have a
finite positive figure, and says how many cells that was; a level with none gets NaN and
cells 0, never a made-up figure.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from harness.analysis.trials import PARAM_PREFIX, axis_columns

EFFECT_COLUMNS = ("kind", "factors", "levels", "ratio", "cells", "metric")


@dataclass(frozen=True)
class Factor:
    """A swept axis with 2+ levels: its name, its levels in row order, the reference's index."""
    name: str
    levels: list[Any]
    reference: int


def factorial_effects(combos: pd.DataFrame, metric: str,
                      baseline: dict[str, Any] | None) -> pd.DataFrame:
    """Main effects of every non-reference level of every factor, then two-way interactions
    of every pair of factors, as EFFECT_COLUMNS rows in axis order then level order.

    `combos` has one row per combination: `params.<axis>` columns and the `metric` column.
    `baseline` maps axis names (without the prefix) to the reference level; an axis it does
    not name takes its first level in row order."""
    if metric not in combos:
        raise KeyError(f"no column {metric!r} in the combinations frame")
    factors = _factors(combos, baseline or {})
    if not factors:
        return _empty()
    log_cells = _log_cell_array(combos, metric, factors)
    rows = []
    for axis, factor in enumerate(factors):
        reference = _label(factor.levels[factor.reference])
        for level in _others(factor):
            ratio, cells = _main_effect(log_cells, axis, level, factor.reference)
            rows.append(("main", factor.name, f"{_label(factor.levels[level])} vs {reference}",
                         ratio, cells))
    for (axis_a, a), (axis_b, b) in itertools.combinations(enumerate(factors), 2):
        for level_a, level_b in itertools.product(_others(a), _others(b)):
            ratio, cells = _interaction(log_cells, (axis_a, level_a, a.reference),
                                        (axis_b, level_b, b.reference))
            rows.append(("interaction", f"{a.name} × {b.name}",
                         f"{_label(a.levels[level_a])} × {_label(b.levels[level_b])}",
                         ratio, cells))
    out = pd.DataFrame([(*row, metric) for row in rows], columns=list(EFFECT_COLUMNS))
    return out.astype({"ratio": float, "cells": int})


def effects_summary(combos: pd.DataFrame, metrics: list[str],
                    baseline: dict[str, Any] | None) -> pd.DataFrame:
    """factorial_effects for each of `metrics` in turn, one frame; a metric the frame lacks
    or that no combination measured is left out rather than filling the table with NaN."""
    frames = [factorial_effects(combos, metric, baseline) for metric in metrics
              if metric in combos and combos[metric].notna().any()]
    frames = [frame for frame in frames if not frame.empty]
    if not frames:
        return _empty()
    return pd.concat(frames, ignore_index=True)


def _factors(combos: pd.DataFrame, baseline: dict[str, Any]) -> list[Factor]:
    factors = []
    for column in axis_columns(combos):
        name = column.removeprefix(PARAM_PREFIX)
        levels = _distinct(combos[column])
        if len(levels) < 2:
            continue  # held fixed in this sweep: not a factor
        reference = 0
        if name in baseline:
            reference = _index_of(levels, baseline[name])
            if reference is None:
                raise ValueError(f"baseline {name}={_label(baseline[name])} is not among the "
                                 f"swept levels {', '.join(map(_label, levels))}")
        factors.append(Factor(name, levels, reference))
    return factors


def _log_cell_array(combos: pd.DataFrame, metric: str, factors: list[Factor]) -> np.ndarray:
    """log(metric) on the grid of factor levels, one axis per factor; NaN where a cell is
    absent or its figure is not finite and positive (a log would be meaningless)."""
    values = combos[metric].astype(float).to_numpy()
    logs = np.full(values.shape, np.nan)
    usable = np.isfinite(values) & (values > 0)
    logs[usable] = np.log(values[usable])
    codes = pd.DataFrame({f.name: [_index_of(f.levels, v) for v in combos[PARAM_PREFIX + f.name]]
                          for f in factors})
    # a cell given twice (should not happen) counts as the geometric mean of its usable rows
    per_cell = pd.Series(logs, index=pd.MultiIndex.from_frame(codes)).groupby(
        level=list(codes)).mean()
    grid = np.full([len(f.levels) for f in factors], np.nan)
    for cell, value in per_cell.items():
        grid[cell if isinstance(cell, tuple) else (cell,)] = value
    return grid


def _main_effect(log_cells: np.ndarray, axis: int, level: int, reference: int) -> tuple[float, int]:
    difference = log_cells.take(level, axis=axis) - log_cells.take(reference, axis=axis)
    return _geometric_ratio(difference)


def _interaction(log_cells: np.ndarray, first: tuple[int, int, int],
                 second: tuple[int, int, int]) -> tuple[float, int]:
    """Difference of differences: (a,b) - (a0,b) - (a,b0) + (a0,b0), per cell of the rest."""
    axis_a, level_a, reference_a = first
    axis_b, level_b, reference_b = second

    def at(a: int, b: int) -> np.ndarray:
        # axis_a < axis_b, so taking along axis_b first leaves axis_a's position unchanged
        return log_cells.take(b, axis=axis_b).take(a, axis=axis_a)

    contrast = (at(level_a, level_b) - at(reference_a, level_b)
                - at(level_a, reference_b) + at(reference_a, reference_b))
    return _geometric_ratio(contrast)


def _geometric_ratio(log_differences: np.ndarray) -> tuple[float, int]:
    # NaN in any term leaves the whole contrast NaN, so a cell counts only when all are usable
    usable = log_differences[np.isfinite(log_differences)]
    if usable.size == 0:
        return math.nan, 0
    return float(np.exp(usable.mean())), int(usable.size)


def _others(factor: Factor) -> list[int]:
    return [i for i in range(len(factor.levels)) if i != factor.reference]


def _distinct(values: pd.Series) -> list[Any]:
    # levels may be None, bools or lists (unhashable): compare with ==, keep row order
    levels: list[Any] = []
    for value in values:
        if _index_of(levels, value) is None:
            levels.append(value)
    return levels


def _index_of(levels: list[Any], value: Any) -> int | None:
    return next((i for i, level in enumerate(levels) if _same_level(level, value)), None)


def _same_level(left: Any, right: Any) -> bool:
    # pandas may hold a None level as NaN: both mean "not set", so they are one level
    if _is_missing(left) or _is_missing(right):
        return _is_missing(left) and _is_missing(right)
    # bool is an int to ==, but True and 1 are different levels of a sweep
    if isinstance(left, (bool, np.bool_)) != isinstance(right, (bool, np.bool_)):
        return False
    return bool(left == right)


def _is_missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _label(value: Any) -> str:
    """A level as trial names spell it (harness.scenario.matrix): bools lowercase."""
    if _is_missing(value):
        return "None"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value)).lower()
    return str(value)


def _empty() -> pd.DataFrame:
    return pd.DataFrame(columns=list(EFFECT_COLUMNS)).astype({"ratio": float, "cells": int})
