"""LiGO: a learned linear operator that grows a trained small GPT into a larger one.

Wang et al., ICLR 2023, "Learning to Grow Pretrained Models for Efficient Transformer
Training" (arXiv 2303.00980). The large model's parameters are a linear function of the
small model's, Θ_large = M Θ_small, and M is factored (paper §3.2) so that it is cheap
to store and to learn:

  width  every small weight W (out x in) becomes B_out W B_inᵀ and every vector v (bias,
         norm gain) becomes B v. There is one expansion matrix B per *axis kind*
         (AXIS_TABLE below), shared by all layers: the paper's tied Kronecker factors.
  depth  large layer l's parameter is Σ_j w[l, j] · (width-expanded small layer j's),
         with one (L2 x L1) matrix w per module type, as the paper learns one per
         module (Q, K, V, O, LayerNorms, FFN1, FFN2); weight and bias of one Linear share
         theirs, so Σ_j w_lj (W_j x + b_j) stays one linear map.

Width goes first, so the big products run over the L1 small layers, not the L2 large.

Initial operator. depth "stack": w[l, l mod L1] = 1 (StackBERT, Gong et al. 2019);
"zero-new": w = [I; 0], the new top layers all zero, so they add exactly zero to the
residual stream and the grown model computes the small model's function (but a block of
all-zero weights gets zero gradient everywhere except its biases, so use it to check
exactness, not to learn from). Width: every B starts as [I; 0], the small dims copied
into the first ones and new dims zero, per head for q/k/v/attn_out (_head_embedding).
Width growth is not function preserving even then: LayerNorm/RMSNorm average over all
C2 dims. The learned operator corrects that; stack_grow does not.

Why noise_std: at [I; 0] every new dimension is in the same state (zero), and the loss
is invariant under permuting new dims, so they all get the same gradient and stay
identical copies forever under Adam or SGD. Gaussian noise on the new (all-zero) rows of
each B breaks that symmetry; the copied identity block is left exact so the small
model's weights still sit, unchanged, in the first dims. The paper, too, starts from
stacking plus small noise. Depth matrices need no noise: each w[l, j] already gets its
own gradient <dL/dθ_l, θ_j>.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from fnmatch import fnmatchcase

import torch
import torch.nn as nn

from harness.models.gpt import GPT, GPTConfig

DEPTH_INITS = ("stack", "zero-new")

# Axis kinds never expanded: the vocabulary and position tables keep their sizes.
IDENTITY_KINDS = ("vocab", "pos")
# qkv_proj's rows are [q | k | v] chunks, each expanded by its own kind.
COMPOSITE_KINDS = {"qkv": ("q", "k", "v")}

# Parameter name (block-local after "blocks.<i>.") -> the axis kind of each dimension,
# first fnmatch pattern wins. out_proj's input is the concatenated attention heads (H*Q),
# not the K*Q of v under grouped-query attention, hence its own kind "attn_out".
AXIS_TABLE: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("token_embedding.weight", ("vocab", "resid")),  # (V, C)
    ("position_embedding.weight", ("pos", "resid")),  # (T_max, C), gpt2
    ("lm_head.weight", ("vocab", "resid")),  # (V, C), untied models only
    ("*norm.weight", ("resid",)),  # attn_norm, mlp_norm, final_norm gains (C,)
    ("*norm.bias", ("resid",)),
    ("attn.qkv_proj.weight", ("qkv", "resid")),  # ((H + 2K) Q, C)
    ("attn.qkv_proj.bias", ("qkv",)),
    ("attn.out_proj.weight", ("resid", "attn_out")),  # (C, H Q)
    ("mlp.out_proj.weight", ("resid", "ff")),  # (C, F)
    ("*.out_proj.bias", ("resid",)),
    ("mlp.*_proj.weight", ("ff", "resid")),  # (F, C): in_proj (gpt2), gate/up_proj (llama)
    ("mlp.in_proj.bias", ("ff",)),
)

_BLOCK_NAME = re.compile(r"blocks\.(\d+)\.(.+)")


def axis_sizes(cfg: GPTConfig) -> dict[str, int]:
    """Size of each (non-composite) axis kind in a model of config cfg."""
    Q = cfg.head_dim
    return {
        "vocab": cfg.vocab_size, "pos": cfg.max_seq_len, "resid": cfg.d_model,
        "q": cfg.n_head * Q, "k": cfg.kv_heads * Q, "v": cfg.kv_heads * Q,
        "attn_out": cfg.n_head * Q, "ff": cfg.ff_hidden,
    }


def axes_of(local_name: str) -> tuple[str, ...]:
    for pattern, axes in AXIS_TABLE:
        if fnmatchcase(local_name, pattern):
            return axes
    raise ValueError(f"no growth rule for parameter {local_name!r}; add it to AXIS_TABLE")


def check_compatible(small: GPTConfig, large: GPTConfig) -> None:
    """Raise ValueError, naming every problem, unless small can grow into large."""
    problems = []
    for label, cfg in (("small", small), ("large", large)):
        if getattr(cfg, "n_experts", 0):
            problems.append(f"{label} model is a mixture of experts (n_experts="
                            f"{cfg.n_experts}); growth supports dense models only")
    for field in ("flavour", "vocab_size", "max_seq_len", "bias", "tie_embeddings"):
        if getattr(small, field) != getattr(large, field):
            problems.append(f"{field} differs (small {getattr(small, field)!r}, "
                            f"large {getattr(large, field)!r})")
    # [I; 0] embeddings need every axis to keep or grow its size, per head too
    for label, a, b in (
        ("n_layer", small.n_layer, large.n_layer), ("d_model", small.d_model, large.d_model),
        ("n_head", small.n_head, large.n_head), ("kv heads", small.kv_heads, large.kv_heads),
        ("head_dim", small.head_dim, large.head_dim),
        ("feed-forward size", small.ff_hidden, large.ff_hidden),
    ):
        if b < a:
            problems.append(f"large {label} ({b}) is smaller than the small model's ({a})")
    if problems:
        raise ValueError("cannot grow the small GPT into the large one: " + "; ".join(problems))


@dataclass(frozen=True)
class _Entry:
    """One parameter of the large model: its global name, or block-local name if in_block."""

    name: str
    axes: tuple[str, ...]
    in_block: bool


def _parameter_shapes(cfg: GPTConfig) -> dict[str, tuple[int, ...]]:
    with torch.device("meta"):  # names and shapes only, no memory
        model = GPT(cfg)
    return {name: tuple(p.shape) for name, p in model.named_parameters()}


def _kind_size(kind: str, sizes: dict[str, int]) -> int:
    return sum(sizes[k] for k in COMPOSITE_KINDS.get(kind, (kind,)))


def growth_plan(small: GPTConfig, large: GPTConfig) -> list[_Entry]:
    """Validate the pair and list the large model's parameters with their axis kinds."""
    check_compatible(small, large)
    plan, seen = [], set()
    for cfg, sizes in ((small, axis_sizes(small)), (large, axis_sizes(large))):
        for name, shape in _parameter_shapes(cfg).items():
            match = _BLOCK_NAME.fullmatch(name)
            local = match.group(2) if match else name
            axes = axes_of(local)
            # the table must describe the model as built, or the products would misalign
            expected = tuple(_kind_size(kind, sizes) for kind in axes)
            if shape != expected:
                raise ValueError(f"{name}: shape {shape} does not match axis kinds {axes} "
                                 f"(expected {expected}); AXIS_TABLE is out of date")
            if cfg is large and local not in seen:
                seen.add(local)
                plan.append(_Entry(local, axes, in_block=match is not None))
    return plan


def _head_embedding(h2: int, h1: int, q2: int, q1: int, rotary: bool) -> torch.Tensor:
    """(h2*q2, h1*q1) [I; 0] per head: small head h's dims go to the first dims of large head h.

    A flat [I; 0] would pour two small heads into one large head when head_dim grows.
    Rotary (llama q and k) rotates dim i with dim i + Q/2, so each half is embedded
    separately to keep those pairs together. With q2 == q1 both equal a flat [I; 0].
    """
    within = torch.kron(torch.eye(2), torch.eye(q2 // 2, q1 // 2)) if rotary else torch.eye(q2, q1)
    return torch.kron(torch.eye(h2, h1), within)


def _depth_key(local_name: str) -> str:
    # one depth matrix per module: "attn.qkv_proj.weight" -> "attn_qkv_proj"
    return local_name.rsplit(".", 1)[0].replace(".", "_")


class GrowthOperator(nn.Module):
    """The LiGO operator small GPT -> large GPT; all its parameters are trainable.

    width[kind]: (n_large, n_small) expansion per axis kind; depth[module]: (L2, L1).
    Under multi-head attention (H == K in both models) attn_out is tied to v, as in the
    paper: out_proj reads exactly the value heads' layout.
    """

    def __init__(self, small: GPTConfig, large: GPTConfig, depth_init: str = "stack",
                 noise_std: float = 0.0) -> None:
        super().__init__()
        if depth_init not in DEPTH_INITS:
            raise ValueError(f"depth_init must be one of {DEPTH_INITS}, got {depth_init!r}")
        if not noise_std >= 0:
            raise ValueError(f"noise_std must be >= 0, got {noise_std!r}")
        self.plan = growth_plan(small, large)  # validates the pair
        self.small_config, self.large_config = small, large
        self._small_sizes = axis_sizes(small)
        self._small_names = set(_parameter_shapes(small))
        L1, L2 = small.n_layer, large.n_layer

        mha = small.n_head == small.kv_heads and large.n_head == large.kv_heads
        self._alias = {"attn_out": "v"} if mha else {}
        rotary = small.flavour == "llama"
        (H1, K1, Q1), (H2, K2, Q2) = ((c.n_head, c.kv_heads, c.head_dim) for c in (small, large))
        inits = {
            "resid": torch.eye(large.d_model, small.d_model),
            "q": _head_embedding(H2, H1, Q2, Q1, rotary),
            "k": _head_embedding(K2, K1, Q2, Q1, rotary),
            "v": _head_embedding(K2, K1, Q2, Q1, rotary=False),
            "attn_out": _head_embedding(H2, H1, Q2, Q1, rotary=False),
            "ff": torch.eye(large.ff_hidden, small.ff_hidden),
        }
        self.width = nn.ParameterDict()
        for kind, matrix in inits.items():
            if kind in self._alias:
                continue
            new_rows = matrix.sum(dim=1) == 0  # rows the small model does not fill
            matrix[new_rows] = noise_std * torch.randn(int(new_rows.sum()), matrix.size(1))
            self.width[kind] = nn.Parameter(matrix)

        stack = torch.zeros(L2, L1)
        if depth_init == "stack":
            stack[torch.arange(L2), torch.arange(L2) % L1] = 1.0  # layer l copies l mod L1
        else:
            stack[:L1] = torch.eye(L1)  # [I; 0]: new layers start all-zero
        self.depth = nn.ParameterDict({
            _depth_key(e.name): nn.Parameter(stack.clone()) for e in self.plan if e.in_block
        })

    def forward(self, small_params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """Small model's named parameters -> the large model's, differentiable in the operator.

        small_params as from dict(small.named_parameters()) (a tied lm_head appears once,
        as token_embedding.weight); the result has exactly the names of
        dict(GPT(large).named_parameters()), in the operator's dtype and device.
        """
        if set(small_params) != self._small_names:
            missing = sorted(self._small_names - set(small_params))
            extra = sorted(set(small_params) - self._small_names)
            raise ValueError(f"small_params do not match the small config: missing {missing[:5]}, "
                             f"unexpected {extra[:5]}")
        L1, L2 = self.small_config.n_layer, self.large_config.n_layer
        grown: dict[str, torch.Tensor] = {}
        for entry in self.plan:
            if not entry.in_block:
                grown[entry.name] = self._widen(small_params[entry.name], entry.axes)
                continue
            layers = torch.stack([small_params[f"blocks.{j}.{entry.name}"] for j in range(L1)])
            wide = self._widen(layers, entry.axes)  # (L1, *large shape)
            w = self.depth[_depth_key(entry.name)]  # (L2, L1)
            deep = (w @ wide.flatten(1)).view(L2, *wide.shape[1:])  # (L2, *large shape)
            for l in range(L2):
                grown[f"blocks.{l}.{entry.name}"] = deep[l]
        return grown

    def _widen(self, t: torch.Tensor, axes: tuple[str, ...]) -> torch.Tensor:
        """Expand the trailing len(axes) dims of t, the last first (operator_flops_per_step
        counts in the same order)."""
        t = t.to(self.width["resid"].dtype)
        for i in reversed(range(len(axes))):
            t = self._expand_axis(t, i - len(axes), axes[i])
        return t

    def _expand_axis(self, t: torch.Tensor, dim: int, kind: str) -> torch.Tensor:
        if kind in IDENTITY_KINDS:
            return t
        if kind in COMPOSITE_KINDS:
            parts = COMPOSITE_KINDS[kind]
            chunks = t.split([self._small_sizes[k] for k in parts], dim=dim)
            return torch.cat([self._expand_axis(c, dim, k) for c, k in zip(chunks, parts)], dim=dim)
        B = self.width[self._alias.get(kind, kind)]  # (n_large, n_small)
        return (t.movedim(dim, -1) @ B.T).movedim(-1, dim)  # (..., n_small) -> (..., n_large)


@torch.no_grad()
def grow(small_model: GPT, large_model: GPT, operator: GrowthOperator) -> None:
    """Write operator(small_model's parameters) into large_model's parameters, in place.

    Runs on the operator's device and dtype; a tied lm_head stays tied, because
    named_parameters() lists the shared tensor once and we copy into it.
    """
    for model, cfg, label in ((small_model, operator.small_config, "small"),
                              (large_model, operator.large_config, "large")):
        if getattr(model, "config", None) != cfg:
            raise ValueError(f"the {label} model's config does not match the operator's")
    device = operator.width["resid"].device
    small = {name: p.detach().to(device) for name, p in small_model.named_parameters()}
    grown = operator(small)
    targets = dict(large_model.named_parameters())
    if set(grown) != set(targets):
        raise ValueError(f"grown names differ from the large model's: "
                         f"{sorted(set(grown) ^ set(targets))[:5]}")
    for name, param in targets.items():
        param.copy_(grown[name])


def stack_grow(small_model: GPT, large_model: GPT) -> None:
    """The plain, not learned, baseline: StackBERT stacking (Gong et al. 2019, ICML).

    Large layer l copies small layer l mod L1; when the large model is wider, the width
    operator at its [I; 0] init zero-pads the new dims. Equivalent to
    grow(small, large, GrowthOperator(S, G, "stack", 0.0)), evaluated in float64 so that
    the copies are bit-exact even where float32 matmuls run as TF32.
    """
    device = next(large_model.parameters()).device
    operator = GrowthOperator(small_model.config, large_model.config, "stack", 0.0)
    grow(small_model, large_model, operator.to(device=device, dtype=torch.float64))


def operator_flops_per_step(small: GPTConfig, large: GPTConfig) -> float:
    """FLOPs of one operator-learning optimizer step spent in the operator itself.

    2 x the multiply-adds of evaluating the operator once (every width product, in the
    order _widen does them, and every depth sum), times 3 for forward plus backward by
    the usual 1 + 2 rule (an upper bound: the small parameters need no gradient).
    Per optimizer step and independent of the batch size: the operator maps weights,
    not tokens. The large model's own forward/backward on the batch is extra
    (harness.models.model_flops_per_token).
    """
    plan = growth_plan(small, large)
    s, g = axis_sizes(small), axis_sizes(large)
    L1, L2 = small.n_layer, large.n_layer
    macs = 0
    for entry in plan:
        shape = [_kind_size(kind, s) for kind in entry.axes]
        if entry.in_block:
            shape = [L1] + shape
        offset = len(shape) - len(entry.axes)
        for i in reversed(range(len(entry.axes))):
            kind, others = entry.axes[i], math.prod(shape) // shape[offset + i]
            for part in COMPOSITE_KINDS.get(kind, (kind,)):
                if part not in IDENTITY_KINDS:
                    macs += others * s[part] * g[part]  # (others, n1) @ (n1, n2)
            shape[offset + i] = _kind_size(kind, g)
        if entry.in_block:
            macs += L2 * L1 * math.prod(shape[1:])  # (L2, L1) @ (L1, numel)
    return 3.0 * 2.0 * macs
