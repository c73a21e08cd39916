"""What a check found: a status, one line, and its figures."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

STATUSES = ("ok", "failed", "skipped")


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # one of STATUSES
    summary: str  # one line
    figures: dict[str, Any] = field(default_factory=dict)  # JSON-safe

    def __post_init__(self) -> None:
        if self.status not in STATUSES:
            raise ValueError(f"check status must be one of {', '.join(STATUSES)}, got {self.status!r}")

    def to_json(self) -> dict[str, Any]:
        return asdict(self)
