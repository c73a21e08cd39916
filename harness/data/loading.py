"""One entry point that builds the train/eval token splits for a trial from a data kind name."""

from __future__ import annotations

from harness.data.splits import TokenSplits
from harness.data.synthetic import synthetic_splits
from harness.data.text import memmap_splits, text_splits

DATA_KINDS = ("synthetic", "text", "memmap")


def _require_positive(name: str, value: int) -> None:
    if value < 1:
        raise ValueError(f"{name} must be >= 1, got {value}")


def load_splits(
    kind: str,
    *,
    seq_len: int,
    seed: int,
    train_sequences: int,
    eval_sequences: int,
    path: str | None = None,
    vocab_size: int = 256,
    concentration: float = 0.1,
    eval_fraction: float = 0.1,
) -> TokenSplits:
    """Materialise ``train_sequences`` training and ``eval_sequences`` eval windows of ``seq_len + 1`` tokens.

    - ``"synthetic"``: seeded order-1 Markov chain over ``vocab_size`` tokens with
      Dirichlet(``concentration``) rows; ``loss_floor`` and ``entropy_rate`` are exact.
    - ``"text"``: bytes of the file at ``path`` (vocab 256); last ``eval_fraction`` is eval.
    - ``"memmap"``: nanoGPT uint16 tokens; ``path`` is a directory with ``train.bin`` and
      ``val.bin`` or one ``.bin`` file split by ``eval_fraction``.

    ``vocab_size`` and ``concentration`` apply to ``"synthetic"`` only, ``eval_fraction`` to
    single-file sources only. Training windows are capped at
    ``MAX_TRAIN_TOKENS // (seq_len + 1)`` (2**25 tokens); a run with more steps than the
    capped set holds batches cycles through it. The result depends only on the arguments.
    """
    if kind not in DATA_KINDS:
        raise ValueError(f"unknown data kind {kind!r}; expected one of {', '.join(DATA_KINDS)}")
    _require_positive("seq_len", seq_len)
    _require_positive("train_sequences", train_sequences)
    _require_positive("eval_sequences", eval_sequences)
    sizes = dict(seq_len=seq_len, seed=seed, train_sequences=train_sequences, eval_sequences=eval_sequences)
    if kind == "synthetic":
        return synthetic_splits(**sizes, vocab_size=vocab_size, concentration=concentration)
    if path is None:
        raise ValueError(
            f"data kind {kind!r} needs path= (a file, or for memmap a directory with train.bin/val.bin)"
        )
    if kind == "text":
        return text_splits(path, **sizes, eval_fraction=eval_fraction)
    return memmap_splits(path, **sizes, eval_fraction=eval_fraction)
