"""One trial, in one rank: build the data and the model, apply the techniques and the
data-parallel strategy, train under the meters, and (rank 0) merge every rank's figures.

A trial of one process and no strategy never touches torch.distributed; otherwise torchrun
started this process and the process group spans the trial's ranks.

Trial kinds that change the model rather than the step (distillation, growth) pass a
`prepare` function: given the trial's data and device, it does their unmeasured work (train a
teacher, grow from a small model) and returns a Recipe: the model to train, how to
initialise it, the objective, and what the preparation cost.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch import nn

from harness.data import TokenSplits, load_splits
from harness.hardware import RankEnvironment, device_facts, rank_device, rank_environment
from harness.metrics.contention import merge_rank_warnings, worst_over_ranks
from harness.metrics.energy import merge_over_ranks
from harness.metrics.memory import global_numel
from harness.models import GPTConfig, build_model, flops_parameter_count
from harness.parallel import ParallelContext, plugin_unsupported_reason, resolve_strategy
from harness.parallel.registry import BUILTINS
from harness.spec import TrialResult, TrialSpec
from harness.techniques import apply_techniques
from harness.techniques.optimizers import make_optimizer
from harness.train import ranks as rank_tools
from harness.train.accounting import account_compile, account_flops, account_loss_scaling, account_memory
from harness.train.convergence import ConvergenceSettings
from harness.train.loop import LoopOutcome, LoopSettings, final_loss, run_training
from harness.train.step import Objective, cross_entropy_objective, make_train_step

Progress = Callable[[int, int], None]


@dataclass(frozen=True)
class TrialContext:
    """What a trial kind's preparation may use."""

    spec: TrialSpec
    config: GPTConfig  # the scenario's model
    splits: TokenSplits
    device: torch.device


@dataclass
class Recipe:
    """What a trial kind changes about training one model."""

    config: GPTConfig  # the model trained and measured
    initialize: Callable[[nn.Module], None] | None = None  # sets the bare model's weights
    objective: Objective = cross_entropy_objective
    extra_flops_per_token: float = 0.0  # FLOPs of each token beyond the model's (a teacher's forward)
    metrics: dict[str, float] = field(default_factory=dict)  # what the preparation measured
    notes: dict[str, object] = field(default_factory=dict)
    # after training (rank 0): figures of the trained bare model, e.g. its inference speed
    finish: Callable[[nn.Module], dict[str, float]] | None = None


Prepare = Callable[[TrialContext], Recipe]


def uses_process_group(techniques: dict) -> bool:
    return techniques["parallel"] != "none" or techniques["world_size"] * techniques["nnodes"] > 1


def run_trial(spec: TrialSpec, progress: Progress = lambda done, total: None,
              prepare: Prepare | None = None, prior_steps: int = 0) -> TrialResult:
    """`prior_steps`: optimizer steps of data the preparation trains on before the trial's own
    (the data splits are built large enough for both)."""
    env = rank_environment()
    device = rank_device(spec.device, env.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    if uses_process_group(spec.techniques):
        rank_tools.init_process_group(device, spec.timeout_s)
    result = _train(spec, env, device, progress if env.rank == 0 else lambda done, total: None,
                    prepare, prior_steps)
    # only after success: a failing rank keeps its connections until its process exits, so
    # it records its own error before its peers see theirs (the first failure is the cause)
    if dist.is_initialized():
        dist.destroy_process_group()
    return result


# Steps between two looks at the losses (the finiteness check and the progress update): a look
# reads the losses back, which on a GPU waits for the queued steps, so there it is rare enough
# not to shape the window (a 30-step trial looks twice: at step 25 and at the end); on a CPU
# every operation has finished when it returns, so a look costs nothing and is frequent.
LOOKS_PER_TRIAL = 50
MIN_GPU_STEPS_BETWEEN_LOOKS = 25


def look_every(steps: int, device_type: str) -> int:
    every = max(1, steps // LOOKS_PER_TRIAL)
    return every if device_type == "cpu" else max(every, MIN_GPU_STEPS_BETWEEN_LOOKS)


def _train(spec: TrialSpec, env: RankEnvironment, device: torch.device, progress: Progress,
           prepare: Prepare | None, prior_steps: int) -> TrialResult:
    train, data, techniques = spec.train, spec.data, spec.techniques
    world = env.world_size
    strategy = resolve_strategy(techniques["parallel"])  # a plug-in is built here, never in the runner
    if techniques["parallel"] not in BUILTINS:
        plugin_unsupported_reason(strategy, techniques, device_facts(device.type))
    torch.manual_seed(train["seed"])  # the same initial weights on every rank
    batch, accum = train["micro_batch_size"], techniques["grad_accum"]
    splits = load_splits(
        data["kind"], seq_len=data["seq_len"], seed=train["seed"],
        train_sequences=max(train["steps"] * accum * world, prior_steps) * batch,
        eval_sequences=train["eval_batches"] * batch, path=data["path"],
        vocab_size=data["vocab_size"], concentration=data["concentration"],
        eval_fraction=data["eval_fraction"])
    config = GPTConfig(**{k: v for k, v in spec.model.items() if k != "arch"})
    if splits.vocab_size > config.vocab_size:
        raise ValueError(f"the data has {splits.vocab_size} token ids but the model's "
                         f"vocab_size is {config.vocab_size}")

    recipe = prepare(TrialContext(spec, config, splits, device)) if prepare else Recipe(config)
    torch.manual_seed(train["seed"])  # the trained model's initial weights do not depend on
    config = recipe.config            # what the preparation drew from the generator
    bare_model = build_model(spec.model["arch"], config).to(device)
    if recipe.initialize is not None:
        recipe.initialize(bare_model)
    model, precision = apply_techniques(bare_model, techniques, device)
    parallel = strategy.parallelize(
        model, {**techniques, "grad_clip": train["grad_clip"], "micro_batch_size": batch}, precision,
        lambda m: make_optimizer(m, techniques["optimizer"], train["lr"], train["weight_decay"]),
        ParallelContext(env.rank, env.local_rank, world, device))
    step = parallel.step or make_train_step(parallel.model, parallel.optimizer, precision,
                                            train["grad_clip"], recipe.objective)
    settings = LoopSettings(steps=train["steps"], warmup_steps=train["warmup_steps"],
                            micro_batch_size=batch, eval_batches=train["eval_batches"],
                            grad_accum=accum, progress_every=look_every(train["steps"], device.type),
                            rank=env.rank, world_size=world,
                            convergence=ConvergenceSettings(train["target_loss"],
                                                            train["eval_every_tokens"],
                                                            train["stop_at_target"]))
    out = run_training(step, parallel.model, bare_model, precision, splits, device, settings, progress)

    if parallel.no_sync is not None:
        x, y = splits.train_batch(env.rank, batch)
        out.metrics["comm_fraction"] = rank_tools.exposed_comm_fraction(
            parallel.model, precision, parallel.no_sync, x.to(device), y.to(device),
            out.metrics["step_time_s"])
    elif world > 1:
        out.unmeasured["comm_fraction"] = f"strategy '{techniques['parallel']}' has no no-sync mode to time against"
    account_memory(out, bare_model, parallel.optimizer)
    account_loss_scaling(out, precision, train["steps"])
    account_compile(out, techniques["compile"], device.type)
    _merge_ranks(out, device, env)
    if env.rank == 0:  # the global figures live there; one rank measures a CPU's peak at a time
        account_flops(out, config, splits.seq_len, techniques, device_facts(spec.device), world,
                      recipe.extra_flops_per_token)
    out.metrics.update(recipe.metrics)
    out.notes.update(recipe.notes)
    if recipe.finish is not None and env.rank == 0:
        out.metrics.update(recipe.finish(bare_model))
    out.notes.update({
        "loss_floor": splits.loss_floor, "entropy_rate": splits.entropy_rate,
        "data": splits.description, "parameters": sum(global_numel(p) for p in bare_model.parameters()),
        "ranks": world, "micro_batch_size": batch,
        **({"active_parameters": flops_parameter_count(config)} if config.n_experts else {}),
        "global_batch_size": batch * accum * world,
    })
    return TrialResult(trial_id=spec.trial_id, status="ok", metrics=out.metrics,
                       unmeasured=out.unmeasured, series=out.series, notes=out.notes,
                       warnings=out.warnings)


def _merge_ranks(out: LoopOutcome, device: torch.device, env: RankEnvironment) -> None:
    """Global figures on rank 0; the loss history averaged over ranks on every rank."""
    out.series["loss"] = rank_tools.average_over_ranks(out.series["loss"], device)
    out.metrics["final_loss"] = final_loss(out.series["loss"], out.notes["measured_steps"])
    payload = {**out.metrics, **{k: out.notes[k] for k in ("tokens_per_step", "measured_steps", "window_s")},
               "local_rank": env.local_rank, "contention": out.notes.get("contention"),
               "warnings": out.warnings}
    gathered = rank_tools.gather_to_rank0(payload)
    if gathered is None or len(gathered) == 1:
        return
    merged, per_rank = rank_tools.merge_rank_metrics(gathered)
    out.metrics.update({k: v for k, v in merged.items() if k in out.metrics or k == "tokens_per_s"})
    # energy sums over devices (GPUs per rank; host figures once per node)
    energy, energy_unmeasured = merge_over_ranks(
        gathered, tokens=sum(m["tokens_per_step"] * m["measured_steps"] for m in gathered),
        local_ranks=[m["local_rank"] for m in gathered])
    out.metrics.update(energy)
    for name, why in energy_unmeasured.items():
        out.metrics.pop(name, None)
        out.unmeasured[name] = why
    out.notes["tokens_per_step"] = sum(m["tokens_per_step"] for m in gathered)
    out.notes["window_s"] = max(m["window_s"] for m in gathered)  # tokens_per_s's denominator
    # the busiest rank's contention: one rank slowed slows every step of the others
    contention = [m["contention"] for m in gathered]
    out.notes["contention"] = worst_over_ranks(contention)
    out.warnings = merge_rank_warnings([m["warnings"] for m in gathered], contention)
    per_rank.update({share: [(c or {}).get(share) for c in contention]
                     for share in ("foreign_cpu_share", "steal_share")})
    out.notes["per_rank"] = per_rank
