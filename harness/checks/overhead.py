"""The harness must not distort what it measures: its training loop, meters included, against
the bare loop a user would write for the same model, data, precision and optimizer.

Rounds alternate which loop goes first, in one process, so drift of the machine (clocks, other
tenants, GPU boost) hits both alike; the figure is the median over rounds of the ratio of wall
time per measured step (harness / bare). The bare loop synchronises the device only at its
window's edges; the harness loop is `run_training` as every trial runs it, with the loss look
cadence of a real trial of this length. Both take the same batches and initial weights, so the
losses agree step for step, which the check asserts: a ratio of two different computations
would mean nothing.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from harness.checks.result import CheckResult


@dataclass(frozen=True)
class OverheadSettings:
    preset: str
    precision: str  # the harness's name; the bare loop autocasts to the same dtype
    seq_len: int
    batch: int
    steps: int
    warmup: int
    rounds: int
    lr: float
    # the steps whose losses must agree (None: every step): on a GPU only the first few, since
    # its backward kernels add in no fixed order and training amplifies the rounding
    checked_steps: int | None = None
    threads: int | None = None  # CPU: one core computes, the other absorbs the machine's noise


SETTINGS = {
    "cpu": OverheadSettings("tiny", "fp32", 128, 8, 40, 5, 11, lr=3e-3, threads=1),
    # the scenarios' GPT-2 small learning rate: a higher one makes the two runs' rounding grow
    "cuda": OverheadSettings("gpt2-small", "bf16", 512, 8, 60, 10, 5, lr=6e-4, checked_steps=5),
}
SMOKE = OverheadSettings("tiny", "fp32", 64, 4, 12, 3, 1, lr=3e-3, threads=1)
AUTOCAST = {"fp32": None, "bf16": torch.bfloat16, "fp16": torch.float16}
# Largest relative gap allowed between the loops' losses at a checked step. On a CPU only the
# order in which the gradient norm is summed for clipping differs (model vs optimizer-group
# order); on a GPU bf16 rounding and unordered backward sums differ too, within a few steps by
# far less than a different computation (another batch, another initialisation) would.
LOSS_REL_TOLERANCE = {"cpu": 1e-4, "cuda": 1e-2}


def _splits(settings: OverheadSettings):
    from harness.data import load_splits

    return load_splits("synthetic", seq_len=settings.seq_len, seed=0,
                       train_sequences=settings.steps * settings.batch, eval_sequences=settings.batch,
                       vocab_size=64)


def _model(settings: OverheadSettings, device: torch.device):
    from harness.models import GPT, resolve_config

    torch.manual_seed(0)
    config = resolve_config(settings.preset)
    return GPT(config).to(device)


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def bare_loop(settings: OverheadSettings, splits, device: torch.device) -> tuple[float, list[float]]:
    """Wall seconds per measured step, and every step's loss."""
    from harness.data.splits import device_batch
    from harness.techniques.optimizers import make_optimizer

    model = _model(settings, device)
    if device.type == "cuda":  # the same data path as the harness's: pinned rows, async copies
        splits = splits.pinned()
    optimizer = make_optimizer(model, "adamw", settings.lr, 0.1)
    params = list(model.parameters())
    dtype = AUTOCAST[settings.precision]
    losses = []
    for step in range(settings.steps):
        if step == settings.warmup:
            _sync(device)
            t0 = time.perf_counter()
        x, y = device_batch(splits.train_rows(step, settings.batch), device)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            logits = model(x)
        loss = F.cross_entropy(logits.float().flatten(0, 1), y.flatten())
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.detach())
    _sync(device)
    seconds = (time.perf_counter() - t0) / (settings.steps - settings.warmup)
    return seconds, torch.stack(losses).tolist()


def harness_loop(settings: OverheadSettings, splits, device: torch.device) -> tuple[float, list[float]]:
    from harness.techniques import apply_techniques
    from harness.techniques.optimizers import make_optimizer
    from harness.train.loop import LoopSettings, run_training
    from harness.train.step import make_train_step
    from harness.train.trial import look_every

    bare = _model(settings, device)
    techniques = {"precision": settings.precision, "checkpointing": "none", "compile": False,
                  "attention": "sdpa", "fp16_init_scale": 2.0**16}
    model, precision = apply_techniques(bare, techniques, device)
    optimizer = make_optimizer(bare, "adamw", settings.lr, 0.1)
    step = make_train_step(model, optimizer, precision, 1.0)
    loop = LoopSettings(steps=settings.steps, warmup_steps=settings.warmup,
                        micro_batch_size=settings.batch, eval_batches=1,
                        progress_every=look_every(settings.steps, device.type))
    outcome = run_training(step, model, bare, precision, splits, device, loop)
    return outcome.notes["window_s"] / outcome.notes["measured_steps"], outcome.series["loss"]


def measure(settings: OverheadSettings, device: torch.device) -> dict:
    """Interleaved rounds of both loops: the ratios, their median, the losses' agreement."""
    splits = _splits(settings)
    threads = torch.get_num_threads()
    if settings.threads:
        torch.set_num_threads(settings.threads)
    ratios, bare_steps, harness_steps, checked_gap, all_gap = [], [], [], 0.0, 0.0
    checked = settings.checked_steps or settings.steps
    try:
        for index in range(settings.rounds):
            first, second = (harness_loop, bare_loop) if index % 2 else (bare_loop, harness_loop)
            timed = {first: first(settings, splits, device), second: second(settings, splits, device)}
            (harness_s, harness_losses), (bare_s, bare_losses) = timed[harness_loop], timed[bare_loop]
            ratios.append(harness_s / bare_s)
            bare_steps.append(bare_s)
            harness_steps.append(harness_s)
            gaps = [abs(a - b) / max(abs(b), 1e-12) for a, b in zip(harness_losses, bare_losses)]
            checked_gap, all_gap = max(checked_gap, max(gaps[:checked])), max(all_gap, max(gaps))
    finally:
        torch.set_num_threads(threads)
    quartiles = statistics.quantiles(ratios, n=4) if len(ratios) > 1 else [ratios[0]] * 3
    return {"ratio": statistics.median(ratios), "ratios": ratios, "ratio_q1": quartiles[0],
            "ratio_q3": quartiles[2], "bare_step_s": statistics.median(bare_steps),
            "harness_step_s": statistics.median(harness_steps), "max_loss_rel_gap": checked_gap,
            "checked_steps": checked, "max_loss_rel_gap_all_steps": all_gap, "lr": settings.lr,
            "preset": settings.preset,
            "precision": settings.precision, "seq_len": settings.seq_len, "batch": settings.batch,
            "steps": settings.steps, "warmup": settings.warmup, "rounds": settings.rounds,
            "threads": settings.threads or threads}


def run(device: str, smoke: bool = False) -> CheckResult:
    settings = SMOKE if smoke else SETTINGS["cuda" if device == "cuda" else "cpu"]
    found = measure(settings, torch.device(device))
    what = (f"{settings.preset} {settings.precision} on {device}, median of {settings.rounds} "
            f"interleaved rounds of {settings.steps - settings.warmup} measured steps")
    if found["max_loss_rel_gap"] > LOSS_REL_TOLERANCE[device]:
        return CheckResult("overhead", "failed",
                           f"the two loops computed different losses (relative gap "
                           f"{found['max_loss_rel_gap']:.2g} within the first {found['checked_steps']} "
                           f"steps); no ratio reported ({what})", found)
    return CheckResult("overhead", "ok",
                       f"harness loop / bare loop = {found['ratio']:.4f} "
                       f"(IQR {found['ratio_q1']:.4f}-{found['ratio_q3']:.4f}; {what})", found)
