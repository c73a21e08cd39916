"""The claims file's schema (pydantic, strict like a scenario: unknown keys are errors).

A claim is a sentence someone published, its primary source and the conditions of the
original measurement, and how this harness tests it: which trials to compare (a baseline and
a treatment selector), which metric, what to compute from it, and the range that confirms it.
"""

from __future__ import annotations

import math
import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from harness.scenario.schema import Section

# measure -> (what it computes from the ratio r = treatment / baseline, its "no effect" value)
MEASURES = {
    "ratio": ("treatment / baseline", 1.0),
    "inverse": ("baseline / treatment (how many times fewer)", 1.0),
    "saving": ("1 - treatment / baseline (the share saved)", 0.0),
    "increase": ("treatment / baseline - 1 (the share added)", 0.0),
    "growth_saving": ("the share of the scratch model's cost saved to reach its final eval loss", 0.0),
}
GROWTH_COSTS = ("tokens", "flops", "time_s")
_ID = re.compile(r"^[a-z0-9][a-z0-9.-]*$")


class Source(Section):
    primary: str | None = Field(..., description="the primary source; null when none was found")
    detail: str = ""  # what the source measured, and how
    url: str | None = None


class Expectation(Section):
    """The claimed range of the measure; one end may be open."""

    min: float | None = None
    max: float | None = None

    @model_validator(mode="after")
    def _one_end(self) -> Expectation:
        if self.min is None and self.max is None:
            raise ValueError("give min, max or both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} is above max {self.max}")
        return self

    def contains(self, value: float) -> bool:
        return ((self.min is None or value >= self.min) and (self.max is None or value <= self.max))

    def overlaps(self, low: float, high: float) -> bool:
        return (self.min is None or high >= self.min) and (self.max is None or low <= self.max)

    def text(self) -> str:
        if self.min is not None and self.max is not None:
            return f"{self.min:g} to {self.max:g}"
        return f"at least {self.min:g}" if self.min is not None else f"at most {self.max:g}"

    def bounds(self) -> tuple[float, float]:
        return (-math.inf if self.min is None else self.min, math.inf if self.max is None else self.max)


class Requirement(Section):
    device: Literal["any", "cuda"] = "any"
    devices: int = Field(1, ge=1)  # ranks the compared trials must span
    reason: str = ""  # why, in words: shown when the results cannot meet it


class Claim(Section):
    id: str
    claim: str  # the sentence as claimed
    source: Source
    conditions: str  # of the original measurement
    confirmed_when: str  # what "confirmed" means here, in words
    scenario: str | None = None  # the scenario file that tests it (relative to the claims file)
    baseline: dict[str, Any] | None = None  # selectors: axis or dotted spec field -> value
    treatment: dict[str, Any] | None = None
    pool: list[str] = []  # axes pooled as repeats, e.g. train.seed
    metric: str | None = None  # a trial metric; "peak_memory" is the device allocator peak
    baseline_metric: str | None = None  # compare two metrics of the treatment trials instead
    measure: Literal["ratio", "inverse", "saving", "increase", "growth_saving"] = "ratio"
    expect: Expectation | None = None
    requires: Requirement = Requirement()
    not_testable: str | None = None  # never testable here, and why
    published: str | None = None  # what the source's own tables show, for context

    @field_validator("id")
    @classmethod
    def _slug(cls, value: str) -> str:
        if not _ID.match(value):
            raise ValueError("an id is lower-case letters, digits, '-' and '.'")
        return value

    @model_validator(mode="after")
    def _testable_fields(self) -> Claim:
        if self.not_testable is not None:
            return self
        missing = [name for name in ("scenario", "treatment", "metric", "expect")
                   if getattr(self, name) is None]
        if self.baseline is None and self.baseline_metric is None:
            missing.append("baseline")
        if missing:
            raise ValueError(f"a testable claim needs {', '.join(missing)} "
                             "(or not_testable: the reason)")
        if self.measure == "growth_saving" and self.metric not in GROWTH_COSTS:
            raise ValueError(f"growth_saving measures one of {', '.join(GROWTH_COSTS)}, "
                             f"got {self.metric!r}")
        return self


class ClaimsFile(Section):
    claims: list[Claim]
