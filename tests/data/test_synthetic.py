"""The synthetic Markov source: determinism, exact stationary/entropy maths, and an achievable floor."""

from __future__ import annotations

import math
import time

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from harness.data import load_splits, markov_chain_for_seed
from harness.data.synthetic import MarkovChain, stationary_distribution

SMALL_VOCAB = 16


def _synthetic(seed: int, **overrides) -> object:
    arguments = dict(seq_len=32, seed=seed, train_sequences=256, eval_sequences=64)
    arguments.update(overrides)
    return load_splits("synthetic", **arguments)


def test_same_seed_gives_identical_splits_and_different_seed_differs() -> None:
    first, again, other = _synthetic(seed=3), _synthetic(seed=3), _synthetic(seed=4)
    assert torch.equal(first.train, again.train) and torch.equal(first.eval, again.eval)
    assert first.loss_floor == again.loss_floor and first.description == again.description
    assert not torch.equal(first.train, other.train)
    assert first.loss_floor != other.loss_floor


def test_train_and_eval_share_no_window() -> None:
    splits = _synthetic(seed=0)
    train_rows = {tuple(row) for row in splits.train.tolist()}
    assert not any(tuple(row) in train_rows for row in splits.eval.tolist())


def test_shapes_dtype_range_and_reported_rates() -> None:
    splits = _synthetic(seed=1, vocab_size=SMALL_VOCAB)
    assert splits.train.shape == (256, 33) and splits.eval.shape == (64, 33)
    assert splits.train.dtype == torch.uint8
    assert int(splits.train.max()) < SMALL_VOCAB and splits.vocab_size == SMALL_VOCAB
    assert splits.loss_floor == splits.entropy_rate
    assert 0 < splits.loss_floor < math.log(SMALL_VOCAB)
    assert f"V={SMALL_VOCAB}" in splits.description


def test_stationary_distribution_is_a_fixed_point_summing_to_one() -> None:
    chain = markov_chain_for_seed(256, 0.1, seed=0)
    pi, transition = chain.stationary, chain.transition
    assert np.allclose(transition.sum(axis=1), 1.0)
    assert pi.min() >= 0 and math.isclose(pi.sum(), 1.0, abs_tol=1e-12)
    np.testing.assert_allclose(pi @ transition, pi, atol=1e-12)
    # Independent route to the same vector: the limit of many steps of the chain from uniform.
    power_iterate = np.full(256, 1 / 256) @ np.linalg.matrix_power(transition, 4096)
    np.testing.assert_allclose(power_iterate, pi, atol=1e-10)


def test_reducible_chain_is_rejected() -> None:
    two_closed_classes = np.eye(4)
    with pytest.raises(ValueError, match="stationary"):
        stationary_distribution(two_closed_classes)


def test_entropy_rate_matches_torch_categorical_entropy() -> None:
    chain = markov_chain_for_seed(64, 0.3, seed=5)
    row_entropy = torch.distributions.Categorical(probs=torch.from_numpy(chain.transition)).entropy()
    direct = float(torch.from_numpy(chain.stationary) @ row_entropy)
    assert math.isclose(chain.entropy_rate(), direct, rel_tol=1e-10)


def test_entropy_rate_for_default_source_is_well_below_uniform() -> None:
    # Pinned so a change to seeding or the Dirichlet draw is noticed (the documented value).
    rate = markov_chain_for_seed(256, 0.1, seed=0).entropy_rate()
    assert rate == pytest.approx(3.6853, abs=1e-4)
    assert math.log(256) - rate > 1.5


def test_empirical_conditional_entropy_and_first_tokens_match_the_chain() -> None:
    chain = markov_chain_for_seed(SMALL_VOCAB, 0.5, seed=2)
    rng = np.random.default_rng(11)
    sample = chain.sample(num_sequences=8192, length=129, rng=rng).astype(np.int64)  # ~1.06e6 tokens
    pairs = np.stack([sample[:, :-1].ravel(), sample[:, 1:].ravel()])
    counts = np.zeros((SMALL_VOCAB, SMALL_VOCAB))
    np.add.at(counts, (pairs[0], pairs[1]), 1)
    joint = counts / counts.sum()
    conditional = counts / counts.sum(axis=1, keepdims=True)
    with np.errstate(divide="ignore", invalid="ignore"):
        empirical_entropy = -np.nansum(joint * np.log(conditional))
    # Standard error of a mean log-loss over 1e6 tokens is ~1e-3 nats; plug-in bias ~1e-4.
    assert empirical_entropy == pytest.approx(chain.entropy_rate(), abs=0.01)

    first_tokens = chain.sample(num_sequences=200_000, length=1, rng=rng)[:, 0]
    frequencies = np.bincount(first_tokens, minlength=SMALL_VOCAB) / len(first_tokens)
    standard_error = np.sqrt(chain.stationary * (1 - chain.stationary) / len(first_tokens))
    assert np.all(np.abs(frequencies - chain.stationary) < 5 * standard_error + 1e-12)


def test_true_transitions_reach_the_floor_and_uniform_gives_log_vocab() -> None:
    vocab_size, seed = 256, 0
    splits = load_splits("synthetic", seq_len=128, seed=seed, train_sequences=8, eval_sequences=2048)
    chain = markov_chain_for_seed(vocab_size, 0.1, seed)
    log_transition = torch.from_numpy(np.log(chain.transition))
    true_losses, uniform_losses = [], []
    for x, y in splits.eval_batches(512):
        # Cross-entropy of the true next-token distribution P[x_t] at the observed y_t.
        true_losses.append(-log_transition[x, y])
        uniform_logits = torch.zeros(x.numel(), vocab_size, dtype=torch.float64)
        uniform_losses.append(F.cross_entropy(uniform_logits, y.flatten(), reduction="none"))
    true_loss = float(torch.cat([loss.flatten() for loss in true_losses]).mean())
    # 262k predicted tokens with per-token loss sd ~1.2 nats: standard error ~0.0025 nats.
    assert true_loss == pytest.approx(splits.loss_floor, abs=0.03)
    assert float(torch.cat(uniform_losses).mean()) == pytest.approx(math.log(vocab_size), abs=1e-9)


def test_first_predicted_position_already_sits_at_the_floor() -> None:
    # The floor has no start-of-window correction because x[0] ~ pi: check position 0 alone.
    chain = markov_chain_for_seed(256, 0.1, seed=0)
    pairs = chain.sample(num_sequences=200_000, length=2, rng=np.random.default_rng(5)).astype(np.int64)
    first_loss = -np.log(chain.transition[pairs[:, 0], pairs[:, 1]]).mean()
    # Standard error ~1.2 / sqrt(2e5) ~ 0.003 nats.
    assert first_loss == pytest.approx(chain.entropy_rate(), abs=0.02)


def test_random_chain_rejects_bad_parameters() -> None:
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError, match="concentration"):
        MarkovChain.random(8, 0.0, rng)
    with pytest.raises(ValueError, match="vocab_size"):
        MarkovChain.random(1, 0.1, rng)


def test_generating_8192_windows_of_129_tokens_is_fast() -> None:
    start = time.perf_counter()
    load_splits("synthetic", seq_len=128, seed=0, train_sequences=8192, eval_sequences=1)
    # ~0.15 s measured; the bound leaves room for slow CI machines.
    assert time.perf_counter() - start < 1.5
