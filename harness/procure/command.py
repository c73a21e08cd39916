"""`harness procure RESULTS... --prices FILE`: machines side by side, $ per million tokens, and
(with --target, or --params --tokens --layers --d-model --seq-len) the projected cost of
training a large model on each of them."""

from __future__ import annotations

import argparse
import re
import sys

from rich.console import Console

from harness.errors import InputError, did_you_mean
from harness.procure.compare import load_sources, side_by_side
from harness.procure.prices import load_prices
from harness.procure.projection import TARGETS, Target, project
from harness.procure.render import print_rich, projection_table, side_by_side_table, to_markdown

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


def target_of(args: argparse.Namespace) -> Target | None:
    """The projection's target: a built-in one, one spelled out in full, or None."""
    given = [name for name in EXPLICIT if getattr(args, name, None) is not None]
    if args.target is not None:
        if given:
            raise InputError(f"--target and --{given[0].replace('_', '-')} exclude each other",
                             field="--target")
        if args.target not in TARGETS:
            raise InputError(f"unknown target '{args.target}'{did_you_mean(args.target, TARGETS)} "
                             f"({', '.join(sorted(TARGETS))})", field="--target")
        return TARGETS[args.target]
    if not given:
        return None
    absent = [f"--{name.replace('_', '-')}" for name in EXPLICIT if name not in given]
    if absent:
        raise InputError(f"a target spelled out needs {', '.join(absent)} too", field=absent[0])
    for name in EXPLICIT:
        if getattr(args, name) <= 0:
            raise InputError("must be positive", field=f"--{name.replace('_', '-')}")
    return Target("custom", args.params, args.tokens, args.layers, args.d_model, args.seq_len)


def run(args: argparse.Namespace) -> int:
    prices = load_prices(args.prices)
    target = target_of(args)
    devices = DEFAULT_DEVICES if args.devices is None else args.devices
    if devices < 1:
        raise InputError(f"must be at least 1, got {devices}", field="--devices")
    scenario, sources = load_sources(args.results, args.scenario)
    rows = side_by_side(sources, prices)
    tables = [side_by_side_table(rows, scenario, sources, prices)]
    if target is not None:
        projections = [project(target, s.trials, devices, prices, s.path) for s in sources]
        tables.append(projection_table(projections, target, prices))
    if args.format == "markdown":
        sys.stdout.write("\n".join(to_markdown(table) for table in tables))
    else:
        console = Console()
        if not console.is_terminal:  # piped: rich would fold the tables to 80 columns
            console = Console(width=200)
        for table in tables:
            print_rich(table, console)
    if not rows:
        print(f"no ok trial of scenario '{scenario}' in any of the results", file=sys.stderr)
        return 1
    return 0
