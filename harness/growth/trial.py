"""A growth trial (scenario kind `grow`): the scenario's model is the large one, trained for
train.steps under the meters, with evaluations along the way. Its initial weights are

    scratch  the usual random initialisation;
    stack    a small model's, trained first, copied layer by layer (StackBERT, Gong et al. 2019);
    ligo     a small model's, grown by a learned linear operator (LiGO, Wang et al. 2023),
             the operator trained for growth.operator_steps on the large model's loss.

The small model's training and the operator's are measured apart (tokens, seconds, FLOPs) so
that the analysis can count the saving without and with them (harness.analysis.growth).
"""

from __future__ import annotations

import time

import torch
from torch import nn

from harness.growth.learn import learn_operator
from harness.growth.operator import GrowthOperator, grow, operator_flops_per_step, stack_grow
from harness.metrics.timing import synchronize
from harness.models import GPT, GPTConfig, model_flops_per_token
from harness.spec import TrialSpec
from harness.train.fit import FitSettings, fit
from harness.train.step import next_token_loss
from harness.train.trial import Progress, Recipe, TrialContext, run_trial


def run_growth_trial(spec: TrialSpec, progress: Progress = lambda done, total: None):
    settings = spec.kind_settings
    prior = 0 if settings["method"] == "scratch" else settings["small_steps"] + settings["operator_steps"]
    return run_trial(spec, progress, lambda ctx: _prepare(ctx, settings), prior_steps=prior)


def _prepare(ctx: TrialContext, settings: dict) -> Recipe:
    method = settings["method"]
    recipe = Recipe(ctx.config, notes={"method": method})
    if method == "scratch":
        return recipe
    train, device = ctx.spec.train, ctx.device
    small_config = GPTConfig(**settings["small"])
    small = GPT(small_config).to(device)
    cost = fit(small, small_config, ctx.splits, device, FitSettings(
        steps=settings["small_steps"], micro_batch_size=train["micro_batch_size"], lr=train["lr"],
        weight_decay=train["weight_decay"], grad_clip=train["grad_clip"]))
    recipe.metrics.update(cost.metrics("small_train"))
    large = GPT(ctx.config).to(device)
    if method == "stack":
        stack_grow(small, large)
    else:
        recipe.metrics.update(_learn_and_grow(small, large, small_config, ctx, settings))
    state = {name: tensor.detach().clone() for name, tensor in large.state_dict().items()}
    recipe.initialize = lambda model: _load(model, state)
    recipe.notes.update(small_parameters=sum(p.numel() for p in small.parameters()),
                        small_config={k: getattr(small_config, k) for k in ("n_layer", "d_model", "n_head")})
    return recipe


def _learn_and_grow(small: nn.Module, large: nn.Module, small_config: GPTConfig,
                    ctx: TrialContext, settings: dict) -> dict[str, float]:
    device, batch = ctx.device, ctx.spec.train["micro_batch_size"]
    operator = GrowthOperator(small_config, ctx.config, "stack", settings["noise_std"]).to(device)
    steps = settings["operator_steps"]

    def batches(index: int) -> tuple[torch.Tensor, torch.Tensor]:
        x, y = ctx.splits.train_batch(index, batch)
        return x.to(device), y.to(device)

    t0 = time.perf_counter()
    losses = learn_operator(operator, small, large, batches, steps, settings["operator_lr"],
                            lambda logits, y: next_token_loss(logits, y))
    grow(small, large, operator)
    synchronize(device)
    seconds = time.perf_counter() - t0
    tokens = float(steps * batch * ctx.splits.seq_len)
    flops = (tokens * model_flops_per_token(ctx.config, ctx.splits.seq_len)
             + steps * operator_flops_per_step(small_config, ctx.config))
    return {"operator_tokens": tokens, "operator_time_s": seconds, "operator_flops": flops,
            "operator_first_loss": losses[0], "operator_final_loss": losses[-1]}


def _load(model: nn.Module, state: dict[str, torch.Tensor]) -> None:
    model.load_state_dict(state)
