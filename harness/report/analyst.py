"""The parts of a report an analyst reads first: the best configuration by throughput, memory
and energy, each combination against the baseline with its interval and test, the main
effects and interactions of the swept techniques, and the verdicts of the claims the run
bears on. Statistics come from `harness.analysis` and `harness.claims`; this only phrases them.
"""

from __future__ import annotations

import math
from typing import Any

import pandas as pd

from harness.analysis import effects_summary
from harness.analysis.samples import BUSY, compare_metric
from harness.analysis.stats import Estimate, RunNoise
from harness.analysis.trials import PARAM_PREFIX, combination_name
from harness.report import units
from harness.report.claims_table import measured_text
from harness.report.tables import MEMORY_LABELS, Table

HOW = {
    "statistics": "Each ratio is the combination's geometric mean over the baseline's, over "
                  "independent runs (repeats, each its own process; per-step times are never "
                  "samples), with a 95% interval from Welch's t on the log figures; a difference "
                  "is called only when p < 0.05, which is when the interval excludes 1. With one "
                  "run per side there is no test (unless earlier runs of this scenario on this "
                  "machine give the run-to-run noise: the basis says so); counted figures such as "
                  "bytes are exact. Trials measured on a busy machine are left out.",
    "effects": "Main effect: the geometric mean, over every setting of the other techniques, of "
               "the ratio a technique's level gives against the baseline level. Interaction: how "
               "much two techniques together give beyond the product of their main effects "
               "(1.00× = they multiply; above 1 they reinforce, below 1 they overlap).",
    "claims": "Each claim, its source and the range it claims; the measured value with its 95% "
              "interval, on this run's hardware. `harness claims` gives every claim's verdict "
              "from all stored runs.",
}


def summary_lines(combos: pd.DataFrame, memory: str, trials: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """(what, answer) for the best combination by throughput, by memory and by energy."""
    ok = combos[combos["ok_repeats"] > 0]
    lines = []
    for label, column, pick, fmt in (
            ("fastest (tokens/s)", "tokens_per_s", "max", units.tokens_per_s),
            (f"least memory ({MEMORY_LABELS[memory]})", memory, "min", units.size),
            ("least energy per token", "energy_per_token_j", "min", _millijoules)):
        values = ok[column].astype(float) if column in ok else pd.Series(dtype=float)
        if not values.notna().any():
            lines.append((label, _unmeasured_reason(column, trials)))
            continue
        best = values.idxmax() if pick == "max" else values.idxmin()
        row = ok.loc[best]
        base = " (the baseline)" if row["is_baseline"] else ""
        lines.append((label, f"{row['combination']}{base}: {fmt(row[column])}"))
    return lines


def statistics_table(trials: list[dict[str, Any]], baseline_name: str | None,
                     memory: str, noise: dict[str, RunNoise] | None = None) -> Table | None:
    """Every combination against the baseline: throughput and memory ratios with intervals."""
    groups: dict[str, list[dict[str, Any]]] = {}
    for trial in trials:
        groups.setdefault(combination_name(trial["name"]), []).append(trial)
    if baseline_name is None or baseline_name not in groups or len(groups) < 2:
        return None
    base = groups[baseline_name]
    headers = ["combination", "speedup (95% interval)", "throughput", "p",
               f"{MEMORY_LABELS[memory]} ratio (95% interval)", "memory", "basis"]
    rows = []
    noise = noise or {}
    for name, group in groups.items():
        if name == baseline_name or not any(t["status"] == "ok" for t in group):
            continue
        speed = compare_metric(group, base, "tokens_per_s", noise.get("tokens_per_s"))
        mem = compare_metric(group, base, memory, noise.get(memory))
        basis = "; ".join(part for part in (speed.basis, speed.caveat) if part)
        rows.append([name, measured_text("ratio", speed), _called(speed, "faster", "slower"),
                     units.DASH if math.isnan(speed.p_value) else f"{speed.p_value:.2g}",
                     measured_text("ratio", mem), _called(mem, "more", "less"), basis])
    if not rows:
        return None
    return Table(headers, rows, [], [False, True, False, True, True, False, False])


def effects_table(combos: pd.DataFrame, baseline: dict[str, Any] | None, memory: str) -> Table | None:
    """Main effects and two-way interactions, when two or more techniques were swept."""
    factors = [c for c in combos.columns if c.startswith(PARAM_PREFIX)
               and combos[c].astype(str).nunique() > 1]
    if len(factors) < 2:
        return None
    effects = effects_summary(combos, ["tokens_per_s", memory], baseline or {})
    if effects.empty:
        return None
    headers = ["effect", "techniques", "levels", "metric", "ratio", "cells averaged"]
    rows = [[row["kind"], row["factors"], row["levels"],
             "tokens/s" if row["metric"] == "tokens_per_s" else MEMORY_LABELS[memory],
             units.ratio(row["ratio"]), str(int(row["cells"]))]
            for row in effects.to_dict("records")]
    return Table(headers, rows, [], [False, False, False, False, True, True])


def _called(estimate: Estimate, up: str, down: str) -> str:
    if estimate.busy:
        return BUSY
    if math.isnan(estimate.point):
        return units.DASH
    if not estimate.tested:
        return "no test"
    if not estimate.significant:
        return "no significant difference"
    return up if estimate.point > 1 else down


def _millijoules(value: float) -> str:
    return units.DASH if value is None or value != value else f"{1e3 * value:.3g} mJ/token"


def _unmeasured_reason(metric: str, trials: list[dict[str, Any]]) -> str:
    related = {metric, "energy_j"} if metric.startswith("energy") else {metric}
    for trial in trials:
        reason = next(((trial.get("unmeasured") or {}).get(m) for m in related
                       if (trial.get("unmeasured") or {}).get(m)), None)
        if reason:
            return f"not measured: {reason}"
    return "not measured on this run"
