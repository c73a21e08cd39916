"""`harness history`: one scenario's metrics over its last runs, the regressions among them
(harness.regression.history for the policy), their run-to-run noise and what changed in the
environment between runs. Exit 1 when a regression is still ongoing at the latest run, so
a nightly job fails on it; 0 otherwise; 2 on bad input (the CLI's InputError).

With --out DIR it also writes the nightly report: DIR/index.html, DIR/history.md and one
PNG per metric.
"""

from __future__ import annotations

import argparse

from harness.regression.history import HistoryAnalysis, RunRecord, analyse_history, choose_runs
from harness.regression.history_report import (changes_table, flags_table, policy, summary,
                                               variance_table, write_history)
from harness.regression.rules import rules_with
from harness.report.tables import Table
from harness.store import ResultStore, open_results

EXIT_OK, EXIT_REGRESSION = 0, 1


def run(args: argparse.Namespace) -> int:
    rules = rules_with(args.threshold)
    store = open_results(args.results)
    scenario, runs = choose_runs(store.runs(), args.scenario, args.runs)
    analysis = analyse_history(scenario, load_records(store, [r["run_id"] for r in runs]), rules,
                               window=args.window, consecutive=args.consecutive,
                               noise_k=args.noise_k, metrics=args.metric or None)
    if args.format == "markdown":
        print_markdown(analysis)
    else:
        print_tables(analysis)
    if args.out:
        html, _ = write_history(analysis, args.out)
        print(f"history report: {html}")
    return EXIT_REGRESSION if len(analysis.ongoing_regressions()) else EXIT_OK


def load_records(store: ResultStore, run_ids: list[str]) -> list[RunRecord]:
    """Each run's fingerprint and trials; a run imported without its own fingerprint takes
    its first trial's."""
    records = []
    for run_id in run_ids:
        info, trials = store.run(run_id), store.trials(run_id)
        env = info.env or (trials[0].get("env") or {} if trials else {})
        records.append(RunRecord(run_id, info.started_at, env, trials))
    return records


def _title(analysis: HistoryAnalysis) -> str:
    return (f"{analysis.scenario}: {len(analysis.run_ids)} runs, latest {analysis.run_ids[-1]}: "
            f"{summary(analysis)}")


def print_markdown(analysis: HistoryAnalysis) -> None:
    from harness.report.markdown import escape_markdown, table_markdown

    print(f"**{escape_markdown(_title(analysis))}**\n\n*{escape_markdown(policy(analysis))}*\n")
    for heading, table in _sections(analysis):
        print(f"### {heading}\n")
        print(table_markdown(table) if table.rows else "None.", end="\n\n")


def print_tables(analysis: HistoryAnalysis) -> None:
    from rich.console import Console
    from rich.table import Table as RichTable

    console = Console(width=max(Console().width, 200))
    console.print(_title(analysis), markup=False)
    console.print(policy(analysis), style="dim", markup=False)
    for heading, table in _sections(analysis):
        if not table.rows:
            console.print(f"{heading}: none", markup=False)
            continue
        shown = RichTable(title=heading)
        for header, numeric in zip(table.headers, table.numeric):
            shown.add_column(header, justify="right" if numeric else "left", overflow="fold")
        for row, kind in zip(table.rows, table.row_classes):
            style = {"regression": "bold red", "suspect": "yellow"}.get(kind)
            # names come from results files: printed as text, never as rich markup
            shown.add_row(*(_plain(cell) for cell in row), style=style)
        console.print(shown)


def _plain(cell: str):
    from harness.text import rich_text

    return rich_text(cell)


def _sections(analysis: HistoryAnalysis) -> list[tuple[str, Table]]:
    return [("Regressions and suspects", flags_table(analysis)),
            ("Environment changes", changes_table(analysis)),
            ("Run-to-run variation", variance_table(analysis))]
