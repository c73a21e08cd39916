"""Step timing: a meter around the measured window and each step in it.

On CUDA each step is bracketed by CUDA events (no host synchronisation inside the window;
one at its end); elsewhere by `perf_counter`, with a device synchronise so that queued work
is not missed. The window's wall time is taken apart from the steps: throughput is tokens over
wall time, so time spent between steps (the data, the loop) is not hidden.
"""

from __future__ import annotations

import statistics
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Iterator

import numpy as np
import torch


@dataclass(frozen=True)
class StepTimes:
    step_times_s: list[float]
    window_s: float  # wall time of the whole measured window, seconds

    @property
    def median_s(self) -> float:
        return statistics.median(self.step_times_s)

    def percentile_s(self, q: float) -> float:
        """Linear interpolation between closest ranks (numpy's default)."""
        return float(np.percentile(self.step_times_s, q))

    @property
    def cv(self) -> float:
        """Coefficient of variation of step times (stdev / mean), 0 for a single step."""
        if len(self.step_times_s) < 2:
            return 0.0
        return statistics.stdev(self.step_times_s) / statistics.fmean(self.step_times_s)


class StepTimer:
    """`with StepTimer(device) as timer: ... with timer.step(): train_step()`; then
    `timer.result()`."""

    def __init__(self, device: torch.device):
        self.device = device
        self._cuda = device.type == "cuda"
        self._events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self._times: list[float] = []
        self._window_s: float | None = None
        self._left_out_s = 0.0

    def leave_out(self, seconds: float) -> None:
        """Take `seconds` spent inside the window on something else (an evaluation) out of it."""
        self._left_out_s += seconds

    def __enter__(self) -> StepTimer:
        synchronize(self.device)
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc) -> None:
        synchronize(self.device)
        self._window_s = time.perf_counter() - self._t0 - self._left_out_s

    @contextmanager
    def step(self) -> Iterator[None]:
        if self._cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            yield
            end.record()
            self._events.append((start, end))
        else:
            t0 = time.perf_counter()
            yield
            synchronize(self.device)
            self._times.append(time.perf_counter() - t0)

    def result(self) -> StepTimes:
        if self._window_s is None:
            raise RuntimeError("StepTimer.result() before the window closed")
        times = self._times or [start.elapsed_time(end) / 1e3 for start, end in self._events]
        return StepTimes(times, self._window_s)


def synchronize(device: torch.device) -> None:
    """Wait for the work queued on `device` (a no-op on a CPU)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    elif device.type == "mps":
        torch.mps.synchronize()
