"""Convergence as a measured figure: the eval loss at fixed token intervals during training,
and the tokens, training time and FLOPs until it first reaches a target.

The training clock starts with the first training step (warm-up and compilation included: a
real run pays for them too) and stops for every evaluation, so an evaluation never counts as
training time. Each evaluation synchronises the device; that is the only synchronisation the
tracker adds, and only trials that ask for evaluations pay it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist

from harness.metrics.timing import synchronize

CONVERGENCE_SERIES = ("eval_tokens", "eval_loss", "eval_time_s")
EVALUATIONS_BY_DEFAULT = 20  # with a target but no interval: about this many over the run


@dataclass(frozen=True)
class ConvergenceSettings:
    target_loss: float | None = None
    eval_every_tokens: int | None = None
    stop_at_target: bool = False

    @property
    def enabled(self) -> bool:
        return self.target_loss is not None or self.eval_every_tokens is not None

    def interval_steps(self, tokens_per_step: int, steps: int) -> int:
        """Optimizer steps between evaluations: the token interval rounded to whole steps."""
        if self.eval_every_tokens is None:
            return max(1, steps // EVALUATIONS_BY_DEFAULT)
        return max(1, round(self.eval_every_tokens / tokens_per_step))


@dataclass
class ConvergenceTracker:
    """Call `start()` before the first step, `evaluate_if_due(done)` after each step."""

    settings: ConvergenceSettings
    evaluate: Callable[[], float]  # mean eval loss, nats
    tokens_per_step: int  # global: all ranks
    interval_steps: int
    device: torch.device
    tokens: list[float] = field(default_factory=list)
    losses: list[float] = field(default_factory=list)
    times_s: list[float] = field(default_factory=list)
    reached_at: int | None = None  # index into the lists of the first evaluation at the target
    _t0: float = 0.0
    _paused_s: float = 0.0

    def start(self) -> None:
        """Evaluate the initial weights (0 tokens, 0 s), then start the training clock."""
        self._t0 = time.perf_counter()
        self._record(0)
        self.times_s[0], self._paused_s = 0.0, 0.0
        self._t0 = time.perf_counter()  # the clock starts after the initial evaluation

    @property
    def reached(self) -> bool:
        return self.reached_at is not None

    def due(self, done: int) -> bool:
        return done % self.interval_steps == 0

    def evaluate_if_due(self, done: int, last: bool = False) -> None:
        if self.due(done) or last:
            self._record(done)

    def _record(self, done: int) -> None:
        synchronize(self.device)
        paused_at = time.perf_counter()
        loss = self.evaluate()
        self.tokens.append(float(done * self.tokens_per_step))
        self.losses.append(loss)
        self.times_s.append(paused_at - self._t0 - self._paused_s)
        target = self.settings.target_loss
        if self.reached_at is None and target is not None and _agreed(loss <= target, self.device):
            self.reached_at = len(self.losses) - 1
        synchronize(self.device)
        self._paused_s += time.perf_counter() - paused_at

    @property
    def paused_s(self) -> float:
        """Seconds spent evaluating since start(): the caller's timers leave them out."""
        return self._paused_s

    def should_stop(self) -> bool:
        return self.settings.stop_at_target and self.reached

    def results(self) -> tuple[dict[str, float], dict[str, str], dict[str, list[float]], dict]:
        """(metrics, unmeasured, series, notes). FLOPs to target are the caller's: it knows the
        FLOPs per token."""
        series = {"eval_tokens": self.tokens, "eval_loss": self.losses, "eval_time_s": self.times_s}
        notes = {"eval_interval_tokens": self.interval_steps * self.tokens_per_step,
                 "evaluations": len(self.losses)}
        target = self.settings.target_loss
        if target is None:
            return {}, {}, series, notes
        notes["target_loss"] = target
        if self.reached_at is None:
            best = min(self.losses) if self.losses else math.nan
            why = (f"the eval loss never reached the target {target:g} (best {best:.4g} "
                   f"after {self.tokens[-1]:.0f} tokens)")
            return {}, dict.fromkeys(("tokens_to_target", "time_to_target_s", "flops_to_target"), why), series, notes
        i = self.reached_at
        metrics = {"tokens_to_target": self.tokens[i], "time_to_target_s": self.times_s[i]}
        return metrics, {}, series, notes


def _agreed(flag: bool, device: torch.device) -> bool:
    """Every rank's answer, and-ed: ranks evaluate the same weights, but a stop decision taken
    by one rank alone would hang the others."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return flag
    value = torch.tensor([1 if flag else 0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item())
