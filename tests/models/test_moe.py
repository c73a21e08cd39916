"""The Mixture-of-Experts feed-forward: routing on constructed inputs, the auxiliary losses in
closed form, FLOP matching of the presets, the batched layer against a per-token loop, and the
statistics under activation checkpointing and torch.compile."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch.distributed.algorithms._checkpoint.checkpoint_wrapper import checkpoint_wrapper
from torch.utils.checkpoint import set_checkpoint_early_stop
from torch.utils.flop_counter import FlopCounterMode

from harness.metrics.routing import reset_router_stats, router_metrics
from harness.models import (
    GPT,
    PRESETS,
    GPTConfig,
    RoutedExperts,
    auxiliary_loss,
    expert_capacity,
    flops_parameter_count,
    load_balancing_loss,
    model_flops_per_token,
    parameter_count,
    route,
    routed_layers,
    router_z_loss,
    total_parameter_count,
)


def moe_config(**overrides) -> GPTConfig:
    fields = dict(n_layer=2, n_head=4, d_model=32, vocab_size=97, max_seq_len=64, n_experts=4)
    fields.update(overrides)
    return GPTConfig(**fields)


# --- routing on constructed inputs -------------------------------------------------------

def test_expert_capacity() -> None:
    assert expert_capacity(8, 4, 1, 1.0) == 2
    assert expert_capacity(8, 4, 1, 1.25) == 3  # 2.5 rounds up
    assert expert_capacity(8, 4, 2, 1.0) == 4
    assert expert_capacity(20, 4, 2, 1.1) == 11  # 1.1 * 40 / 4 is 11.000000000000002 in floats
    assert expert_capacity(4, 2, 2, 4.0) == 4  # no expert can take more than one slot a token


def test_capacity_drops_everything_past_the_first_slots() -> None:
    # 8 tokens that all prefer expert 0; E=4, k=1, factor 1.0 -> capacity 2
    probs = torch.tensor([[0.7, 0.1, 0.1, 0.1]]).repeat(8, 1)
    capacity = expert_capacity(8, 4, 1, 1.0)
    routing = route(probs, top_k=1, capacity=capacity)
    assert capacity == 2
    assert routing.expert_index.squeeze(1).tolist() == [0] * 8
    assert routing.position.squeeze(1).tolist() == list(range(8))  # token order
    assert routing.kept.squeeze(1).tolist() == [True, True] + [False] * 6
    assert (~routing.kept).float().mean().item() == 6 / 8
    torch.testing.assert_close(routing.gate, torch.full((8, 1), 0.7))  # Switch: raw probability


def test_first_choices_are_served_before_second_choices() -> None:
    # tokens 0, 1 prefer experts (0, 1); tokens 2, 3 prefer (1, 2). Expert 1 is the first
    # choice of tokens 2, 3 and the second of tokens 0, 1: with capacity 2, GShard's priority
    # gives it to 2 and 3 although 0 and 1 come first in token order.
    probs = torch.tensor([
        [0.5, 0.3, 0.1, 0.1],
        [0.6, 0.2, 0.1, 0.1],
        [0.1, 0.6, 0.2, 0.1],
        [0.1, 0.5, 0.3, 0.1],
    ])
    capacity = expert_capacity(4, 4, 2, 1.0)
    routing = route(probs, top_k=2, capacity=capacity)
    assert capacity == 2
    assert routing.expert_index.tolist() == [[0, 1], [0, 1], [1, 2], [1, 2]]
    assert routing.position.tolist() == [[0, 2], [1, 3], [0, 0], [1, 1]]
    assert routing.kept.tolist() == [[True, False], [True, False], [True, True], [True, True]]
    # top-2 gates are renormalised over the two choices (GShard, Mixtral)
    torch.testing.assert_close(routing.gate[0], torch.tensor([0.5, 0.3]) / 0.8)
    torch.testing.assert_close(routing.gate.sum(dim=1), torch.ones(4))


# --- auxiliary losses in closed form -----------------------------------------------------

@pytest.mark.parametrize("top_k", [1, 2])
def test_balance_loss_is_one_under_uniform_routing(top_k: int) -> None:
    E, N = 4, 8
    probs = torch.full((N, E), 1 / E)
    # token n chooses experts n, n+1 (mod E): every expert gets N*k/E assignments
    expert_index = (torch.arange(N)[:, None] + torch.arange(top_k)[None, :]) % E  # (N, k)
    loss = load_balancing_loss(probs, expert_index, E)
    torch.testing.assert_close(loss, torch.tensor(1.0))


def test_balance_loss_is_e_when_everything_goes_to_one_expert() -> None:
    E, N = 8, 16
    probs = torch.zeros(N, E)
    probs[:, 3] = 1.0
    loss = load_balancing_loss(probs, torch.full((N, 1), 3), E)
    torch.testing.assert_close(loss, torch.tensor(float(E)))


def test_balance_loss_gradient_pushes_probability_off_the_busy_expert() -> None:
    logits = torch.zeros(6, 3, requires_grad=True)
    expert_index = torch.tensor([[0], [0], [0], [0], [1], [2]])  # expert 0 overloaded
    load_balancing_loss(logits.softmax(-1), expert_index, 3).backward()
    assert (logits.grad[:, 0] > 0).all() and (logits.grad[:, 1:] < 0).all()


def test_z_loss_of_constant_logits() -> None:
    E, c = 8, 1.5
    logits = torch.full((5, E), c)
    expected = (c + math.log(E)) ** 2  # logsumexp of E equal logits c is c + log E
    torch.testing.assert_close(router_z_loss(logits), torch.tensor(expected))


# --- FLOPs and parameters ----------------------------------------------------------------

TWINS = {
    "tiny-moe": "tiny",
    "small-moe8-top1": "small",
    "small-moe8-top2": "small",
    "gpt2-small-moe8-top1": "gpt2-small",
    "gpt2-small-moe8-top2": "gpt2-small",
}


@pytest.mark.parametrize("name", TWINS)
def test_moe_presets_are_flop_matched_to_their_dense_twins(name: str) -> None:
    moe, dense = PRESETS[name], PRESETS[TWINS[name]]
    L, C, E = moe.n_layer, moe.d_model, moe.n_experts
    assert moe.expert_top_k * moe.ff_hidden == dense.ff_hidden
    T = moe.max_seq_len
    difference = model_flops_per_token(moe, T) - model_flops_per_token(dense, T)
    # the router; and top-2 in gpt2 flavour adds one more expert's output bias
    second_bias = C if moe.expert_top_k == 2 and moe.bias else 0
    assert difference == 6 * L * (C * E + second_bias)
    assert difference / model_flops_per_token(dense, T) < 0.005
    for field in ("flavour", "n_layer", "n_head", "d_model", "vocab_size", "max_seq_len"):
        assert getattr(moe, field) == getattr(dense, field), field


CONFIGS = {
    "gpt2-dense": moe_config(n_experts=0),
    "llama-dense-untied": moe_config(flavour="llama", n_experts=0, tie_embeddings=False),
    "gpt2-top1": moe_config(),
    "gpt2-top2-nobias": moe_config(expert_top_k=2, bias=False),
    "llama-top2": moe_config(flavour="llama", expert_top_k=2, d_ff=48),
    "llama-top1-untied": moe_config(flavour="llama", tie_embeddings=False),
}


@pytest.mark.parametrize("name", CONFIGS)
def test_total_parameter_count_counts_what_the_model_holds(name: str) -> None:
    cfg = CONFIGS[name]
    assert parameter_count(GPT(cfg)) == total_parameter_count(cfg)


@pytest.mark.parametrize("name", TWINS)
def test_total_parameter_count_of_moe_presets(name: str) -> None:
    cfg = PRESETS[name]
    with torch.device("meta"):
        model = GPT(cfg)
    assert parameter_count(model) == total_parameter_count(cfg)
    # all E experts are held, k of them are active
    expert = sum(p.numel() for n, p in model.blocks[0].mlp.named_parameters() if n != "router.weight")
    inactive = cfg.n_layer * expert * (cfg.n_experts - cfg.expert_top_k) // cfg.n_experts
    position_table = cfg.max_seq_len * cfg.d_model
    assert total_parameter_count(cfg) - inactive - position_table == flops_parameter_count(cfg)


DENSE_FLOPS = {  # (N, model FLOPs per token at max_seq_len) before MoE existed
    "tiny": (116_480, 2_271_744),
    "tiny-llama": (139_584, 2_410_368),
    "small": (826_112, 11_248_128),
    "gpt2-small": (123_653_376, 855_166_464),
    "gpt2-medium": (353_774_592, 2_424_637_440),
    "gpt2-large": (772_719_360, 5_202_547_200),
    "gpt2-xl": (1_555_972_800, 10_279_555_200),
    "llama-1b": (1_034_512_384, 7_314_370_560),
}


@pytest.mark.parametrize("name", DENSE_FLOPS)
def test_dense_flops_are_unchanged(name: str) -> None:
    cfg = PRESETS[name]
    assert (flops_parameter_count(cfg), model_flops_per_token(cfg, cfg.max_seq_len)) == DENSE_FLOPS[name]


@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_counted_matmul_flops_are_those_of_the_active_weights(flavour: str) -> None:
    # Capacity factor 1 and N*k divisible by E: the expert bmms run exactly N*k token-expert
    # pairs, so torch counts 6 FLOPs per token for each weight a token meets: every matrix
    # but the embedding tables (the tied one is the LM head), k/E of the experts'. Biases and
    # norm gains are in N but not counted. Attention counts torch's CUDA-kernel formulas,
    # which harness.metrics.flop_count registers for the CPU kernel too (imported here, so the
    # count does not depend on which test imported it first): a forward of 4·d_model·T per
    # token and layer and a backward of 10 (it recomputes the scores).
    import harness.metrics.flop_count  # noqa: F401

    cfg = moe_config(flavour=flavour, expert_top_k=2, d_ff=64, capacity_factor=1.0)
    model = GPT(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 32))
    counter = FlopCounterMode(display=False)
    with counter:
        model(idx).float().square().mean().backward()
    active = 0.0
    for name, param in model.named_parameters():
        if param.dim() < 2 or name.endswith(("b_in", "b_out", "position_embedding.weight")):
            continue
        routed = ".mlp.w_" in name
        active += param.numel() * (cfg.expert_top_k / cfg.n_experts if routed else 1)
    attention = (4 + 10) * cfg.n_layer * cfg.d_model * idx.shape[1] * idx.numel()
    assert counter.get_total_flops() == 6 * active * idx.numel() + attention
    assert active / flops_parameter_count(cfg) == pytest.approx(1.0, abs=0.05)  # 0.97 gpt2, 1.0 llama


# --- the layer itself ----------------------------------------------------------------------

@pytest.mark.parametrize("name", ["gpt2-top1", "gpt2-top2-nobias", "llama-top2"])
def test_moe_gpt_trains_on_cpu(name: str) -> None:
    cfg = CONFIGS[name]
    torch.manual_seed(0)
    model = GPT(cfg)
    idx = torch.randint(0, cfg.vocab_size, (2, 33))
    logits = model(idx[:, :-1])
    aux = auxiliary_loss(routed_layers(model))
    loss = F.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten()) + aux
    loss.backward()
    assert torch.isfinite(loss) and aux.grad_fn is not None
    assert len(routed_layers(model)) == cfg.n_layer
    for name_, param in model.named_parameters():
        if "mlp" in name_ and not name_.endswith(("b_in", "b_out")):  # zero-initialised biases
            assert param.grad is not None and param.grad.abs().sum() > 0, name_
    block = model.blocks[1].mlp
    residual_std = 0.02 / math.sqrt(2 * cfg.n_layer)
    assert block.w_out.std().item() == pytest.approx(residual_std, rel=0.1)


def expert_of(layer: RoutedExperts, e: int, v: torch.Tensor) -> torch.Tensor:
    """Expert e on one token v (C,), written out as the dense MLP would compute it."""
    if layer.swiglu:
        return (F.silu(v @ layer.w_gate[e]) * (v @ layer.w_up[e])) @ layer.w_out[e]
    hidden = v @ layer.w_in[e] + (0 if layer.b_in is None else layer.b_in[e])
    return F.gelu(hidden, approximate="tanh") @ layer.w_out[e] + (0 if layer.b_out is None else layer.b_out[e])


def reference_moe(layer: RoutedExperts, x: torch.Tensor) -> tuple[torch.Tensor, int]:
    """The obvious implementation: a Python loop over choices and tokens. -> (y, dropped)."""
    B, T, C = x.shape
    tokens = x.reshape(-1, C)
    N, E, k = tokens.size(0), layer.n_experts, layer.top_k
    probs = (tokens @ layer.router.weight.T).softmax(dim=-1)
    top, index = probs.topk(k, dim=-1)
    gates = top / top.sum(dim=-1, keepdim=True) if k > 1 else top
    capacity = expert_capacity(N, E, k, layer.capacity_factor)
    load, dropped = [0] * E, 0
    out = [torch.zeros(C) for _ in range(N)]
    for choice in range(k):  # all first choices, then all second choices
        for n in range(N):
            e = int(index[n, choice])
            if load[e] == capacity:
                dropped += 1
                continue
            load[e] += 1
            out[n] = out[n] + gates[n, choice] * expert_of(layer, e, tokens[n])
    return torch.stack(out).view(B, T, C), dropped


@pytest.mark.parametrize("capacity_factor", [4.0, 0.6])
@pytest.mark.parametrize("name", ["gpt2-top1", "gpt2-top2", "llama-top2"])
def test_batched_dispatch_equals_per_token_loop(name: str, capacity_factor: float) -> None:
    flavour, top_k = name.split("-top")
    cfg = moe_config(flavour=flavour, d_model=16, d_ff=24, expert_top_k=int(top_k),
                     capacity_factor=capacity_factor)
    torch.manual_seed(0)
    layer = RoutedExperts(cfg)
    with torch.no_grad():  # random biases too, so that their gradients are checked
        for param in layer.parameters():
            param.normal_(0.0, 0.3)
    x = torch.randn(2, 12, 16, requires_grad=True)
    weights = torch.randn(2, 12, 16)
    inputs = [x, *layer.parameters()]

    y = layer(x)
    grads = torch.autograd.grad((y * weights).sum(), inputs)
    expected, dropped = reference_moe(layer, x)
    expected_grads = torch.autograd.grad((expected * weights).sum(), inputs)

    torch.testing.assert_close(y, expected, rtol=0, atol=1e-5)
    for grad, expected_grad in zip(grads, expected_grads):
        torch.testing.assert_close(grad, expected_grad, rtol=0, atol=1e-5)
    if capacity_factor > 1:
        assert dropped == 0
    else:
        assert 0 < dropped < 24 * int(top_k)


def test_statistics_count_what_route_decided() -> None:
    cfg = moe_config(d_model=16, expert_top_k=2, capacity_factor=0.75)
    torch.manual_seed(0)
    layer = RoutedExperts(cfg)
    with torch.no_grad():
        layer.router.weight.normal_(0.0, 1.0)  # a decided, unbalanced router
    x = torch.randn(3, 10, 16)
    forwards = 3
    for _ in range(forwards):
        layer(x)
    layer.eval()
    layer(x)  # evaluation forwards are not counted
    layer.train()

    probs = (x.reshape(-1, 16) @ layer.router.weight.T).softmax(-1)  # (30, 4)
    routing = route(probs, 2, expert_capacity(30, 4, 2, 0.75))
    counts = torch.bincount(routing.expert_index.flatten(), minlength=4).double()  # (E,)
    assert layer.tokens_per_expert.tolist() == (forwards * counts).long().tolist()
    assert layer.dropped.item() == forwards * (~routing.kept).sum().item()
    assert (layer.assignments.item(), layer.token_count.item(), layer.forwards.item()) == (180, 90, 3)

    metrics, series = router_metrics(layer)
    assert metrics["dropped_token_fraction"] == pytest.approx((~routing.kept).float().mean().item())
    assert 0 < metrics["dropped_token_fraction"] < 1
    assert series["tokens_per_expert"] == pytest.approx((counts / 60).tolist())
    assert metrics["expert_load_imbalance"] == pytest.approx((counts.max() / counts.mean()).item())
    assert metrics["expert_load_imbalance_worst_layer"] == metrics["expert_load_imbalance"]
    entropy = -(probs * probs.log()).sum(-1).mean()
    assert metrics["router_entropy"] == pytest.approx(entropy.item(), rel=1e-5)
    assert metrics["router_entropy_max"] == pytest.approx(math.log(4))
    balance = load_balancing_loss(probs, routing.expert_index, 4)
    assert metrics["router_aux_loss"] == pytest.approx(balance.item(), rel=1e-5)
    logits = x.reshape(-1, 16) @ layer.router.weight.T
    assert metrics["router_z_loss"] == pytest.approx(router_z_loss(logits).item(), rel=1e-5)
    expected_aux = cfg.router_aux_loss_coef * balance + cfg.router_z_loss_coef * router_z_loss(logits)
    torch.testing.assert_close(layer.aux_loss, expected_aux)

    reset_router_stats(layer)
    assert router_metrics(layer) == ({}, {})
    assert all(not buffer.any() for buffer in layer.buffers())


def test_router_metrics_of_a_dense_model_are_empty() -> None:
    model = GPT(moe_config(n_experts=0))
    model(torch.zeros(1, 4, dtype=torch.long))
    assert router_metrics(model) == ({}, {})
    assert auxiliary_loss(routed_layers(model)) is None


def test_statistics_stay_float64_when_the_model_is_cast_to_bf16() -> None:
    model = GPT(moe_config(flavour="llama")).to(torch.bfloat16)
    layer = routed_layers(model)[0]
    assert layer.w_out.dtype == torch.bfloat16
    assert layer.entropy_sum.dtype == torch.float64 and layer.dropped.dtype == torch.long
    assert model(torch.zeros(1, 4, dtype=torch.long)).dtype == torch.bfloat16
    assert layer.token_count.item() == 4


# --- checkpointing and torch.compile -------------------------------------------------------

def train_steps(model: torch.nn.Module, layers: list[RoutedExperts], steps: int = 2) -> torch.Tensor:
    idx = torch.randint(0, 97, (2, 17), generator=torch.Generator().manual_seed(1))
    for _ in range(steps):
        logits = model(idx[:, :-1])
        aux = auxiliary_loss(layers)
        forward_losses = [layer.aux_loss for layer in layers]
        (F.cross_entropy(logits.flatten(0, 1), idx[:, 1:].flatten()) + aux).backward()
        # a recompute in backward must not replace what the step added to its loss
        assert all(layer.aux_loss is loss for layer, loss in zip(layers, forward_losses))
    return aux


def snapshot(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """Statistics and gradients, keyed by names without the wrappers' prefixes."""
    out = {name: buffer.clone() for name, buffer in model.named_buffers() if "mlp" in name}
    out.update({name: p.grad.clone() for name, p in model.named_parameters()})
    return {name.replace("_checkpoint_wrapped_module.", "").replace("_orig_mod.", ""): value
            for name, value in out.items()}


def assert_same(actual: dict[str, torch.Tensor], expected: dict[str, torch.Tensor]) -> None:
    assert actual.keys() == expected.keys()
    for name in expected:
        if expected[name].dtype == torch.long:
            assert torch.equal(actual[name], expected[name]), name
        else:
            torch.testing.assert_close(actual[name], expected[name], rtol=1e-4, atol=1e-6, msg=name)


def build(flavour: str = "gpt2", checkpointed: bool = False) -> GPT:
    torch.manual_seed(0)
    model = GPT(moe_config(flavour=flavour, expert_top_k=2, capacity_factor=1.0))
    if checkpointed:
        for i, block in enumerate(model.blocks):
            # non-reentrant torch.utils.checkpoint, as harness.techniques.checkpointing uses
            model.blocks[i] = checkpoint_wrapper(block, preserve_rng_state=False)
    return model


@pytest.mark.parametrize("early_stop", [True, False])
@pytest.mark.parametrize("flavour", ["gpt2", "llama"])
def test_checkpoint_recompute_does_not_count_twice(flavour: str, early_stop: bool) -> None:
    # By default the recompute stops once it has rebuilt the last tensor backward needs,
    # before the statistics are reached; without early stop it runs the whole forward again.
    reference = build(flavour)
    train_steps(reference, routed_layers(reference))
    model = build(flavour, checkpointed=True)
    layers = routed_layers(model)  # found through the checkpoint wrappers
    assert len(layers) == 2
    with set_checkpoint_early_stop(early_stop):
        aux = train_steps(model, layers)
    assert aux.grad_fn is not None
    assert layers[0].forwards.item() == 2
    assert_same(snapshot(model), snapshot(reference))


def test_compiled_model_counts_and_differentiates_aux_loss() -> None:
    reference = build()
    train_steps(reference, routed_layers(reference))
    model = build()
    compiled = torch.compile(model, fullgraph=True)  # fullgraph: no graph break allowed
    layers = routed_layers(compiled)  # found through OptimizedModule
    aux = train_steps(compiled, layers)
    # dynamo replays the attribute store after the graph: the tensor is the graph's output
    assert all(layer.aux_loss.grad_fn is not None for layer in layers)
    assert aux.grad_fn is not None
    assert_same(snapshot(model), snapshot(reference))


@pytest.mark.parametrize("skip_side_effects", [True, False])
def test_compiled_checkpointed_model(skip_side_effects: bool) -> None:
    # The layer's attribute store and statistics are side effects inside the checkpointed
    # region, which dynamo will not trace into its checkpoint operator by default (eager
    # checkpointing replays them in the recompute): it graph-breaks and runs the checkpointed
    # blocks eagerly, still correct. With the flag it traces them into the forward graph only,
    # which is what _recomputing() achieves in eager mode: no graph break.
    reference = build()
    train_steps(reference, routed_layers(reference))
    model = build(checkpointed=True)
    with torch._dynamo.config.patch(skip_fwd_side_effects_in_bwd_under_checkpoint=skip_side_effects):
        compiled = torch.compile(model, backend="aot_eager", fullgraph=skip_side_effects)
        train_steps(compiled, routed_layers(compiled))
    assert_same(snapshot(model), snapshot(reference))
