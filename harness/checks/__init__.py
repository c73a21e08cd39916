"""Checks a suite runs beside its scenarios: facts about the machine and the harness itself
that are not a technique's trial. Each is a function (device, smoke) -> CheckResult.

    preflight   can torch.compile build its kernels here (a C compiler, Python's headers)?
    overhead    the harness's training loop against a bare loop of the same model, as a ratio

A suite runs each with `run_isolated`, in a process of its own like a trial's worker, so that
a check's CUDA context, allocator cache and compiler state never sit under the trials after it.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable

from harness.checks import overhead, preflight
from harness.checks.result import CheckResult

Check = Callable[[str, bool], CheckResult]
CHECKS: dict[str, Check] = {"preflight": preflight.run, "overhead": overhead.run}
TIMEOUT_S = 600


def run_isolated(name: str, device: str, smoke: bool = False, timeout_s: float = TIMEOUT_S) -> CheckResult:
    """CHECKS[name] in a child process; a crash, hang or unreadable answer is a failed result."""
    if name not in CHECKS:
        raise ValueError(f"unknown check '{name}' ({', '.join(sorted(CHECKS))})")
    command = [sys.executable, "-m", "harness.checks", name, "--device", device] + (["--smoke"] if smoke else [])
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout_s)
    except subprocess.TimeoutExpired:
        return CheckResult(name, "failed", f"the check did not finish within {timeout_s:.0f} s")
    lines = done.stdout.strip().splitlines()
    if done.returncode == 0 and lines:
        try:
            answer = json.loads(lines[-1])
            return CheckResult(answer["name"], answer["status"], answer["summary"], answer["figures"])
        except (ValueError, KeyError, TypeError):
            pass
    tail = (done.stderr.strip().splitlines() or ["no output"])[-1]
    return CheckResult(name, "failed", f"the check's process ended with exit {done.returncode}: {tail}"[:400])


__all__ = ["CHECKS", "Check", "CheckResult", "run_isolated"]
