"""Side by side: one scenario's trials on several machines, and what a million tokens cost there.

Each results path (a database, a JSON export, a folder of exports) is one machine. For every
ok trial name found in any of them, one row per machine: throughput, throughput per device,
tokens per joule, MFU, peak memory and $ per million tokens. A figure a trial did not measure
has no value and carries the trial's reason instead, never 0; a trial missing on one machine
(absent, failed, out of memory, or measured on a busy machine) is a row that says so, because
that is what a buyer must see.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from harness.analysis.samples import busy_messages, is_busy
from harness.analysis.trials import as_number
from harness.errors import InputError, did_you_mean
from harness.procure.prices import (
    LoadedPrices,
    device_usd_per_million_tokens,
    energy_usd_per_million_tokens,
    price_for,
)
from harness.store import RunInfo, open_results

# The figures of a row, in the order a reader wants them.
FIGURES = ("tokens_per_s", "devices", "tokens_per_s_per_device", "tokens_per_j", "mfu",
           "peak_memory_bytes", "usd_per_mtok", "energy_usd_per_mtok")
COST_FIGURES = ("usd_per_mtok", "energy_usd_per_mtok")


@dataclass(frozen=True)
class ResultsSource:
    """One results path as the user named it, the run chosen in it and that run's trials."""

    path: str
    run: RunInfo
    trials: list[dict[str, Any]]

    @property
    def device_name(self) -> str:
        return str(self.run.env.get("device_name") or self.run.device or "unknown device")


@dataclass(frozen=True)
class Row:
    trial: str
    results: str
    hardware: str
    figures: dict[str, float] = field(default_factory=dict)
    missing: dict[str, str] = field(default_factory=dict)  # figure -> why it has no value
    price_key: str | None = None  # the prices file's device key used, if any


def load_sources(paths: list[str] | list[Path], scenario: str | None = None
                 ) -> tuple[str, list[ResultsSource]]:
    """(scenario, sources): the latest run of `scenario` in every path; by default the
    scenario of the first path's latest run. A path without such a run is an InputError."""
    if not paths:
        raise InputError("name at least one results path", field="RESULTS")
    stores = [(str(path), open_results(path)) for path in paths]
    if scenario is None:
        first_path, first = stores[0]
        try:
            scenario = first.run().scenario
        except InputError:
            raise InputError("no run in these results", file=first_path) from None
    sources = []
    for path, store in stores:
        try:
            run = store.run(scenario=scenario)
        except InputError:
            known = [r["scenario"] for r in store.runs()]
            raise InputError(f"no run of scenario '{scenario}'{did_you_mean(scenario, known)}",
                             file=path, field="--scenario") from None
        sources.append(ResultsSource(path, run, store.trials(run.run_id)))
    return scenario, sources


def device_count(trial: dict[str, Any]) -> int:
    """Devices a trial ran on: ranks per node x nodes, as the techniques section says."""
    techniques = (trial.get("spec") or {}).get("techniques") or {}
    return int(techniques.get("world_size") or 1) * int(techniques.get("nnodes") or 1)


def side_by_side(sources: list[ResultsSource], prices: LoadedPrices) -> list[Row]:
    """Rows grouped by trial name (first seen first), one per source within each group."""
    names: list[str] = []
    for source in sources:
        names += [t["name"] for t in source.trials
                  if t["status"] == "ok" and t["name"] not in names]
    rows = []
    for name in names:
        for source in sources:
            trial = next((t for t in source.trials
                          if t["name"] == name and t["status"] == "ok" and not is_busy(t)), None)
            rows.append(trial_row(trial, source.path, prices) if trial is not None
                        else absent_row(name, source))
    return rows


def trial_row(trial: dict[str, Any], results: str, prices: LoadedPrices) -> Row:
    metrics = trial.get("metrics") or {}
    unmeasured = trial.get("unmeasured") or {}
    figures: dict[str, float] = {}
    missing: dict[str, str] = {}

    def measured(metric: str) -> float | None:
        return finite_or_none(metrics.get(metric))

    def why(metric: str) -> str:
        return str(unmeasured.get(metric) or f"{metric} was not recorded")

    devices = device_count(trial)
    figures["devices"] = float(devices)
    tokens_per_s = measured("tokens_per_s")
    if tokens_per_s is not None and tokens_per_s > 0:
        figures["tokens_per_s"] = tokens_per_s
        figures["tokens_per_s_per_device"] = tokens_per_s / devices
    else:
        missing["tokens_per_s"] = missing["tokens_per_s_per_device"] = why("tokens_per_s")
    energy_per_token = measured("energy_per_token_j")
    if energy_per_token is not None and energy_per_token > 0:
        figures["tokens_per_j"] = 1 / energy_per_token
    else:
        energy_per_token = None
        missing["tokens_per_j"] = why("energy_per_token_j")
    for metric in ("mfu", "peak_memory_bytes"):
        value = measured(metric)
        if value is None:
            missing[metric] = why(metric)
        else:
            figures[metric] = value

    env = trial.get("env") or {}
    device_name = str(env.get("device_name") or "unknown device")
    match = price_for(prices.book, device_name)
    if match is None:
        reason = f"no price for {device_name} in {prices.path}"
        missing.update(dict.fromkeys(COST_FIGURES, reason))
    elif "tokens_per_s" not in figures:
        missing.update(dict.fromkeys(COST_FIGURES, f"no throughput: {missing['tokens_per_s']}"))
    else:
        total = device_usd_per_million_tokens(match.price.usd_per_device_hour, devices,
                                              figures["tokens_per_s"])
        if energy_per_token is None:
            missing["energy_usd_per_mtok"] = missing["tokens_per_j"]
        else:
            energy = energy_usd_per_million_tokens(energy_per_token,
                                                   prices.book.electricity.usd_per_kwh,
                                                   prices.book.pue)
            figures["energy_usd_per_mtok"] = energy
            total += energy
        figures["usd_per_mtok"] = total
    return Row(trial["name"], results, device_name, figures, missing,
               match.key if match else None)


def absent_row(name: str, source: ResultsSource) -> Row:
    """The row of a trial name this source has no ok trial of: every figure says why."""
    other = next((t for t in source.trials if t["name"] == name), None)
    if other is None:
        reason = f"no trial '{name}' in run {source.run.run_id}"
    elif other["status"] == "ok" and is_busy(other):
        reason = f"measured on a busy machine, left out: {busy_messages([other])[0]}"
    else:
        reason = f"{other['status']}: {other.get('reason') or 'no reason recorded'}"
    return Row(name, source.path, source.device_name, {}, dict.fromkeys(FIGURES, reason))


def rows_frame(rows: list[Row]) -> pd.DataFrame:
    """The rows as numbers: one column per figure, NaN where a row has none."""
    records = [{"trial": r.trial, "results": r.results, "hardware": r.hardware,
                **{name: r.figures.get(name, math.nan) for name in FIGURES}} for r in rows]
    return pd.DataFrame(records, columns=["trial", "results", "hardware", *FIGURES])


def finite_or_none(value: Any) -> float | None:
    """A stored figure as a float, or None where it is absent, unparseable or not finite."""
    number = as_number(value)
    return number if math.isfinite(number) else None
