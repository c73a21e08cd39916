"""`harness procure RESULTS... --prices FILE`: machines side by side, $ per million tokens, and
(with --target, or --params --tokens --layers --d-model --seq-len) the projected cost of
training a large model on each of them."""

from __future__ import annotations

import argparse
import sys

from rich.console import Console

from harness.errors import InputError, did_you_mean
from harness.procure.arguments import DEFAULT_DEVICES, EXPLICIT
from harness.procure.compare import load_sources, side_by_side
from harness.procure.prices import load_prices
from harness.procure.projection import project
from harness.procure.targets import TARGETS, Target
from harness.procure.render import print_rich, projection_table, side_by_side_table, to_markdown

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
