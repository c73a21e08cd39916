"""What one trial is (TrialSpec) and what it produced (TrialResult): plain, JSON-serialisable.

Only the runner sees a whole TrialSpec; the worker hands each part to the code it concerns.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from harness import SCHEMA_VERSION

STATUSES = ("ok", "failed", "oom", "timeout", "diverged", "skipped")

# Conditions that make a trial's figures doubtful, stored as TrialResult.warnings entries
# {"code": CODE, "message": "..."} (the export's `warnings` list). A trial carrying a code of
# VERDICT_BLOCKING never makes a verdict: comparisons, claims and history say "inconclusive".
MACHINE_BUSY = "machine-busy"  # other processes took CPU time (or the GPU) during the window
GPU_THROTTLED = "gpu-throttled"  # thermal or hardware slowdown of the GPU's clocks
CPU_PEAK_UNDER_LOAD = "cpu-peak-under-load"  # the CPU peak for MFU could not be measured quietly
PEAK_EXCEEDED = "peak-exceeded"  # the trial ran faster than the peak: no MFU against it
WARNING_CODES = (MACHINE_BUSY, GPU_THROTTLED, CPU_PEAK_UNDER_LOAD, PEAK_EXCEEDED)
VERDICT_BLOCKING = (MACHINE_BUSY,)


def utc_now() -> str:
    """A trial's and a run's timestamps: UTC, to the second, ISO 8601."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class TrialSpec:
    scenario: str
    trial_id: str  # stable across runs of the same scenario: a hash of `params`
    name: str  # human-readable, e.g. "precision=bf16 checkpointing=full"
    params: dict[str, Any]  # the swept values of this trial, and `repeat`
    model: dict[str, Any]  # `arch` and every GPTConfig field, resolved from the preset
    data: dict[str, Any]
    train: dict[str, Any]
    techniques: dict[str, Any]
    device: str  # "cpu" or "cuda"
    timeout_s: float
    kind: str = "train"  # train | inference | distill | grow: what the worker does
    kind_settings: dict[str, Any] = field(default_factory=dict)  # the kind's section, resolved

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TrialSpec:
        return cls(**data)


@dataclass
class TrialResult:
    trial_id: str
    status: str
    reason: str | None = None  # why it was skipped, or the error message
    metrics: dict[str, float] = field(default_factory=dict)
    unmeasured: dict[str, str] = field(default_factory=dict)  # metric -> why it is absent
    series: dict[str, list[float]] = field(default_factory=dict)  # e.g. loss per step
    notes: dict[str, Any] = field(default_factory=dict)  # context: loss floor, batch tokens
    # conditions that make the figures doubtful: {"code": one of WARNING_CODES, "message": one line}
    warnings: list[dict[str, str]] = field(default_factory=list)
    traceback: str | None = None  # tail, for failed trials
    started_at: str | None = None
    finished_at: str | None = None
    schema_version: int = SCHEMA_VERSION

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"unknown trial status {self.status!r}")

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), allow_nan=True)

    @classmethod
    def from_json(cls, text: str) -> TrialResult:
        return cls(**json.loads(text))
