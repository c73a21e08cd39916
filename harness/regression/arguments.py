"""The command-line arguments of `harness compare` and `harness history`, apart from the
commands themselves so that building the parser loads no statistics or plotting library."""

from __future__ import annotations

import argparse
from pathlib import Path

from harness.store.db import DEFAULT_RESULTS


def add_compare_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("baseline", nargs="?",
                        help="run id in --results, or a database / JSON export / folder of them")
    parser.add_argument("candidate", nargs="?", help="the same (default: the latest run)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="where run ids are looked up: a database, or JSON exports "
                             "(default %(default)s)")
    parser.add_argument("--scenario", help="the latest run of this scenario, where a path or --results "
                             "holds several")
    parser.add_argument("--threshold", action="append", default=[], metavar="METRIC=FRACTION",
                        help="relative change that counts, e.g. tokens_per_s=0.03 (repeatable)")
    parser.add_argument("--metric", action="append", default=[],
                        help="compare only this metric (repeatable)")
    parser.add_argument("--format", choices=["table", "markdown"], default="table")
    parser.add_argument("--out", type=Path, help="also write the output to this file")


def _at_least_one(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _at_least_zero(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number at least 0, got {text}")
    return value


def add_history_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="results database, JSON export, or folder of JSON exports")
    parser.add_argument("--scenario", help="scenario name (default: the latest run's)")
    parser.add_argument("--runs", type=_at_least_one, default=30, help="last N runs (default 30)")
    parser.add_argument("--window", type=_at_least_one, default=5,
                        help="runs whose median is each run's reference (default 5)")
    parser.add_argument("--consecutive", type=_at_least_one, default=2,
                        help="violations in a row that make a regression (default 2)")
    parser.add_argument("--noise-k", type=_at_least_zero, default=3.0, metavar="K",
                        help="a run must move more than K x the series' run-to-run noise as well "
                             "as the threshold (default %(default)s; 0: the threshold alone)")
    parser.add_argument("--threshold", action="append", default=[], metavar="METRIC=FRACTION",
                        help="override a metric's threshold, e.g. tokens_per_s=0.03 (repeatable)")
    parser.add_argument("--metric", action="append", default=[], metavar="METRIC",
                        help="judge only this metric (repeatable; default: every rule's)")
    parser.add_argument("--out", type=Path, help="write index.html, history.md and figures here")
    parser.add_argument("--format", default="table", choices=["table", "markdown"])
