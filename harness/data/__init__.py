"""Deterministic token data for training trials, fully materialised before any timing."""

from harness.data.loading import DATA_KINDS, load_splits
from harness.data.splits import MAX_TRAIN_TOKENS, TokenSplits
from harness.data.synthetic import MarkovChain, markov_chain_for_seed

__all__ = [
    "DATA_KINDS",
    "MAX_TRAIN_TOKENS",
    "MarkovChain",
    "TokenSplits",
    "load_splits",
    "markov_chain_for_seed",
]
