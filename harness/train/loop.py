"""The training loop of one trial: warm-up steps, the measured window under meters, one probe
of the bytes saved for backward, evaluation.

Nothing in the measured window but the step itself, one meter bracket per step, fetching the
batch, and (every `progress_every` steps) one look at the losses: the loss is read back from
the device only there, so a GPU step is never forced to synchronise by the harness.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import nn

from harness.data import TokenSplits
from harness.data.splits import device_batch
from harness.metrics import MemoryMeter, SavedTensorMeter, StepTimer
from harness.metrics.contention import ContentionMeter, window_warnings
from harness.metrics.energy import EnergyMeter, power_series
from harness.metrics.energy import metrics_from as energy_metrics
from harness.metrics.flop_count import COMPILED_REASON, count_step_flops, is_compiled
from harness.metrics.memory import local_nbytes
from harness.metrics.routing import reset_router_stats, router_metrics
from harness.techniques import Precision
from harness.train.convergence import ConvergenceSettings, ConvergenceTracker
from harness.train.step import TrainStep, next_token_loss

Progress = Callable[[int, int], None]  # (steps done, steps in all)


class Diverged(Exception):
    """A NaN or infinite loss: the trial ends with status `diverged`."""

    def __init__(self, step: int, losses: list[float]):
        super().__init__(f"loss became {losses[-1]} at step {step}")
        self.step = step
        self.losses = losses


@dataclass(frozen=True)
class LoopSettings:
    steps: int
    warmup_steps: int
    micro_batch_size: int
    eval_batches: int
    grad_accum: int = 1  # micro-batches per optimizer step
    progress_every: int = 1
    rank: int = 0  # each rank of a data-parallel trial reads its own micro-batches
    world_size: int = 1
    convergence: ConvergenceSettings = ConvergenceSettings()


@dataclass
class LoopOutcome:
    metrics: dict[str, float] = field(default_factory=dict)
    unmeasured: dict[str, str] = field(default_factory=dict)
    series: dict[str, list[float]] = field(default_factory=dict)
    notes: dict[str, object] = field(default_factory=dict)
    warnings: list[dict[str, str]] = field(default_factory=list)  # TrialResult.warnings


# The first steps' wall times are kept: a compiled model pays its compiler there (step 1) and,
# under CUDA graphs, a warm-up run and the graph's recording (steps 1 and 2).
FIRST_STEPS_TIMED = 3


def run_training(step: TrainStep, model: nn.Module, bare_model: nn.Module, precision: Precision,
                 splits: TokenSplits, device: torch.device, settings: LoopSettings,
                 progress: Progress = lambda done, total: None) -> LoopOutcome:
    out = LoopOutcome()
    losses: list[torch.Tensor] = []
    batch_size, total = settings.micro_batch_size, settings.steps
    if device.type == "cuda":  # asynchronous batch copies need page-locked host memory
        splits = splits.pinned()

    def batches(index: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """The micro-batches of optimizer step `index`, on the device."""
        first = (index * settings.world_size + settings.rank) * settings.grad_accum
        return [device_batch(splits.train_rows(first + i, batch_size), device)
                for i in range(settings.grad_accum)]

    def look_at_losses(done: int) -> None:
        if done % settings.progress_every == 0 or done == total:
            values = torch.stack(losses[-settings.progress_every:]).float()
            if not bool(torch.isfinite(values).all()):
                history = torch.stack(losses).tolist()
                bad = next(i for i, v in enumerate(history) if not math.isfinite(v))
                raise Diverged(bad, history[: bad + 1])
            progress(done, total)

    tokens_per_step = batch_size * splits.seq_len * settings.grad_accum
    tracker = None
    if settings.convergence.enabled:
        eval_batches = splits.eval_batches(batch_size)
        global_tokens = tokens_per_step * settings.world_size
        tracker = ConvergenceTracker(
            settings.convergence, lambda: evaluate(model, precision, eval_batches, device),
            global_tokens, settings.convergence.interval_steps(global_tokens, total), device)
        tracker.start()

    energy = EnergyMeter(device)  # the same meter for both windows: devices found once
    first_steps_s: list[float] = []  # wall time of each of the first FIRST_STEPS_TIMED steps
    with energy:  # the warm-up's energy, apart from the measured window's
        t0 = time.perf_counter()  # after the meter's start-up, which is no step's cost
        for index in range(settings.warmup_steps):
            losses.append(step(batches(index)))
            if index < FIRST_STEPS_TIMED:  # a sync in the warm-up shapes no measured step
                first_steps_s.append(_synchronized_since(t0, device))
                t0 = time.perf_counter()
            look_at_losses(index + 1)
            if tracker is not None:
                tracker.evaluate_if_due(index + 1)
    warmup_energy_j = energy.reading.energy_j

    reset_router_stats(bare_model)  # routing figures cover the measured steps only
    done = total
    # contention outermost: its edges (a process-table scan) stay outside the other meters'
    contention = ContentionMeter()
    with contention, energy, StepTimer(device) as timer, MemoryMeter(device) as memory:
        for index in range(settings.warmup_steps, total):
            micro_batches = batches(index)
            with timer.step():
                losses.append(step(micro_batches))
            look_at_losses(index + 1)
            if tracker is not None:
                before = tracker.paused_s
                tracker.evaluate_if_due(index + 1, last=index + 1 == total)
                timer.leave_out(tracker.paused_s - before)
                if tracker.should_stop():
                    done = index + 1
                    break
    routing, routing_series = router_metrics(bare_model)
    times = timer.result()
    # with fewer warm-up steps, the first measured steps are the first steps
    first_steps_s = (first_steps_s + times.step_times_s)[:FIRST_STEPS_TIMED]
    out.notes.update({"first_step_s": first_steps_s[0], "first_steps_s": first_steps_s})

    history = torch.stack(losses).tolist()
    measured = done - settings.warmup_steps
    out.metrics.update({
        "tokens_per_s": tokens_per_step * measured / times.window_s,
        "step_time_s": times.median_s,
        "step_time_p10_s": times.percentile_s(10),
        "step_time_p90_s": times.percentile_s(90),
        "step_time_cv": times.cv,
        "final_loss": final_loss(history, measured),
    })
    out.metrics.update(memory.peaks.metrics)
    out.unmeasured.update(memory.peaks.unmeasured)
    out.notes.update(memory.peaks.notes)
    out.notes.update({"tokens_per_step": tokens_per_step, "measured_steps": measured,
                      "window_s": times.window_s})
    metrics, unmeasured, notes = energy_metrics(energy.reading, tokens_per_step * measured)
    out.metrics.update(metrics)
    out.unmeasured.update(unmeasured)
    out.notes.update(notes)
    out.notes["contention"] = contention.reading.to_notes()
    out.warnings = window_warnings(contention.reading, notes)
    if warmup_energy_j is not None:
        out.notes["warmup_energy_j"] = warmup_energy_j
    out.series.update(power_series(energy.reading))
    out.series["loss"] = history
    out.series["step_time_s"] = times.step_times_s
    out.metrics.update(routing)
    out.series.update(routing_series)
    if tracker is not None:
        metrics, unmeasured, series, notes = tracker.results()
        out.metrics.update(metrics)
        out.unmeasured.update(unmeasured)
        out.series.update(series)
        out.notes.update(notes, stopped_early=done < total, energy_includes_evaluations=True)

    progress(total, total)
    x, y = batches(0)[0]
    try:
        activation, gradient = probe_backward(model, bare_model, precision, x, y)
        out.metrics.update({"activation_bytes": float(activation), "gradient_bytes": float(gradient)})
    except Exception as err:  # e.g. a compiled graph that refuses saved-tensor hooks
        why = f"saved-tensor hooks failed: {err.__class__.__name__}: {err}"
        out.unmeasured.update({"activation_bytes": why, "gradient_bytes": why})
    out.metrics.update(counted_flops_per_token(model, bare_model, precision, x, y, out.unmeasured))
    out.metrics["eval_loss"] = evaluate(model, precision, splits.eval_batches(batch_size), device)
    return out


def final_loss(history: list[float], measured_steps: int) -> float:
    """Mean training loss over the last tenth of the measured steps (at least one)."""
    tail = history[-max(1, measured_steps // 10):]
    return sum(tail) / len(tail)


def probe_backward(model: nn.Module, bare_model: nn.Module, precision: Precision,
                   x: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """Bytes autograd saves for one micro-batch's backward, and bytes of the gradients that
    backward produces. After the measured window; the gradients are discarded, no update."""
    with SavedTensorMeter(bare_model.parameters()) as meter:
        with precision.autocast():
            logits = model(x)
        loss = next_token_loss(logits, y)
    loss.backward()
    gradient_bytes = sum(local_nbytes(p.grad) for p in bare_model.parameters() if p.grad is not None)
    bare_model.zero_grad(set_to_none=True)
    return meter.bytes, gradient_bytes


def counted_flops_per_token(model: nn.Module, bare_model: nn.Module, precision: Precision,
                            x: torch.Tensor, y: torch.Tensor, unmeasured: dict[str, str]
                            ) -> dict[str, float]:
    """`counted_flops_per_token`: one micro-batch's forward and backward FLOPs as counted by
    FlopCounterMode, per token of this rank (recomputation included)."""
    if is_compiled(model):
        unmeasured["counted_flops_per_token"] = COMPILED_REASON
        return {}

    def forward_loss() -> torch.Tensor:
        with precision.autocast():
            logits = model(x)
        return next_token_loss(logits, y)

    try:
        return {"counted_flops_per_token": count_step_flops(model, bare_model, forward_loss) / x.numel()}
    except Exception as err:  # a custom model or strategy the counter cannot trace
        unmeasured["counted_flops_per_token"] = f"FlopCounterMode failed: {err.__class__.__name__}: {err}"
        return {}


@torch.no_grad()
def evaluate(model: nn.Module, precision: Precision,
             batches: list[tuple[torch.Tensor, torch.Tensor]], device: torch.device) -> float:
    """Mean next-token loss over every eval token (a short last batch weighs what it holds).

    A compiled model evaluates eagerly (torch.compiler's "force_eager" stance): under no_grad
    and in eval mode dynamo's guards on the grad mode and the training flag fail, and it would
    compile the model a second time (20-30 s of a GPU trial, in no figure). The weights and
    the operations are the same; only the kernels differ."""
    model.eval()
    total, rows = torch.zeros((), device=device), 0
    with torch.compiler.set_stance("force_eager"):
        for x, y in batches:
            with precision.autocast():
                logits = model(x.to(device))
            total += next_token_loss(logits, y.to(device)) * len(x)
            rows += len(x)
    model.train()
    return float(total) / rows


def _synchronized_since(t0: float, device: torch.device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - t0
