"""What changed in the environment between two runs: a driver, CUDA or torch upgrade, another
library version, the harness version or the commit often explains a step in a metric."""

from __future__ import annotations

from typing import Any

NO_VALUE = "—"
SHORT_COMMIT = 7
FIELDS = (("device", ("device_name",)), ("device count", ("device_count",)), ("driver", ("driver",)),
          ("CUDA", ("torch_cuda",)), ("torch", ("libraries", "torch")), ("host", ("host",)))
TRAILING = (("harness", ("harness_version",)), ("commit", ("git_commit",)))


def environment_differences(before: dict[str, Any], after: dict[str, Any]) -> list[str]:
    """"torch 2.10.0 → 2.11.0" for each fingerprint fact that differs (commits short)."""
    libraries = sorted(({**(before.get("libraries") or {}), **(after.get("libraries") or {})})
                       .keys() - {"torch"})
    fields = [*FIELDS, *((name, ("libraries", name)) for name in libraries), *TRAILING]
    changes = []
    for label, path in fields:
        old, new = _shown(before, path), _shown(after, path)
        if old != new:
            changes.append(f"{label} {old} → {new}")
    return changes


def short_commit(env: dict[str, Any]) -> str:
    commit = env.get("git_commit")
    return str(commit)[:SHORT_COMMIT] + ("+dirty" if env.get("git_dirty") else "") if commit else NO_VALUE


def _shown(env: dict[str, Any], path: tuple[str, ...]) -> str:
    value: Any = env
    for part in path:
        value = value.get(part) if isinstance(value, dict) else None
    if value is None or value == "":
        return NO_VALUE
    return str(value)[:SHORT_COMMIT] if path == ("git_commit",) else str(value)
