"""An inference trial (scenario kind `inference`): train the model for train.steps (not
measured; every trial of the scenario trains the same weights from the same seed, in bf16
autocast where the GPU has it, else fp32: `pretrain_precision`), load it in
the trial's precision (fp32, bf16 or fp16 weights) and quantization (int8: LLM.int8 on CUDA,
dynamic int8 on CPU), then measure

    weight_bytes          bytes of the weights as loaded (every persistent tensor, once)
    weight_memory_bytes   CUDA: allocator bytes the loaded model holds (unmeasured on a CPU)
    prefill_tokens_per_s  a forward pass over (batch, prompt_len) prompts, median of repeats
    decode_tokens_per_s   greedy decoding with a KV cache, one token per sequence per step
    eval_loss, perplexity on the eval split
    peak_memory_bytes     the allocator's peak over the measurements (CUDA)

and, over the same passes, who else used the CPUs (notes.contention, a machine-busy warning).
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harness.data import load_splits
from harness.hardware import rank_device
from harness.inference.measure import decode_tokens_per_s, prefill_tokens_per_s, weight_bytes
from harness.metrics import MemoryMeter
from harness.metrics.contention import ContentionMeter, window_warnings
from harness.models import GPTConfig, build_model
from harness.spec import TrialResult, TrialSpec
from harness.techniques.precision import apply_precision
from harness.techniques.quantization import apply_int8, quantized_linear_count
from harness.train.fit import FitSettings, fit, pretrain_precision
from harness.train.loop import evaluate

WEIGHT_DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def run_inference_trial(spec: TrialSpec, progress=lambda done, total: None) -> TrialResult:
    train, data, techniques = spec.train, spec.data, spec.techniques
    settings = spec.kind_settings
    device = rank_device(spec.device, 0)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    torch.manual_seed(train["seed"])
    batch = train["micro_batch_size"]
    splits = load_splits(
        data["kind"], seq_len=data["seq_len"], seed=train["seed"],
        train_sequences=train["steps"] * batch, eval_sequences=train["eval_batches"] * batch,
        path=data["path"], vocab_size=data["vocab_size"], concentration=data["concentration"],
        eval_fraction=data["eval_fraction"])
    config = GPTConfig(**{k: v for k, v in spec.model.items() if k != "arch"})
    model = build_model(spec.model["arch"], config).to(device)
    metrics: dict[str, float] = {}
    pretrain = pretrain_precision(device)
    cost = fit(model, config, splits, device, FitSettings(
        steps=train["steps"], micro_batch_size=batch, lr=train["lr"],
        weight_decay=train["weight_decay"], grad_clip=train["grad_clip"], precision=pretrain))
    metrics.update(cost.metrics("pretrain"))
    progress(1, 3)

    model, dtype, loaded_bytes = _load(model, spec.model["arch"], techniques, device)
    prompts = splits.eval_batches(settings["batch_size"])[0][0][:, : settings["prompt_len"]].to(device)
    # int8 layers compute in fp16 on CUDA (LLM.int8) and fp32 on a CPU; the rest of the model
    # keeps the dtype its weights were loaded in, so no autocast is needed
    with ContentionMeter() as contention, MemoryMeter(device) as memory:
        metrics["prefill_tokens_per_s"] = prefill_tokens_per_s(model, prompts, device,
                                                               repeats=settings["repeats"])
        progress(2, 3)
        metrics["decode_tokens_per_s"] = decode_tokens_per_s(model, prompts, settings["decode_tokens"],
                                                             device, dtype)
    no_precision = apply_precision("fp32", device)
    metrics["eval_loss"] = evaluate(model, no_precision, splits.eval_batches(batch), device)
    metrics["perplexity"] = math.exp(metrics["eval_loss"])
    metrics["weight_bytes"] = float(weight_bytes(model))
    metrics["quantized_linear_layers"] = float(quantized_linear_count(model))
    metrics.update(memory.peaks.metrics)
    unmeasured = dict(memory.peaks.unmeasured)
    if loaded_bytes is None:
        unmeasured["weight_memory_bytes"] = "allocator figures exist on CUDA only"
    else:
        metrics["weight_memory_bytes"] = float(loaded_bytes)
    progress(3, 3)
    notes = {"prompt_len": settings["prompt_len"], "decode_tokens": settings["decode_tokens"],
             "inference_batch_size": settings["batch_size"], "weights": techniques["precision"],
             "quantization": techniques["quantization"], "pretrain_steps": train["steps"],
             "pretrain_precision": pretrain,
             "data": splits.description, "loss_floor": splits.loss_floor, **memory.peaks.notes,
             "contention": contention.reading.to_notes()}
    return TrialResult(trial_id=spec.trial_id, status="ok", metrics=metrics,
                       unmeasured=unmeasured, notes=notes,
                       warnings=window_warnings(contention.reading, {}, "the measured passes"))


def _load(model: nn.Module, arch: str, techniques: dict,
          device: torch.device) -> tuple[nn.Module, torch.dtype, int | None]:
    """The trained model as an inference server would hold it, the dtype its activations run
    in, and the CUDA allocator bytes it takes (None on a CPU). The training copy leaves the
    device first, so the figure is the loaded weights' alone."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    config = model.config
    del model
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.synchronize(device)
    before = torch.cuda.memory_allocated(device) if device.type == "cuda" else None
    fresh = build_model(arch, config)
    fresh.load_state_dict(state)
    fresh.eval().requires_grad_(False)
    if techniques["quantization"] == "int8":
        # LLM.int8 quantises 16-bit weights and computes in fp16; the CPU kernels start from fp32
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        fresh = apply_int8(fresh.to(dtype), device)
    else:
        dtype = WEIGHT_DTYPES[techniques["precision"]]
        fresh = fresh.to(device=device, dtype=dtype)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        return fresh, dtype, torch.cuda.memory_allocated(device) - before
    return fresh, dtype, None
