"""Accounting of a finished trial: where the FLOPs went (model and hardware FLOPs, MFU, HFU),
where the memory went (parameters, gradients, optimizer state, activations), and what the
fp16 loss scaler and the compiler did. Pure arithmetic on what the loop measured."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from harness import peaks
from harness.hardware import DeviceFacts
from harness.metrics.memory import local_nbytes
from harness.models import GPTConfig, model_flops_per_token, recompute_flops_per_token
from harness.spec import CPU_PEAK_UNDER_LOAD, PEAK_EXCEEDED
from harness.techniques.checkpointing import recomputed_blocks
from harness.techniques.optimizers import optimizer_state_bytes
from harness.techniques.precision import Precision
from harness.train.loop import LoopOutcome


def account_flops(out: LoopOutcome, config: GPTConfig, seq_len: int, techniques: dict[str, Any],
                  facts: DeviceFacts, devices: int = 1, extra_flops_per_token: float = 0.0) -> None:
    """Model FLOPs/token (6N + 12LHQT, active parameters for a Mixture of Experts, plus
    `extra_flops_per_token` such as a distillation teacher's forward pass), hardware FLOPs/token
    (plus recomputed forwards), achieved TFLOP/s, MFU/HFU against the peak of `devices` devices
    for the compute dtype (`tokens_per_s` is global: all ranks), `mfu_achievable` against the
    rate the device's own GEMMs reach (measured here, after the loop, on a cache miss), and
    FLOPs to the target loss."""
    model_flops = model_flops_per_token(config, seq_len) + extra_flops_per_token
    blocks = recomputed_blocks(techniques["checkpointing"], config.n_layer)
    hardware_flops = model_flops + recompute_flops_per_token(config, seq_len, blocks)
    tokens_per_s = out.metrics["tokens_per_s"]
    out.metrics.update({
        "flops_per_token": float(model_flops),
        "hardware_flops_per_token": float(hardware_flops),
        "achieved_tflops": model_flops * tokens_per_s / 1e12,
    })
    if "tokens_to_target" in out.metrics:
        out.metrics["flops_to_target"] = out.metrics["tokens_to_target"] * model_flops
    dtype = peaks.compute_dtype(techniques["precision"])
    cache_dir = peaks.default_cache_dir()
    rates = (model_flops, hardware_flops, tokens_per_s, devices)
    peak = peaks.peak_for(facts, dtype, cache_dir)
    if peak is None:
        why = f"no {dtype} peak FLOP/s known for {facts.name}"
        out.unmeasured.update({"mfu": why, "hfu": why})
    else:
        out.notes.update({"peak_tflops": peak.tflops, "peak_dtype": peak.dtype,
                          "peak_source": peak.source, "peak_measured": peak.measured,
                          "peak_quiet": peak.quiet})
        _utilization(out, peak, rates, "mfu", "hfu")
    try:
        achievable = peaks.achievable_peak_for(facts, dtype, cache_dir, peak)
    except peaks.NoPeak as err:
        out.unmeasured["mfu_achievable"] = str(err)
        return
    if achievable is peak:  # a CPU: MFU is against a measured peak already; the same figure or reason
        out.notes.update({"peak_achievable_tflops": peak.tflops,
                          "peak_achievable_source": "the same measurement as peak_source"})
        if "mfu" in out.metrics:
            out.metrics["mfu_achievable"] = out.metrics["mfu"]
        else:
            out.unmeasured["mfu_achievable"] = out.unmeasured["mfu"]
        return
    out.notes.update({"peak_achievable_tflops": achievable.tflops,
                      "peak_achievable_source": achievable.source})
    _utilization(out, achievable, rates, "mfu_achievable")


def _utilization(out: LoopOutcome, peak: peaks.Peak, rates: tuple[float, float, float, int], mfu: str,
                 hfu: str | None = None) -> None:
    """`mfu` (and `hfu`) against `peak`, or unmeasured with the reason and a warning where the
    peak is no bound: timed on a busy machine, or outrun by the trial's hardware FLOP/s.
    `rates`: model and hardware FLOPs per token, global tokens/s, devices."""
    model_flops, hardware_flops, tokens_per_s, devices = rates
    names = [mfu, *([hfu] if hfu else [])]
    if not peak.quiet:  # a peak timed on a busy machine is too low: every MFU against it too high
        why = f"the CPU peak could not be measured on a quiet machine: {peak.under_load}"
        out.unmeasured.update(dict.fromkeys(names, why))
        out.warnings.append({"code": CPU_PEAK_UNDER_LOAD, "message": why})
        return
    hardware = peaks.utilization(hardware_flops, tokens_per_s, peak, devices)
    if hardware > peak.slack:  # no trial outruns a true peak: this one is not the bound it claims to be
        over = "" if peak.slack == 1 else f" by more than {peak.slack - 1:.0%}"
        bound = f"{peak.tflops * devices:.3g} TFLOP/s" + (f" of {devices} devices" if devices > 1 else "")
        why = (f"the trial's {hardware_flops * tokens_per_s / 1e12:.3g} TFLOP/s exceed{over} the "
               f"{peak.dtype} peak of {bound} ({peak.source}), so that peak is no bound here")
        out.unmeasured.update(dict.fromkeys(names, why))
        out.warnings.append({"code": PEAK_EXCEEDED, "message": why})
        return
    out.metrics[mfu] = peaks.utilization(model_flops, tokens_per_s, peak, devices)
    if hfu:
        out.metrics[hfu] = hardware


def account_memory(out: LoopOutcome, bare_model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """Parameter and optimizer-state bytes this rank holds after training (gradient and
    activation bytes come from the loop's probe step)."""
    out.metrics["parameter_bytes"] = float(sum(local_nbytes(p) for p in bare_model.parameters()))
    out.metrics["optimizer_state_bytes"] = float(optimizer_state_bytes(optimizer))


def account_loss_scaling(out: LoopOutcome, precision: Precision, steps: int) -> None:
    log = precision.scale_log
    if log is None:
        return
    out.metrics.update({"loss_scale": log.scales[-1], "skipped_steps": float(log.skipped_steps),
                        "overflow_fraction": log.skipped_steps / steps})
    out.series["loss_scale"] = log.scales


def account_compile(out: LoopOutcome, setting: bool | str, device_type: str) -> None:
    """compile_time_s: the wall time of the first steps beyond steady-state (median) steps, so
    the figure is the compiler's cost alone; step figures never include it. The first step
    compiles; under CUDA graphs (reduce-overhead, max-autotune on a GPU) the second runs the
    graphs' warm-up and records them, which is the compiler's cost too. compile_recompiles:
    how often dynamo compiled a frame again because a guard failed (evaluation included: the
    loop's evaluation must not recompile), with the first reasons in the notes."""
    if setting is False:
        return
    from harness.techniques.compile import compile_steps, graph_counts, recompile_reasons

    steps = compile_steps(setting, device_type)
    first = out.notes["first_steps_s"][:steps]
    median = out.metrics["step_time_s"]
    out.metrics["compile_time_s"] = sum(max(0.0, t - median) for t in first)
    out.notes["compile_time_steps"] = len(first)
    out.metrics.update(graph_counts())
    reasons = recompile_reasons()
    out.metrics["compile_recompiles"] = float(len(reasons))
    if reasons:
        out.notes["compile_recompile_reasons"] = reasons[:5]
