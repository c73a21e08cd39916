"""What one side of a comparison measured: one figure per independent run, for
`stats.log_ratio`.

The unit of evidence depends on what a figure depends on:
  * timed figures (throughput, step time, memory peaks, energy: the default) vary from process
    to process: each ok repeat is one value;
  * trained figures (losses, perplexity, tokens to a target) are fixed by the seed up to kernel
    nondeterminism, so repeats of one seed are not independent evidence about the technique:
    each seed is one value (the median over its repeats), and seeds are swept as an axis and
    pooled (a claim's `pool: [train.seed]`);
  * counted figures (bytes of tensors, FLOPs, parameters) are the same in every run: exact.
Trials measured on a busy machine (a VERDICT_BLOCKING warning) are left out, and the sample
says how many; per-step series are never samples.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from harness.analysis.stats import DriftNoise, Estimate, RunNoise, log_ratio, log_ratio_between_runs, untested
from harness.analysis.trials import as_number, is_busy
from harness.spec import VERDICT_BLOCKING

COUNTED = frozenset({
    "activation_bytes", "gradient_bytes", "parameter_bytes", "optimizer_state_bytes",
    "weight_bytes", "flops_per_token", "hardware_flops_per_token", "counted_flops_per_token",
    "student_parameters", "quantized_linear_layers", "operator_tokens", "teacher_train_tokens",
    "small_train_tokens",
})
TRAINED = frozenset({
    "final_loss", "eval_loss", "perplexity", "teacher_eval_loss", "teacher_perplexity",
    "tokens_to_target", "time_to_target_s", "flops_to_target", "operator_final_loss",
    "operator_first_loss", "router_aux_loss", "router_z_loss", "router_entropy",
    "expert_load_imbalance", "dropped_token_fraction", "loss_scale", "skipped_steps",
    "overflow_fraction",
})
BUSY = "inconclusive: machine busy"


def evidence_unit(metric: str) -> str:
    """'counted', 'seeds' or 'repeats': what one independent value of `metric` is."""
    if metric in COUNTED:
        return "counted"
    if metric in TRAINED or metric.endswith(("_loss", "perplexity", "_to_target")):
        return "seeds"
    return "repeats"


def busy_messages(trials: list[dict[str, Any]]) -> list[str]:
    """The messages of the trials' verdict-blocking warnings, in order."""
    return [str(w.get("message") or w["code"]) for trial in trials for w in trial.get("warnings") or []
            if isinstance(w, dict) and w.get("code") in VERDICT_BLOCKING]


@dataclass(frozen=True)
class Sample:
    values: np.ndarray  # one figure per independent unit
    unit: str  # "repeats", "seeds" or "runs (counted)"
    left_out_busy: int = 0  # ok trials with a figure left out: measured on a busy machine
    busy_values: np.ndarray = field(default_factory=lambda: np.array([]))  # for information only

    @property
    def counted(self) -> bool:
        return self.unit == "runs (counted)"


def metric_sample(trials: list[dict[str, Any]], metric: str) -> Sample:
    """The sample of `metric` over `trials` (one combination's repeats and pooled axes, export
    shape). Only ok trials with a finite figure count; busy ones are set aside."""
    quiet, busy = [], []
    for trial in trials:
        value = as_number((trial.get("metrics") or {}).get(metric))
        if trial["status"] == "ok" and np.isfinite(value):
            (busy if is_busy(trial) else quiet).append((trial, value))
    unit = evidence_unit(metric)
    busy_values = np.array([value for _, value in busy])
    if unit == "seeds":
        by_seed: dict[Any, list[float]] = {}
        for trial, value in quiet:
            by_seed.setdefault(_seed(trial), []).append(value)
        values = np.array([float(np.median(v)) for v in by_seed.values()])
        return Sample(values, "seeds", len(busy), busy_values)
    values = np.array([value for _, value in quiet])
    return Sample(values, "runs (counted)" if unit == "counted" else "repeats", len(busy), busy_values)


def compare_samples(t: Sample, b: Sample, noise: RunNoise | DriftNoise | None = None, *,
                    between_runs: bool = False, other_machines: bool = False) -> Estimate:
    """Ratio of treatment over baseline with its interval and test. `between_runs`: the sides
    are two separate runs made at different times (`harness compare`), and `noise` is then how
    a run's figure varies over earlier runs (a DriftNoise, stats.log_ratio_between_runs); else
    `noise` is the repeat noise (a RunNoise), used when a side has a single run. Two runs on
    `other_machines` are not tested (stats.OTHER_MACHINES)."""
    caveat = _busy_caveat(t, b)
    if not len(t.values) or not len(b.values):
        if t.left_out_busy or b.left_out_busy:  # what the busy trials showed, for information
            shown_t = t.values if len(t.values) else t.busy_values
            shown_b = b.values if len(b.values) else b.busy_values
            point = (float(np.median(shown_t) / np.median(shown_b))
                     if len(shown_t) and len(shown_b) and np.median(shown_b) else math.nan)
            return untested(point, BUSY, busy=True, caveat=caveat)
        return untested(math.nan, "no values")
    unit = t.unit if t.unit == b.unit else f"{t.unit} / {b.unit}"
    if t.unit == "seeds":
        noise = None  # noise between repeats of one seed says nothing about other seeds
    if between_runs:
        estimate = log_ratio_between_runs(t.values, b.values, noise=noise,
                                          counted=t.counted and b.counted,
                                          other_machines=other_machines)
    else:
        estimate = log_ratio(t.values, b.values, unit=unit, noise=noise,
                             counted=t.counted and b.counted)
    return replace(estimate, caveat=caveat) if caveat else estimate


def compare_metric(treatment: list[dict[str, Any]], baseline: list[dict[str, Any]],
                   metric: str, noise: RunNoise | None = None) -> Estimate:
    """Ratio of `metric` (treatment over baseline) with its interval and test."""
    return compare_samples(metric_sample(treatment, metric), metric_sample(baseline, metric), noise)


def _busy_caveat(t: Sample, b: Sample) -> str:
    parts = [f"{s.left_out_busy} {side} run{'s' if s.left_out_busy > 1 else ''}"
             for side, s in (("treatment", t), ("baseline", b)) if s.left_out_busy]
    return f"{' and '.join(parts)} left out: machine busy" if parts else ""


def _seed(trial: dict[str, Any]) -> Any:
    spec = trial.get("spec") or {}
    return (spec.get("train") or {}).get("seed", (trial.get("params") or {}).get("train.seed"))
