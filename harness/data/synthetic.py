"""A seeded random order-1 Markov source whose entropy rate, and so its loss floor, is known exactly.

The source is a chain on ``V`` states (the tokens) with transition matrix ``P``, each row
drawn from a symmetric Dirichlet(alpha). A small alpha gives peaked rows and so a floor well
below the uniform ``ln V``; the expected entropy of one row is
``E[H(P_i)] = psi(V*alpha + 1) - psi(alpha + 1)`` (psi the digamma function), about 3.7 nats
for V=256, alpha=0.1 against ln 256 = 5.55.

Why the loss floor equals the entropy rate. A window is ``s_0 .. s_L`` with ``s_0 ~ pi``
(the stationary distribution) and ``s_{t+1} ~ P[s_t]``; the model reads ``x = s_0 .. s_{L-1}``
and predicts ``y = s_1 .. s_L``. At position ``t`` the best possible predictor knows
``s_0 .. s_t`` and, by the Markov property, that is worth exactly ``s_t``; its expected
cross-entropy is ``E[H(P[s_t])]``. Since ``s_0 ~ pi`` and ``pi P = pi``, every ``s_t ~ pi``,
so every one of the ``L`` positions (the first included: it already has ``s_0`` as context)
has expected loss ``h = sum_i pi_i H(P_i)``, and so does their mean:
``loss_floor = h`` exactly, with no start-of-window correction.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from harness.data.splits import TokenSplits, capped_train_sequences, compact_token_dtype

# Tolerance for accepting the solved stationary vector as a distribution with pi P = pi.
_STATIONARY_TOLERANCE = 1e-9


def entropies_nats(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy ``H(p) = -sum_j p_j ln p_j`` along the last axis, with ``0 ln 0 = 0``."""
    log_p = np.log(probabilities, out=np.zeros_like(probabilities), where=probabilities > 0)
    return -(probabilities * log_p).sum(axis=-1)


def stationary_distribution(transition: np.ndarray) -> np.ndarray:
    """The ``pi`` with ``pi P = pi`` and ``sum(pi) = 1``, by one linear solve.

    ``(P^T - I) pi = 0`` has rank ``V - 1`` for an irreducible chain, so one of its equations
    is replaced by the normalisation ``sum(pi) = 1`` to make the system non-singular.
    """
    vocab_size = transition.shape[0]
    system = transition.T - np.eye(vocab_size)
    system[-1, :] = 1.0
    rhs = np.zeros(vocab_size)
    rhs[-1] = 1.0
    try:
        pi = np.linalg.solve(system, rhs)
    except np.linalg.LinAlgError as error:
        raise ValueError("transition matrix has no unique stationary distribution (reducible chain)") from error
    residual = np.abs(pi @ transition - pi).max()
    if pi.min() < -_STATIONARY_TOLERANCE or residual > _STATIONARY_TOLERANCE:
        raise ValueError(f"stationary solve failed: min pi {pi.min():.3g}, max |pi P - pi| {residual:.3g}")
    pi = np.clip(pi, 0.0, None)
    return pi / pi.sum()


def _cumulative_rows(probabilities: np.ndarray) -> np.ndarray:
    """Row-wise CDFs clamped to ``[0, 1]`` ending at exactly 1, so any uniform ``u < 1`` lands in its row."""
    cumulative = np.minimum(np.cumsum(probabilities, axis=-1), 1.0)
    cumulative[..., -1] = 1.0
    return cumulative


@dataclass(frozen=True)
class MarkovChain:
    """Transition matrix ``P`` (V x V, rows sum to 1) and its stationary distribution ``pi``."""

    transition: np.ndarray
    stationary: np.ndarray

    @classmethod
    def random(cls, vocab_size: int, concentration: float, rng: np.random.Generator) -> MarkovChain:
        """Rows of ``P`` drawn independently from a symmetric Dirichlet(concentration)."""
        if vocab_size < 2:
            raise ValueError(f"vocab_size must be >= 2, got {vocab_size}")
        if concentration <= 0:
            raise ValueError(f"concentration must be > 0, got {concentration}")
        transition = rng.dirichlet(np.full(vocab_size, concentration), size=vocab_size)
        return cls(transition=transition, stationary=stationary_distribution(transition))

    @property
    def vocab_size(self) -> int:
        return self.transition.shape[0]

    def entropy_rate(self) -> float:
        """``h = sum_i pi_i H(P_i)`` in nats/token."""
        return float(self.stationary @ entropies_nats(self.transition))

    def sample(self, num_sequences: int, length: int, rng: np.random.Generator) -> np.ndarray:
        """``(num_sequences, length)`` states with ``s_0 ~ pi`` and ``s_{t+1} ~ P[s_t]``.

        Inverse-CDF sampling, all sequences at once per time step. Row ``i`` of the
        cumulative matrix is shifted by ``i``, so the flattened rows form one increasing
        array on ``[0, V]``; the next state of a sequence in state ``s`` is then
        ``searchsorted(flat, s + u) - s * V`` with ``u ~ U[0, 1)``, one call for all sequences.
        """
        vocab_size = self.vocab_size
        shifted_rows = _cumulative_rows(self.transition) + np.arange(vocab_size)[:, None]
        flat_cdf = shifted_rows.ravel()
        states = np.empty((length, num_sequences), dtype=compact_token_dtype(vocab_size))
        current = np.searchsorted(_cumulative_rows(self.stationary), rng.random(num_sequences), side="right")
        states[0] = current
        for step in range(1, length):
            flat_index = np.searchsorted(flat_cdf, current + rng.random(num_sequences), side="right")
            # s + u can round up to s + 1 when u is within one ulp of 1; clamping keeps it in row s.
            current = np.minimum(flat_index - current * vocab_size, vocab_size - 1)
            states[step] = current
        return np.ascontiguousarray(states.T)


def _seed_streams(seed: int) -> tuple[np.random.Generator, np.random.Generator, np.random.Generator]:
    """Independent generators for the chain, the train windows and the eval windows of one seed.

    Spawned children of one SeedSequence are distinct streams, so train and eval windows are
    never the same draws, while everything stays a function of ``seed`` alone.
    """
    chain_seed, train_seed, eval_seed = np.random.SeedSequence(seed).spawn(3)
    return np.random.default_rng(chain_seed), np.random.default_rng(train_seed), np.random.default_rng(eval_seed)


def markov_chain_for_seed(vocab_size: int, concentration: float, seed: int) -> MarkovChain:
    """The chain that ``synthetic_splits`` samples from for this seed (for checking against the truth)."""
    chain_rng, _, _ = _seed_streams(seed)
    return MarkovChain.random(vocab_size, concentration, chain_rng)


def synthetic_splits(
    *,
    seq_len: int,
    seed: int,
    train_sequences: int,
    eval_sequences: int,
    vocab_size: int = 256,
    concentration: float = 0.1,
) -> TokenSplits:
    """Train and eval windows of ``seq_len + 1`` tokens from the seeded chain; ``loss_floor = entropy_rate = h``.

    ``train_sequences`` is capped at ``MAX_TRAIN_TOKENS // (seq_len + 1)`` windows.
    """
    _, train_rng, eval_rng = _seed_streams(seed)
    chain = markov_chain_for_seed(vocab_size, concentration, seed)
    window = seq_len + 1
    train = chain.sample(capped_train_sequences(train_sequences, seq_len), window, train_rng)
    evaluation = chain.sample(eval_sequences, window, eval_rng)
    rate = chain.entropy_rate()
    return TokenSplits(
        train=torch.from_numpy(train),
        eval=torch.from_numpy(evaluation),
        vocab_size=vocab_size,
        loss_floor=rate,
        entropy_rate=rate,
        description=(
            f"synthetic order-1 Markov, V={vocab_size}, Dirichlet concentration {concentration:g}, "
            f"seed {seed}, entropy rate {rate:.4f} nats/token (uniform ln V = {np.log(vocab_size):.4f})"
        ),
    )
