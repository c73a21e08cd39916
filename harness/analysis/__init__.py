"""Statistics of a run's trials, apart from any rendering: pandas frames in, frames out."""

from harness.analysis.baseline import RATIO_COLUMNS, compare_to_baseline, ratios_to_baseline
from harness.analysis.convergence import crossing, eval_curves, final_eval_loss
from harness.analysis.curves import loss_curves
from harness.analysis.effects import effects_summary, factorial_effects
from harness.analysis.growth import growth_savings
from harness.analysis.pareto import pareto_front
from harness.analysis.scaling import scaling_frame
from harness.analysis.trials import (
    METRICS,
    PARAM_PREFIX,
    axis_columns,
    combination_name,
    memory_metric,
    trial_frame,
)

__all__ = [
    "METRICS",
    "PARAM_PREFIX",
    "RATIO_COLUMNS",
    "axis_columns",
    "combination_name",
    "compare_to_baseline",
    "crossing",
    "effects_summary",
    "eval_curves",
    "factorial_effects",
    "final_eval_loss",
    "growth_savings",
    "loss_curves",
    "memory_metric",
    "pareto_front",
    "ratios_to_baseline",
    "scaling_frame",
    "trial_frame",
]
