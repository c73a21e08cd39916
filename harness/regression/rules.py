"""Which way each watched metric regresses, and by how much a change must move to count.

A rule's threshold is a relative change (0.05 = 5%) in the bad direction; a change also has
to be significant (harness.analysis.stats) where the data allow a test. Thresholds are set
per metric from the command line (`--threshold tokens_per_s=0.03`).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from harness.errors import InputError, did_you_mean


@dataclass(frozen=True)
class Rule:
    metric: str
    better: Literal["higher", "lower"]
    threshold: float  # relative change in the bad direction that counts as a regression
    family: Literal["throughput", "memory", "energy", "convergence"]

    def change(self, baseline: float, candidate: float) -> float:
        """Relative change, positive when worse: 0.10 = 10% worse."""
        ratio = candidate / baseline
        return 1.0 - ratio if self.better == "higher" else ratio - 1.0


DEFAULT_RULES = {rule.metric: rule for rule in (
    Rule("tokens_per_s", "higher", 0.05, "throughput"),
    Rule("step_time_s", "lower", 0.05, "throughput"),
    Rule("peak_memory_bytes", "lower", 0.05, "memory"),
    Rule("peak_rss_bytes", "lower", 0.10, "memory"),  # the whole host process: noisier
    Rule("energy_per_token_j", "lower", 0.05, "energy"),
    Rule("tokens_to_target", "lower", 0.05, "convergence"),
    Rule("time_to_target_s", "lower", 0.05, "convergence"),
    Rule("eval_loss", "lower", 0.02, "convergence"),
)}


def rules_with(overrides: list[str]) -> dict[str, Rule]:
    """DEFAULT_RULES with `metric=fraction` overrides (e.g. from repeated --threshold)."""
    rules = dict(DEFAULT_RULES)
    for item in overrides:
        metric, sep, raw = item.partition("=")
        metric = metric.strip()
        if not sep:
            raise InputError(f"expected METRIC=FRACTION, got '{item}'", field="--threshold")
        if metric not in rules:
            raise InputError(f"no rule for metric '{metric}'{did_you_mean(metric, rules)}",
                             field="--threshold")
        try:
            value = float(raw)
        except ValueError:
            raise InputError(f"'{raw}' is not a number", field=f"--threshold {metric}") from None
        if not 0 <= value <= 1:  # 1 = twice as slow already; beyond it is a typo for a percent
            raise InputError(f"a threshold is a fraction between 0 and 1 such as 0.05, got {raw.strip()}",
                             field=f"--threshold {metric}")
        rules[metric] = replace(rules[metric], threshold=value)
    return rules
