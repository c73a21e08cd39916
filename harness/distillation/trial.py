"""A distillation trial (scenario kind `distill`): the scenario's model is the teacher, trained
first (not measured); the student is trained for train.steps under the meters, either from
scratch on the data (method `scratch`) or on the distillation objective (method `distill`), on
the same tokens either way. Both report the student's eval loss, perplexity and prefill speed;
a distilled trial also reports the teacher's, and what training the teacher cost.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harness.distillation.loss import distillation_loss
from harness.inference.measure import prefill_tokens_per_s
from harness.models import GPTConfig, build_model, forward_flops_per_token
from harness.spec import TrialResult, TrialSpec
from harness.techniques import apply_precision
from harness.train.fit import FitSettings, fit
from harness.train.trial import Progress, Recipe, TrialContext, run_trial

AUTOCAST_PRECISIONS = ("fp32", "tf32", "bf16", "fp16")  # what the unmeasured teacher trains in


def run_distillation_trial(spec: TrialSpec, progress: Progress = lambda done, total: None) -> TrialResult:
    settings = spec.kind_settings
    distilled = settings["method"] == "distill"
    result = run_trial(spec, progress, lambda ctx: _prepare(ctx, settings),
                       prior_steps=settings["teacher_steps"] if distilled else 0)
    if "eval_loss" in result.metrics:
        result.metrics["perplexity"] = math.exp(result.metrics["eval_loss"])
    return result


def _prepare(ctx: TrialContext, settings: dict) -> Recipe:
    student = GPTConfig(**settings["student"])
    seq_len = ctx.splits.seq_len
    notes = {"method": settings["method"]}
    recipe = Recipe(student, notes=notes, finish=lambda model: _student_speed(model, ctx))
    if settings["method"] == "scratch":
        return recipe

    train, techniques = ctx.spec.train, ctx.spec.techniques
    teacher = build_model(ctx.spec.model["arch"], ctx.config).to(ctx.device)
    precision = techniques["precision"] if techniques["precision"] in AUTOCAST_PRECISIONS else "fp32"
    cost = fit(teacher, ctx.config, ctx.splits, ctx.device, FitSettings(
        steps=settings["teacher_steps"], micro_batch_size=train["micro_batch_size"], lr=train["lr"],
        weight_decay=train["weight_decay"], grad_clip=train["grad_clip"], precision=precision))
    teacher.eval().requires_grad_(False)
    recipe.metrics.update(cost.metrics("teacher_train"))
    recipe.metrics["teacher_eval_loss"] = cost.eval_loss
    recipe.metrics["teacher_perplexity"] = math.exp(cost.eval_loss)
    recipe.metrics["teacher_prefill_tokens_per_s"] = _prefill(teacher, ctx)
    recipe.objective = _objective(teacher, apply_precision(precision, ctx.device),
                                  settings["alpha"], settings["temperature"])
    recipe.extra_flops_per_token = forward_flops_per_token(ctx.config, seq_len)
    recipe.notes.update(teacher_parameters=sum(p.numel() for p in teacher.parameters()),
                        flops_per_token_includes="the teacher's forward pass")
    return recipe


def _objective(teacher: nn.Module, precision, alpha: float, temperature: float):
    def objective(logits: torch.Tensor, x: torch.Tensor, y: torch.Tensor):
        with torch.no_grad(), precision.autocast():
            teacher_logits = teacher(x)
        return distillation_loss(logits, teacher_logits, y, alpha, temperature)
    return objective


def _prefill(model: nn.Module, ctx: TrialContext) -> float:
    x, _ = ctx.splits.eval_batches(ctx.spec.train["micro_batch_size"])[0]
    return prefill_tokens_per_s(model, x.to(ctx.device), ctx.device)


def _student_speed(model: nn.Module, ctx: TrialContext) -> dict[str, float]:
    return {"student_prefill_tokens_per_s": _prefill(model, ctx),
            "student_parameters": float(sum(p.numel() for p in model.parameters()))}
