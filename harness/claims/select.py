"""Which trials of a run a claim compares.

A selector maps axis names (`precision`) or dotted spec fields (`model.n_experts`) to values.
Axes the selector leaves open are narrowed to one value each, so the two sides differ only
where the claim says: the run's baseline value when it is among the matches, else the first
value in planned order. Axes in the claim's `pool` (e.g. `train.seed`) are kept whole, their
trials pooled like repeats.
"""

from __future__ import annotations

from typing import Any

from harness.scenario.schema import KINDS

_MISSING = object()


def field_value(trial: dict[str, Any], key: str) -> Any:
    """The value of an axis or a dotted spec field in one trial (`_MISSING` when absent)."""
    params = trial.get("params") or {}
    if key in params:
        return params[key]
    spec = trial.get("spec") or {}
    section, dot, name = key.partition(".")
    if not dot:
        return (spec.get("techniques") or {}).get(key, _MISSING)
    if isinstance(spec.get(section), dict):
        return spec[section].get(name, _MISSING)
    if KINDS.get(spec.get("kind")) == section:  # growth.method lives in the kind's settings
        return (spec.get("kind_settings") or {}).get(name, _MISSING)
    return _MISSING


def matches(trial: dict[str, Any], selector: dict[str, Any]) -> bool:
    return all(_same(field_value(trial, key), value) for key, value in selector.items())


def select(trials: list[dict[str, Any]], selector: dict[str, Any], run_baseline: dict[str, Any] | None,
           pool: list[str]) -> list[dict[str, Any]]:
    """The trials (every status) of one combination matching `selector`, its repeats and
    pooled axes included; empty when nothing matches."""
    chosen = [trial for trial in trials if matches(trial, selector)]
    if not chosen:
        return []
    open_axes = [axis for axis in chosen[0]["params"]
                 if axis != "repeat" and axis not in selector and axis not in pool]
    for axis in open_axes:
        values: list[Any] = []
        for trial in chosen:
            value = trial["params"].get(axis)
            if not any(_same(value, seen) for seen in values):
                values.append(value)
        if len(values) < 2:
            continue
        preferred = (run_baseline or {}).get(axis, _MISSING)
        keep = preferred if any(_same(preferred, v) for v in values) else values[0]
        chosen = [trial for trial in chosen if _same(trial["params"].get(axis), keep)]
    return chosen


def _same(a: Any, b: Any) -> bool:
    # True == 1 in Python; a selector `grad_accum: 1` must not match `compile: true`
    return type(a) is type(b) and a == b if isinstance(a, bool) or isinstance(b, bool) else a == b
