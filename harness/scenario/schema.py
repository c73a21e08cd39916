"""The scenario file's schema (pydantic). Every section is strict: an unknown key is an error.

A scenario fixes a model, a data source and a training recipe, then sweeps technique settings
(and, with dotted names such as ``model.preset``, any other field) over a matrix.
"""

from __future__ import annotations

import re
import typing
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator
from pydantic_core import PydanticCustomError

from harness.errors import did_you_mean
from harness.scenario.arch import arch_form_problem


class Section(BaseModel):
    """A strict section: unknown keys fail with a 'did you mean' hint naming the key."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    @model_validator(mode="before")
    @classmethod
    def _reject_unknown_keys(cls, data: Any) -> Any:
        if isinstance(data, dict):
            known = set(cls.model_fields)
            for key, value in data.items():
                if key not in known:
                    raise PydanticCustomError(
                        "unknown_key", "unknown key '{key}'{hint}",
                        {"key": str(key), "hint": did_you_mean(key, known)})
                # pydantic reads true as 1: `n_layer: true` would train a one-layer model
                if isinstance(value, bool) and _is_number(cls.model_fields[key].annotation):
                    raise PydanticCustomError("bool_for_number", "expected a number, got {value}",
                                              {"key": str(key), "value": str(value).lower()})
        return data


def _is_number(annotation: Any) -> bool:
    """Whether a field holds an int or a float (or None)."""
    kinds = set(typing.get_args(annotation)) or {annotation}
    return bool(kinds & {int, float}) and kinds <= {int, float, type(None)}


class ModelFields(Section):
    """The GPTConfig fields a scenario may set; None keeps the preset's (or base model's) value."""

    flavour: Literal["gpt2", "llama"] | None = None
    n_layer: int | None = Field(None, ge=1)
    n_head: int | None = Field(None, ge=1)
    n_kv_head: int | None = Field(None, ge=1)
    d_model: int | None = Field(None, ge=1)
    d_ff: int | None = Field(None, ge=1)
    vocab_size: int | None = Field(None, ge=2)
    max_seq_len: int | None = Field(None, ge=1)
    tie_embeddings: bool | None = None
    bias: bool | None = None
    n_experts: int | None = Field(None, ge=0)  # Mixture of Experts: 0 = dense
    expert_top_k: int | None = Field(None, ge=1)
    capacity_factor: float | None = Field(None, gt=0)
    router_aux_loss_coef: float | None = Field(None, ge=0)
    router_z_loss_coef: float | None = Field(None, ge=0)


class ModelSection(ModelFields):
    """`arch` is 'gpt' or an import path ('pkg.mod:build' or 'file.py:build') of a builder
    that takes a GPTConfig. `preset` names a size; explicit fields override it."""

    arch: str = "gpt"
    preset: str | None = "tiny"

    @field_validator("arch")
    @classmethod
    def _arch_form(cls, arch: str) -> str:
        # the forms harness.models.build_model and harness.plugins accept at run time
        problem = arch_form_problem(arch)
        if problem:
            raise PydanticCustomError("arch_form", "{problem}", {"problem": problem})
        return arch


class DataSection(Section):
    kind: Literal["synthetic", "text", "memmap"] = "synthetic"
    seq_len: int = Field(128, ge=1)
    # text file, or nanoGPT .bin file / folder with train.bin and val.bin
    path: str | None = Field(None, validate_default=True)
    vocab_size: int = Field(64, ge=2)  # synthetic source only: token ids in [0, vocab_size)
    concentration: float = Field(0.1, gt=0)  # synthetic: Dirichlet concentration of each row
    eval_fraction: float = Field(0.1, gt=0, lt=1)  # text / single-file memmap: tail kept for eval

    @field_validator("path")
    @classmethod
    def _path_matches_kind(cls, path: str | None, info: ValidationInfo) -> str | None:
        # a field validator, not a model one, so the error names data.path
        kind = info.data.get("kind")
        if kind is not None and kind != "synthetic" and not path:
            raise PydanticCustomError("missing_path", "data kind '{kind}' needs a path",
                                      {"kind": kind})
        return path


class TrainSection(Section):
    """`steps` counts every optimizer step; the first `warmup_steps` are run but never
    measured. The learning rate is constant."""

    micro_batch_size: int = Field(8, ge=1)
    steps: int = Field(30, ge=1)
    warmup_steps: int = Field(5, ge=0, validate_default=True)
    lr: float = Field(3.0e-4, gt=0)
    weight_decay: float = Field(0.1, ge=0)
    grad_clip: float | None = Field(1.0, gt=0)
    seed: int = Field(0, ge=0, le=2**64 - 1)  # what numpy's SeedSequence and torch.manual_seed take
    eval_batches: int = Field(4, ge=1)
    # sequences per optimizer step over all ranks; when set, micro_batch_size is derived as
    # global_batch_size / (ranks x grad_accum), so strategies and world sizes compare at the
    # same global batch (strong scaling); unset, the micro-batch is fixed (weak scaling)
    global_batch_size: int | None = Field(None, ge=1)
    # convergence: evaluate every `eval_every_tokens` training tokens (all ranks); with a
    # target, report tokens/time/FLOPs until the eval loss first reaches it
    target_loss: float | None = Field(None, gt=0)
    eval_every_tokens: int | None = Field(None, ge=1)
    stop_at_target: bool = Field(False, validate_default=True)

    @field_validator("warmup_steps")
    @classmethod
    def _warmup_leaves_measured_steps(cls, warmup: int, info: ValidationInfo) -> int:
        # a field validator, not a model one, so the error names train.warmup_steps
        steps = info.data.get("steps")  # absent when steps itself was invalid
        if steps is not None and warmup >= steps:
            raise PydanticCustomError(
                "warmup_too_long",
                "warmup_steps ({w}) must be smaller than steps ({s}): warm-up steps are never measured",
                {"w": warmup, "s": steps})
        return warmup

    @field_validator("stop_at_target")
    @classmethod
    def _stop_needs_target(cls, stop: bool, info: ValidationInfo) -> bool:
        if stop and info.data.get("target_loss") is None and "target_loss" in info.data:
            raise PydanticCustomError("stop_without_target",
                                      "stop_at_target needs train.target_loss", {})
        return stop


CHECKPOINTING_FORMS = "none, full, every-K (K a positive integer), selective or offload"
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


class TechniquesSection(Section):
    """One field per technique family; each is a matrix axis of the same name. What each
    value does is documented in harness/techniques/."""

    precision: Literal["fp32", "tf32", "bf16", "fp16", "bf16-pure", "fp8"] = "fp32"
    checkpointing: str = "none"
    compile: bool | str = False  # true = torch.compile's default mode, or a mode's name
    grad_accum: int = Field(1, ge=1)  # micro-batches per optimizer step
    optimizer: Literal["adamw", "adamw-fused", "sgd", "adamw8bit"] = "adamw"
    attention: Literal["sdpa", "flash", "efficient", "cudnn", "math", "manual"] = "sdpa"
    fp16_init_scale: float = Field(2.0**16, gt=0)  # GradScaler's first loss scale
    quantization: Literal["none", "int8"] = "none"  # weights of an inference trial
    # data parallelism (harness/parallel): a built-in strategy or a plug-in's import path
    parallel: str = "none"
    world_size: int = Field(1, ge=1)  # ranks per node
    nnodes: int = Field(1, ge=1)
    ddp_bucket_mb: float = Field(25.0, gt=0)
    ddp_grad_as_bucket_view: bool = False
    fsdp_reshard_after_forward: bool = True
    fsdp_cpu_offload: bool = False

    @field_validator("checkpointing")
    @classmethod
    def _checkpointing_form(cls, value: str) -> str:
        if not re.fullmatch(r"none|full|selective|offload|every-[1-9][0-9]*", value):
            raise PydanticCustomError("checkpointing_form", "expected {forms}, got '{value}'",
                                      {"forms": CHECKPOINTING_FORMS, "value": value})
        return value

    @field_validator("compile")
    @classmethod
    def _compile_mode(cls, value: bool | str) -> bool | str:
        if isinstance(value, str) and value not in COMPILE_MODES:
            raise PydanticCustomError(
                "compile_mode", "expected true, false or a torch.compile mode ({modes}), got '{value}'",
                {"modes": ", ".join(COMPILE_MODES), "value": value})
        return value


class ModelOverrides(ModelFields):
    """A second model of a scenario (a distillation student, the small model of a growth):
    the scenario's model with these fields changed, or `preset` with them."""

    preset: str | None = None


class InferenceSection(Section):
    """kind: inference. The model is trained for train.steps (not measured), then loaded in
    the precision/quantization of the trial and measured: weights, prefill, decode, perplexity."""

    batch_size: int = Field(1, ge=1)
    prompt_len: int = Field(128, ge=1)
    decode_tokens: int = Field(32, ge=1)
    repeats: int = Field(5, ge=1)  # timed prefill passes; the median is reported


class DistillationSection(Section):
    """kind: distill. The scenario's model is the teacher, trained first for `teacher_steps`
    (not measured); the student is trained for train.steps, from scratch or distilled."""

    method: Literal["scratch", "distill"] = "distill"
    student: ModelOverrides = ModelOverrides()
    teacher_steps: int = Field(200, ge=1)
    alpha: float = Field(0.5, ge=0, le=1)  # weight of the KL term; 1 - alpha weighs the CE
    temperature: float = Field(2.0, gt=0)


class GrowthSection(Section):
    """kind: grow. The scenario's model is the large one; the small one is trained first for
    `small_steps`, then grown (LiGO: a learned operator; stack: layer copying) or not used."""

    method: Literal["scratch", "stack", "ligo"] = "ligo"
    small: ModelOverrides = ModelOverrides()
    small_steps: int = Field(200, ge=1)
    operator_steps: int = Field(100, ge=1)
    operator_lr: float = Field(1.0e-3, gt=0)
    noise_std: float = Field(0.01, ge=0)  # on the operator's new width dimensions


KINDS = {"train": None, "inference": "inference", "distill": "distillation", "grow": "growth"}


class Scenario(Section):
    # a safe path component: reports go to reports/<name>/
    name: str = Field(min_length=1, max_length=120)
    description: str = ""
    model: ModelSection = ModelSection()
    data: DataSection = DataSection()
    train: TrainSection = TrainSection()
    techniques: TechniquesSection = TechniquesSection()
    kind: Literal["train", "inference", "distill", "grow"] = "train"  # what one trial does
    inference: InferenceSection = InferenceSection()
    distillation: DistillationSection = DistillationSection()
    growth: GrowthSection = GrowthSection()
    repeats: int = Field(1, ge=1)
    # the most trials (matrix x repeats, counted before anything is built) a scenario may plan:
    # a few lines of YAML can ask for 10^12; raise it with --set max_trials=N when meant
    max_trials: int = Field(10_000, ge=1)
    timeout_s: float = Field(900.0, gt=0)  # per trial, worker start-up included
    matrix: dict[str, list[Any]] | None = None
    exclude: list[dict[str, Any]] = []
    include: list[dict[str, Any]] = []
    baseline: dict[str, Any] | None = None

    @field_validator("name")
    @classmethod
    def _safe_folder_name(cls, name: str) -> str:
        if not name.strip("."):
            raise PydanticCustomError("dots_name", "a name of only dots is no folder of its own")
        bad = sorted({repr(ch) for ch in name if ch in "/\\" or ord(ch) < 32 or ord(ch) == 127})
        if bad:
            raise PydanticCustomError("unsafe_name", "the name is a folder name (reports/<name>/): "
                                      "no {bad}", {"bad": ", ".join(bad)})
        return name

    @model_validator(mode="after")
    def _kind_sections(self) -> "Scenario":
        for kind, section in KINDS.items():
            if section and section in self.model_fields_set and self.kind != kind:
                raise PydanticCustomError(
                    "section_without_kind", "the {section} section needs kind: {kind} (kind is {now})",
                    {"section": section, "kind": kind, "now": self.kind})
        return self


SECTIONS: dict[str, type[Section]] = {
    "model": ModelSection, "data": DataSection, "train": TrainSection,
    "inference": InferenceSection, "distillation": DistillationSection, "growth": GrowthSection,
}


def matrix_axes() -> list[str]:
    """Every name a matrix may sweep: technique names, and dotted section fields."""
    axes = list(TechniquesSection.model_fields)
    for section, cls in SECTIONS.items():
        axes += [f"{section}.{field}" for field in cls.model_fields]
    return axes
