"""A Mixture-of-Experts feed-forward: a router sends each token to k of E expert MLPs.

The reference design of GShard (Lepikhin et al. 2020) and Switch Transformer (Fedus et al.
2021), written for clarity and for compile-friendliness rather than for speed:

  router     logits = x W_r in fp32, probabilities = softmax over the E experts
  top-k      each token picks its k most probable experts; its gates are those
             probabilities, renormalised to sum 1 when k > 1 (GShard, Mixtral), the raw
             probability when k = 1 (Switch)
  capacity   each expert processes at most ceil(capacity_factor * N * k / E) assignments;
             all first choices are served before any second choice (GShard), and within a
             choice, tokens in order. An assignment past capacity is dropped: it contributes
             nothing and the block's residual connection carries the token on unchanged
  experts    tokens are copied into an (E, capacity, C) buffer, every expert runs as one
             batched matmul per projection, and each token's outputs are gathered back and
             summed with its gates

Every expert is a copy of the dense feed-forward of the same flavour with hidden size
F = cfg.ff_hidden (GELU for gpt2, SwiGLU for llama), so top-1 routing with the dense F has
exactly the dense MLP's active parameters.

Auxiliary losses: the Switch load-balancing loss and ST-MoE's router z-loss (Zoph et al.
2022). Each forward leaves `aux_loss` (already weighted by the config's coefficients) on the
layer; the training step adds `auxiliary_loss(routed_layers(model))` to its loss. In training
mode each forward also adds routing statistics to device-side accumulators, without any host
synchronisation; harness/metrics/routing.py reads them.

Shape letters: B batch, T sequence, C d_model, E experts, F expert hidden size,
N tokens = B*T, k experts per token, S capacity (slots per expert).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
import torch.nn as nn
import torch.nn.functional as F

if TYPE_CHECKING:  # gpt.py imports this module to build its blocks
    from harness.models.gpt import GPTConfig


@dataclass(frozen=True)
class Routing:
    """Where each of a token's k assignments goes. All (N, k), choices best first."""

    expert_index: torch.Tensor  # long: the expert of each assignment
    gate: torch.Tensor  # weight of that expert's output in the token's sum
    position: torch.Tensor  # long: the assignment's slot in its expert's buffer, in priority order
    kept: torch.Tensor  # bool: position < capacity; a dropped assignment contributes 0


def expert_capacity(tokens: int, n_experts: int, top_k: int, capacity_factor: float) -> int:
    """Slots per expert: ceil(capacity_factor * tokens * top_k / n_experts), at most `tokens`
    (top-k picks distinct experts, so no expert can receive more than one assignment a token)."""
    # the small tolerance keeps float error (1.1 * 10 = 11.000000000000002) from adding a slot
    return min(tokens, max(1, math.ceil(capacity_factor * tokens * top_k / n_experts - 1e-9)))


def route(probs: torch.Tensor, top_k: int, capacity: int) -> Routing:
    """Top-k routing with GShard's priority: probs (N, E) router probabilities -> Routing."""
    N, E = probs.shape
    top_probs, expert_index = probs.topk(top_k, dim=-1)  # (N, k) each
    gate = top_probs / top_probs.sum(dim=-1, keepdim=True) if top_k > 1 else top_probs
    # Walk the assignments choice-major (every first choice, then every second choice), so
    # a cumulative count per expert is each assignment's place in its expert's queue.
    choice_major = expert_index.t().reshape(-1)  # (k*N,)
    one_hot = torch.zeros(top_k * N, E, dtype=torch.long, device=probs.device)
    one_hot.scatter_(1, choice_major.unsqueeze(1), 1)  # (k*N, E); scatter: no device sync
    queue = one_hot.cumsum(dim=0).gather(1, choice_major.unsqueeze(1)).squeeze(1) - 1  # (k*N,)
    position = queue.view(top_k, N).t()  # (N, k)
    return Routing(expert_index=expert_index, gate=gate, position=position,
                   kept=position < capacity)


def load_balancing_loss(probs: torch.Tensor, expert_index: torch.Tensor,
                        n_experts: int) -> torch.Tensor:
    """Switch Transformer's auxiliary loss (Fedus et al. 2021, eq. 4), over k choices:
    E * sum_i f_i * P_i, f_i the fraction of the N*k assignments (before dropping) that chose
    expert i, P_i the mean router probability of expert i. probs (N, E), expert_index (N, k).

    1.0 when routing is uniform, E when every token sends everything to one expert. f is a
    count and carries no gradient; P pulls probability away from overloaded experts."""
    assignments = expert_index.reshape(-1)  # (N*k,)
    counts = torch.zeros(n_experts, dtype=probs.dtype, device=probs.device)
    counts = counts.scatter_add(0, assignments, torch.ones_like(assignments, dtype=probs.dtype))
    fraction = counts / assignments.numel()  # f: (E,)
    mean_prob = probs.mean(dim=0)  # P: (E,)
    return n_experts * (fraction * mean_prob).sum()


def router_z_loss(logits: torch.Tensor) -> torch.Tensor:
    """ST-MoE's z-loss (Zoph et al. 2022, eq. 5): mean over tokens of logsumexp(logits)^2.
    Keeps router logits small, where fp32 softmax stays accurate. logits (N, E)."""
    return torch.logsumexp(logits, dim=-1).square().mean()


def _recomputing() -> bool:
    """True while autograd runs a backward pass, the only time a forward runs inside one:
    a non-reentrant activation checkpoint recomputing its block. Grad mode cannot tell, the
    recompute runs with grad enabled, and torch.utils.checkpoint offers no public flag. (By
    default the recompute stops early, once it has rebuilt what backward needs, usually
    before reaching the statistics; with early stop off it runs the whole forward.)"""
    if torch.compiler.is_compiling():
        # Traced code is never re-run by a recompute: a checkpoint dynamo traces is
        # recomputed inside AOT autograd's backward graph, and one it cannot trace (see
        # tests/models/test_moe.py) it leaves to eager torch.utils.checkpoint, which runs this
        # Python again, where the check below applies.
        return False
    return torch._C._current_graph_task_id() != -1


class RoutedExperts(nn.Module):
    """Drop-in for the dense feed-forward: (B, T, C) -> (B, T, C), routed over E experts."""

    # float sums of the statistics; see _apply
    _FLOAT_STATS = ("entropy_sum", "balance_loss_sum", "z_loss_sum")

    def __init__(self, cfg: GPTConfig) -> None:
        super().__init__()
        if cfg.n_experts < 1:
            raise ValueError(f"RoutedExperts needs n_experts >= 1, got {cfg.n_experts}")
        E, C, d_ff = cfg.n_experts, cfg.d_model, cfg.ff_hidden
        self.n_experts, self.top_k, self.capacity_factor = E, cfg.expert_top_k, cfg.capacity_factor
        self.aux_loss_coef, self.z_loss_coef = cfg.router_aux_loss_coef, cfg.router_z_loss_coef
        self.swiglu = cfg.flavour == "llama"
        self.router = nn.Linear(C, E, bias=False)
        # Experts stacked along a leading E axis, so that each projection is one bmm.
        if self.swiglu:  # silu(x W_gate) * (x W_up), then W_out (Shazeer 2020)
            self.w_gate = nn.Parameter(torch.empty(E, C, d_ff))
            self.w_up = nn.Parameter(torch.empty(E, C, d_ff))
        else:  # GELU(tanh)(x W_in + b_in), then W_out + b_out
            self.w_in = nn.Parameter(torch.empty(E, C, d_ff))
            self.b_in = nn.Parameter(torch.empty(E, d_ff)) if cfg.bias else None
        self.w_out = nn.Parameter(torch.empty(E, d_ff, C))
        self.b_out = nn.Parameter(torch.empty(E, C)) if cfg.bias and not self.swiglu else None

        # Training statistics, summed over forwards until reset_statistics(). Non-persistent:
        # measurements, not model state, so checkpoints neither carry nor expect them.
        # Scalars are shape (1,): torch.compile (2.13, CPU) silently drops in-place updates of
        # 0-dim float64 buffers, which dynamo treats like Python floats.
        for name, shape, dtype in (
            ("tokens_per_expert", (E,), torch.long),  # assignments per expert, before dropping
            ("dropped", (1,), torch.long),  # assignments dropped at capacity
            ("assignments", (1,), torch.long),  # N * k per forward
            ("entropy_sum", (1,), torch.float64),  # router entropy (nats), summed over tokens
            ("token_count", (1,), torch.long),
            ("balance_loss_sum", (1,), torch.float64),  # unweighted, summed over forwards
            ("z_loss_sum", (1,), torch.float64),
            ("forwards", (1,), torch.long),
        ):
            self.register_buffer(name, torch.zeros(shape, dtype=dtype), persistent=False)
        self.aux_loss: torch.Tensor | None = None  # weighted aux losses of the last forward
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        """Weights normal(0, 0.02), biases zero, like nn.Linear in GPT.init_weights (which
        then rescales w_out like every residual projection)."""
        nn.init.normal_(self.router.weight, mean=0.0, std=0.02)
        for name, param in self.named_parameters(recurse=False):  # w_* weights, b_* biases
            if name.startswith("w_"):
                nn.init.normal_(param, mean=0.0, std=0.02)
            else:
                nn.init.zeros_(param)

    @torch.no_grad()
    def reset_statistics(self) -> None:
        for name, _ in self.named_buffers(recurse=False):
            getattr(self, name).zero_()

    def _apply(self, fn, recurse=True):
        # Module.to(dtype) casts every floating-point buffer; bf16-pure training would then
        # sum the statistics in bf16, which stops counting after a few hundred forwards.
        # Keep the float sums in float64 whatever the weights become (device moves still apply).
        super()._apply(fn, recurse)
        for name in self._FLOAT_STATS:
            stat = getattr(self, name)
            if stat.dtype != torch.float64:
                setattr(self, name, stat.to(torch.float64))
        return self

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        B, T, C = x.shape
        E, k = self.n_experts, self.top_k
        tokens = x.reshape(B * T, C)  # (N, C)
        N = tokens.size(0)

        # Routing decisions are precision-sensitive (Fedus et al. 2021, "selective
        # precision"): the router runs in fp32 even under autocast.
        with torch.autocast(device_type=x.device.type, enabled=False):
            logits = F.linear(tokens.float(), self.router.weight.float())  # (N, E)
        probs = logits.softmax(dim=-1)  # (N, E)
        capacity = expert_capacity(N, E, k, self.capacity_factor)  # S
        routing = route(probs, k, capacity)

        # Slot e*S + position in the flattened (E*S, C) buffer; dropped assignments all go to
        # one extra trash row E*S, so shapes never depend on how many were dropped.
        slot = routing.expert_index * capacity + routing.position  # (N, k)
        slot = torch.where(routing.kept, slot, E * capacity).reshape(-1)  # (N*k,), token-major
        # Dispatch by index_add: each kept slot receives exactly one token, so the sum is an
        # exact copy, and its backward is a plain gather.
        dispatched = tokens.new_zeros(E * capacity + 1, C).index_add(
            0, slot, tokens.repeat_interleave(k, dim=0)
        )  # (E*S + 1, C)
        expert_out = self._experts(dispatched[:-1].view(E, capacity, C))  # (E, S, C)
        # Combine by gather: the trash row reads zeros, so a dropped assignment adds nothing
        # (and gets no gradient). Summing over k in a (N, k, C) view is deterministic, where
        # a scatter-add back to tokens would use atomics on GPU.
        rows = torch.cat([expert_out.reshape(E * capacity, C), expert_out.new_zeros(1, C)])
        picked = rows[slot].view(N, k, C)  # (N, k, C)
        y = (picked * routing.gate.unsqueeze(-1)).sum(dim=1)  # (N, C), fp32 gates

        balance = load_balancing_loss(probs, routing.expert_index, E)
        z = router_z_loss(logits)
        if not _recomputing():
            # A checkpoint's recompute must rebuild the same graph, so the losses above are
            # computed again; but the step already holds this forward's aux_loss, and the
            # statistics already counted it.
            self.aux_loss = self.aux_loss_coef * balance + self.z_loss_coef * z
            if self.training:
                self._accumulate(probs, routing, balance, z)
        return y.to(x.dtype).view(B, T, C)

    def _experts(self, h: torch.Tensor) -> torch.Tensor:
        """Every expert on its own slots at once: h (E, S, C) -> (E, S, C)."""
        if self.swiglu:
            hidden = F.silu(torch.bmm(h, self.w_gate)) * torch.bmm(h, self.w_up)  # (E, S, F)
        else:
            hidden = (torch.bmm(h, self.w_in) if self.b_in is None
                      else torch.baddbmm(self.b_in.unsqueeze(1), h, self.w_in))  # (E, S, F)
            hidden = F.gelu(hidden, approximate="tanh")
        if self.b_out is None:
            return torch.bmm(hidden, self.w_out)
        return torch.baddbmm(self.b_out.unsqueeze(1), hidden, self.w_out)  # (E, S, C)

    @torch.no_grad()
    def _accumulate(self, probs: torch.Tensor, routing: Routing, balance: torch.Tensor,
                    z: torch.Tensor) -> None:
        # in-place adds into device buffers only: no .item(), nothing for the host to wait on
        assignments = routing.expert_index.reshape(-1)  # (N*k,)
        self.tokens_per_expert.scatter_add_(0, assignments, torch.ones_like(assignments))
        self.dropped.add_((~routing.kept).sum())
        self.assignments.add_(assignments.numel())
        self.entropy_sum.add_(torch.special.entr(probs).sum())  # entr(p) = -p ln p, 0 at p = 0
        self.token_count.add_(probs.size(0))
        self.balance_loss_sum.add_(balance.detach())
        self.z_loss_sum.add_(z.detach())
        self.forwards.add_(1)


def routed_layers(model: nn.Module) -> list[RoutedExperts]:
    """Every RoutedExperts inside model, in module order. Wrappers (DDP, torch.compile's
    OptimizedModule, checkpoint wrappers) register what they wrap as a submodule, so
    walking modules() sees through them."""
    return [module for module in model.modules() if isinstance(module, RoutedExperts)]


def auxiliary_loss(layers: list[RoutedExperts]) -> torch.Tensor | None:
    """Sum of the layers' weighted auxiliary losses from their last forward; None for none.
    Add it to the training loss after each forward (each micro-batch's forward overwrites it)."""
    losses = [layer.aux_loss for layer in layers]
    if not losses:
        return None
    if any(loss is None for loss in losses):
        raise RuntimeError("auxiliary_loss read before the routed layers ran a forward")
    return torch.stack(losses).sum()
