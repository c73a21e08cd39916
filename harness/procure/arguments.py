"""The command-line arguments of `harness procure`, apart from the command so that building the
parser loads none of its libraries."""

from __future__ import annotations

import argparse
import re

from harness.procure.targets import TARGETS


DEFAULT_DEVICES = 1024  # a large-model cluster; the cost does not depend on it, the time does
EXPLICIT = ("params", "tokens", "layers", "d_model", "seq_len")
_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}


def count(text: str) -> float:
    """A count such as 70e9, 70B or 2T (k, M, B or G, T: powers of a thousand)."""
    match = re.fullmatch(r"\s*([0-9.]+(?:e[+-]?\d+)?)\s*([kmbgt]?)\s*", text, re.IGNORECASE)
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a number such as 70e9 or 70B, got '{text}'")
    return float(match.group(1)) * _SUFFIX[match.group(2).lower()]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("results", nargs="+",
                        help="results, one per machine: a database, a JSON export or a folder "
                             "of them")
    parser.add_argument("--prices", required=True, help="prices YAML (see scenarios/prices.yaml)")
    parser.add_argument("--scenario", help="scenario to compare (default: that of the latest run "
                                           "of the first results)")
    parser.add_argument("--target", help=f"project the training of {', '.join(sorted(TARGETS))}")
    parser.add_argument("--params", type=count, help="target parameters N (e.g. 70B)")
    parser.add_argument("--tokens", type=count, help="target training tokens D (e.g. 2T)")
    parser.add_argument("--layers", type=int, help="target layers L")
    parser.add_argument("--d-model", dest="d_model", type=int, help="target width d_model")
    parser.add_argument("--seq-len", dest="seq_len", type=int, help="target sequence length T")
    parser.add_argument("--devices", type=int, default=None,
                        help=f"devices of the projected run (default {DEFAULT_DEVICES})")
    parser.add_argument("--format", choices=["table", "markdown"], default="table")
