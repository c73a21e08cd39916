"""Router health of a Mixture-of-Experts model, from the statistics its routed layers
accumulate on the device during training (harness/models/moe.py).

The layers add to their accumulators in every training-mode forward without a host
synchronisation; this module zeroes them before a measured window and reads them once after
it. What the metrics say:

  router_aux_loss      Switch load-balancing loss (Fedus et al. 2021), unweighted; 1.0 is
                       perfectly uniform routing, n_experts the worst (everything to one expert)
  router_z_loss        ST-MoE's mean squared log-partition of the router (Zoph et al. 2022)
  router_entropy       mean entropy of a token's router distribution, nats; near
                       router_entropy_max (log E) the router has not learnt to choose
  expert_load_imbalance  tokens of the busiest expert / tokens of the mean expert, summed
                       over layers (1.0 = balanced); ..._worst_layer is the largest per layer
  dropped_token_fraction  assignments over capacity, which skip their expert
  tokens_per_expert    (series) each expert's share of all assignments, summed over layers

Assignments are counted before dropping: they show where the router wants tokens to go.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from harness.models.moe import routed_layers


def reset_router_stats(model: nn.Module) -> None:
    """Zero the statistics of every routed layer in model (no-op for a dense model)."""
    for layer in routed_layers(model):
        layer.reset_statistics()


def router_metrics(model: nn.Module) -> tuple[dict[str, float], dict[str, list[float]]]:
    """(metrics, series) over the training forwards since the last reset; ({}, {}) for a
    dense model or before any training-mode forward. Reads the device once (a sync)."""
    layers = routed_layers(model)
    if not layers:
        return {}, {}
    # one (L, E + 7) float64 table, one transfer: counts stay exact below 2**53
    table = torch.stack([
        torch.cat([layer.tokens_per_expert.double(), layer.dropped.double(),
                   layer.assignments.double(), layer.entropy_sum, layer.token_count.double(),
                   layer.balance_loss_sum, layer.z_loss_sum, layer.forwards.double()])
        for layer in layers
    ]).cpu()
    E = layers[0].n_experts
    counts = table[:, :E]  # (L, E) assignments per expert
    dropped, assignments, entropy, tokens, balance, z, forwards = table[:, E:].unbind(dim=1)  # (L,)
    if forwards.min() == 0:
        return {}, {}

    per_layer_imbalance = counts.amax(dim=1) / counts.mean(dim=1)  # (L,)
    total = counts.sum(dim=0)  # (E,)
    metrics = {
        "router_aux_loss": (balance / forwards).mean().item(),
        "router_z_loss": (z / forwards).mean().item(),
        "router_entropy": (entropy.sum() / tokens.sum()).item(),
        "router_entropy_max": math.log(E),
        "expert_load_imbalance": (total.max() / total.mean()).item(),
        "expert_load_imbalance_worst_layer": per_layer_imbalance.max().item(),
        "dropped_token_fraction": (dropped.sum() / assignments.sum()).item(),
    }
    series = {"tokens_per_expert": (total / total.sum()).tolist()}
    return metrics, series
