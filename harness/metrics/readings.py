"""What a meter hands back: figures it measured, figures it could not (with the reason), and
context a reader needs (a caveat, a method)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class Readings:
    metrics: dict[str, float] = field(default_factory=dict)
    unmeasured: dict[str, str] = field(default_factory=dict)  # metric -> why it is absent
    notes: dict[str, Any] = field(default_factory=dict)
