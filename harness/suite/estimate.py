"""How long a planned trial will take, before it runs: pure arithmetic on its resolved spec.

    time = sum over the trial's parts of max(FLOPs / (peak x MFU), passes x minimum pass time)
           + the worker's fixed cost + (compiled) the compile's

FLOPs are PaLM's model FLOPs (harness.models: 6N + attention per trained token, 2N + attention
per forward-only token) plus what activation checkpointing recomputes. A trial's parts follow
what each kind runs (harness.train.trial, harness.inference.trial, harness.distillation.trial,
harness.growth.trial): its optimizer steps (warm-up included) and evaluations; an inference
trial's unmeasured pre-training, then prefill and decode passes; a distillation's teacher
training and the teacher's forward on every student token; a growth's small model and its
operator learning. The peak is the device's for the precision's compute dtype
(harness.peaks.compute_dtype), at an ASSUMED utilisation; a small model runs far below that on
a large GPU, so no pass is taken to be faster than MIN_PASS_S (launch and Python overhead).
Every constant here is an assumption, named as one in the plan, except where a results
database supplies a measured fixed cost (harness.suite.costs).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from harness.models import (GPTConfig, forward_flops_per_token, model_flops_per_token,
                            recompute_flops_per_token)
from harness.peaks import compute_dtype
from harness.spec import TrialSpec

# Assumed model-FLOPs utilisation on a GPU, of the peak of each precision's compute dtype:
# assumptions for a GPT-2-small-sized model (not measurements). fp32 runs on the non-tensor
# cores, whose peak is low and easier to approach; fp8 against the bf16 peak (compute_dtype).
ASSUMED_GPU_MFU = {"fp32": 0.5, "tf32": 0.3, "bf16": 0.35, "fp16": 0.35, "bf16-pure": 0.35, "fp8": 0.3}
# On a CPU, of its (measured or assumed) fp32/bf16 peak, every precision alike: an assumption.
ASSUMED_CPU_MFU = 0.3
# The fastest a forward(+backward) pass of one micro-batch, or one decode step, is taken to run:
# kernel launches and Python set a floor that a small model on a big GPU sits on.
MIN_PASS_S = {"cuda": 0.005, "cpu": 0.001}
# Fixed costs, assumed where no results database measured them (harness.suite.costs): a
# worker's start (interpreter, torch import, CUDA context, data, model build, final accounting)
# and a cold compile (private caches per trial: every compiled trial pays it).
ASSUMED_TRIAL_S = {"cuda": 8.0, "cpu": 5.0}
ASSUMED_COMPILE_S = {"cuda": {"default": 45.0, "reduce-overhead": 45.0, "max-autotune": 60.0,
                              "max-autotune-no-cudagraphs": 60.0},
                     "cpu": {"default": 30.0, "reduce-overhead": 30.0, "max-autotune": 30.0,
                             "max-autotune-no-cudagraphs": 30.0}}
# A check's own time (harness.checks has no estimate of its own): assumed.
ASSUMED_CHECK_S = {"preflight": 5.0}
ASSUMED_OTHER_CHECK_S = 20.0
# Writing one scenario entry's report (figures rendered with matplotlib): assumed.
ASSUMED_REPORT_S = 3.0


@dataclass(frozen=True)
class Part:
    """One stretch of a trial's work in one precision."""

    what: str  # train, eval, pretrain, prefill, decode, teacher, small, operator
    flops: float  # over every device of the trial
    precision: str  # what sets its peak and utilisation
    passes: int  # sequential passes (micro-batches, decode steps): the floor of its time
    devices: int = 1


@dataclass(frozen=True)
class Rates:
    """What turns FLOPs into seconds on one device."""

    device_type: str  # cpu or cuda
    peak_tflops: dict[str, float]  # by compute dtype; a dtype absent takes fp32's
    mfu: dict[str, float]  # by precision
    min_pass_s: float

    def seconds(self, part: Part) -> float:
        dtype = compute_dtype(part.precision)
        peak = self.peak_tflops.get(dtype, self.peak_tflops["fp32"])
        rate = peak * 1e12 * self.mfu[part.precision] * part.devices
        return max(part.flops / rate, part.passes * self.min_pass_s)


def assumed_rates(device_type: str, peak_tflops: dict[str, float]) -> Rates:
    mfu = ASSUMED_GPU_MFU if device_type == "cuda" else dict.fromkeys(ASSUMED_GPU_MFU, ASSUMED_CPU_MFU)
    return Rates(device_type, peak_tflops, mfu, MIN_PASS_S[device_type])


@dataclass(frozen=True)
class FixedCosts:
    trial_s: float  # every trial that runs
    compile_s: dict[str, float]  # by compile mode, once per compiled trial


def assumed_costs(device_type: str) -> FixedCosts:
    return FixedCosts(ASSUMED_TRIAL_S[device_type], dict(ASSUMED_COMPILE_S[device_type]))


@dataclass(frozen=True)
class TrialEstimate:
    flops: float  # hardware FLOPs: model FLOPs plus recompute
    compute_s: float
    start_s: float  # the worker's fixed cost
    compile_s: float

    @property
    def total_s(self) -> float:
        return self.compute_s + self.start_s + self.compile_s


SKIPPED = TrialEstimate(0.0, 0.0, 0.0, 0.0)


def compile_mode(techniques: dict) -> str | None:
    value = techniques.get("compile", False)
    if value is False:
        return None
    return "default" if value is True else str(value)


def estimate_trial(spec: TrialSpec, skip: str | None, rates: Rates, costs: FixedCosts) -> TrialEstimate:
    """The trial's FLOPs and seconds; a skipped trial costs nothing."""
    if skip:
        return SKIPPED
    parts = trial_parts(spec, rates.device_type)
    mode = compile_mode(spec.techniques)
    compile_s = 0.0 if mode is None else costs.compile_s.get(mode, max(costs.compile_s.values()))
    return TrialEstimate(sum(p.flops for p in parts), sum(rates.seconds(p) for p in parts),
                         costs.trial_s, compile_s)


def check_seconds(name: str) -> float:
    return ASSUMED_CHECK_S.get(name, ASSUMED_OTHER_CHECK_S)


# --- FLOPs of what each kind runs -------------------------------------------------------------

def _config(model: dict) -> GPTConfig:
    return GPTConfig(**{k: v for k, v in model.items() if k != "arch"})


def trial_parts(spec: TrialSpec, device_type: str) -> list[Part]:
    if spec.kind == "inference":
        return _inference_parts(spec, device_type)
    model, settings = _config(spec.model), spec.kind_settings
    if spec.kind == "distill":  # the student trains; a distilled one under the teacher's forward
        student = _config(settings["student"])
        if settings["method"] == "scratch":
            return _training_parts(spec, student)
        return _distill_extra(spec, model) + _training_parts(spec, student, extra_forward=model)
    parts = _training_parts(spec, model)
    if spec.kind == "grow" and settings["method"] != "scratch":
        parts = _growth_extra(spec, model, _config(settings["small"])) + parts
    return parts


def _training_parts(spec: TrialSpec, config: GPTConfig, extra_forward: GPTConfig | None = None) -> list[Part]:
    """The optimizer steps (warm-up included) and every evaluation of a training trial."""
    from harness.techniques.checkpointing import recomputed_blocks

    train, t, seq = spec.train, spec.techniques, spec.data["seq_len"]
    ranks = t["world_size"] * t["nnodes"]
    micro, accum = train["micro_batch_size"], t["grad_accum"]
    tokens_per_step = micro * accum * ranks * seq
    per_token = model_flops_per_token(config, seq) + recompute_flops_per_token(
        config, seq, recomputed_blocks(t["checkpointing"], config.n_layer))
    if extra_forward is not None:  # a teacher's forward pass on every student token
        per_token += forward_flops_per_token(extra_forward, seq)
    precision = t["precision"]
    parts = [Part("train", train["steps"] * tokens_per_step * per_token, precision,
                  train["steps"] * accum, ranks)]
    evaluations = 1 + _convergence_evaluations(train, tokens_per_step)
    eval_tokens = evaluations * train["eval_batches"] * micro * seq * ranks
    parts.append(Part("eval", eval_tokens * forward_flops_per_token(config, seq), precision,
                      evaluations * train["eval_batches"], ranks))
    return parts


def _convergence_evaluations(train: dict, tokens_per_step: int) -> int:
    """Evaluations along the way (harness.train.convergence): the initial one, one per interval,
    and the last; none without a target or an interval."""
    from harness.train.convergence import ConvergenceSettings

    settings = ConvergenceSettings(train["target_loss"], train["eval_every_tokens"])
    if not settings.enabled:
        return 0
    interval = settings.interval_steps(tokens_per_step, train["steps"])
    return 2 + train["steps"] // interval


def _distill_extra(spec: TrialSpec, teacher: GPTConfig) -> list[Part]:
    train, seq = spec.train, spec.data["seq_len"]
    steps = spec.kind_settings["teacher_steps"]
    precision = spec.techniques["precision"]
    precision = precision if precision in ("fp32", "tf32", "bf16", "fp16") else "fp32"
    tokens = steps * train["micro_batch_size"] * seq
    return [Part("teacher", tokens * model_flops_per_token(teacher, seq), precision, steps)]


def _growth_extra(spec: TrialSpec, large: GPTConfig, small: GPTConfig) -> list[Part]:
    from harness.growth.operator import operator_flops_per_step

    settings, train, seq = spec.kind_settings, spec.train, spec.data["seq_len"]
    batch_tokens = train["micro_batch_size"] * seq
    parts = [Part("small", settings["small_steps"] * batch_tokens * model_flops_per_token(small, seq),
                  "fp32", settings["small_steps"])]
    if settings["method"] == "ligo":
        steps = settings["operator_steps"]
        flops = steps * (batch_tokens * model_flops_per_token(large, seq)
                         + operator_flops_per_step(small, large))
        parts.append(Part("operator", flops, "fp32", steps))
    return parts


def _inference_parts(spec: TrialSpec, device_type: str) -> list[Part]:
    """Pre-training (bf16 where a GPU has it, else fp32: harness.train.fit.pretrain_precision;
    an assumed device has it), the final evaluation, then the measured passes: prefill warm-up
    and repeats, and decoding (a warm-up run and the timed one, each after its own prefill)."""
    config, train, seq = _config(spec.model), spec.train, spec.data["seq_len"]
    settings, t = spec.kind_settings, spec.techniques
    pretrain = "bf16" if device_type == "cuda" else "fp32"
    batch = train["micro_batch_size"]
    weights = ("fp16" if device_type == "cuda" else "fp32") if t["quantization"] == "int8" else t["precision"]
    prompt, new, rows = settings["prompt_len"], settings["decode_tokens"], settings["batch_size"]
    prefills = 1 + settings["repeats"] + 2
    context = prompt + new // 2  # a decode step attends to the cache so far: its mean length
    return [
        Part("pretrain", train["steps"] * batch * seq * model_flops_per_token(config, seq), pretrain,
             train["steps"]),
        Part("eval", train["eval_batches"] * batch * seq * forward_flops_per_token(config, seq), weights,
             train["eval_batches"]),
        Part("prefill", prefills * rows * prompt * forward_flops_per_token(config, prompt), weights,
             prefills),
        Part("decode", 2 * new * rows * forward_flops_per_token(config, context), weights, 2 * new),
    ]


def total_seconds(trials: list[TrialEstimate], checks: list[float], reports: int) -> float:
    """The whole suite: its trials, its checks and one report per scenario entry."""
    return math.fsum([t.total_s for t in trials] + checks) + reports * ASSUMED_REPORT_S
