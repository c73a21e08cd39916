"""`harness compare [BASELINE [CANDIDATE]]`: the nightly regression gate. Exit 1 when any
trial regressed (a metric worse than its threshold and significant, or a trial that fails
now), 0 otherwise, 2 on bad input.

A run is named by
  1. a path that exists: a results database (its latest run, or that of --scenario), a JSON
     export file, or a folder of exports (`harness export --format json`); a path wins over a
     run id of the same spelling;
  2. otherwise, a run id in --results (default results/harness.db).
With no CANDIDATE, the candidate is the latest run in --results of --scenario (default: the
baseline's scenario). With neither, the latest run of --scenario (default: the scenario of the
latest run) is compared with the run of that scenario before it: `harness compare --scenario
nightly`.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
from rich.console import Console
from rich.table import Table

from harness.analysis.noise import machine_of, noise_for_run
from harness.analysis.samples import busy_messages, is_busy
from harness.analysis.stats import OTHER_MACHINES
from harness.claims.verdict import hardware_of
from harness.errors import InputError, did_you_mean
from harness.files import write_file
from harness.regression.compare import (
    REGRESSIONS,
    TRIAL_ROW,
    by_combination,
    compare_runs,
    regression_count,
    verdict,
)
from harness.regression.environment import environment_differences
from harness.regression.rules import rules_with
from harness.report import units
from harness.report.markdown import escape_markdown
from harness.store import ResultStore, RunInfo, open_results
from harness.text import rich_text

HOW_TO_READ = ("baseline and candidate are geometric means over each run's repeats (per-step "
               "times are never samples); ratio = candidate / baseline with its 95% interval; "
               "change > 0 is worse. Two runs made at different times also differ by the "
               "machine's drift between them, so p is a t-test of the run-level ratio against the "
               "spread of a run's figure over earlier runs of the scenario on this machine (the "
               "note names them); with fewer than 3 earlier runs there is no test. Counted or "
               "identical figures are exact. A row regresses when the change passes its threshold "
               "and p < 0.05; an untested change past the threshold, or one whose trials ran on a "
               "busy machine, is inconclusive, never a regression. Exit 1 means a conclusive "
               "regression only.")
ENV_HINT = "a driver or torch upgrade often explains a step"
STYLES = {"regressed": "bold red", "failed-now": "bold red", "improved": "green",
          "inconclusive": "yellow", "missing": "yellow", "unchanged": "dim"}
TABLE_HEADERS = ("trial", "metric", "baseline", "candidate", "ratio (95% interval)", "p",
                 "change (+ worse)", "threshold", "status", "note")


@dataclass(frozen=True)
class Side:
    """One run of the comparison, read whole: the store may be a temporary import."""

    source: str  # where it was read from, as the user named it
    run: RunInfo
    trials: list[dict[str, Any]]
    store: ResultStore  # for the earlier runs that give the run-to-run noise


def run(args: argparse.Namespace) -> int:
    rules = rules_with(args.threshold)
    for metric in args.metric:
        if metric not in rules:
            raise InputError(f"no rule for metric '{metric}'{did_you_mean(metric, rules)}",
                             field="--metric")
    if args.metric:
        rules = {metric: rules[metric] for metric in dict.fromkeys(args.metric)}
    baseline, candidate = load_sides(args.baseline, args.candidate, args.results, args.scenario)
    same_machine = machine_of(baseline.run.env) == machine_of(candidate.run.env)
    noise = (noise_for_run(candidate.store, candidate.run, list(rules),
                           exclude={baseline.run.run_id}, between_runs=True) if same_machine else {})
    frame = compare_runs(baseline.trials, candidate.trials, rules, noise,
                         other_machines=not same_machine)
    common = set(by_combination(baseline.trials)) & set(by_combination(candidate.trials))
    if not common:
        raise InputError(f"run {baseline.run.run_id} and run {candidate.run.run_id} have no "
                         "trial in common: nothing to compare", field="compare")
    if not len(frame) or frame["status"].isin(("new", "removed")).all():
        raise InputError(f"no trial the runs {baseline.run.run_id} and {candidate.run.run_id} "
                         f"have in common measured {', '.join(rules)}",
                         field="--metric" if args.metric else "compare")
    header = header_lines(baseline, candidate, frame)
    if args.format == "markdown":
        text = to_markdown(header, frame)
        sys.stdout.write(text)
    else:
        console = Console(record=True)
        if not console.is_terminal:  # piped: rich would fold the table to 80 columns
            console = Console(record=True, width=200)
        print_rich(header, frame, console)
        text = console.export_text()
    if args.out is not None:
        write_file(args.out, text, field="--out")
    return 1 if regression_count(frame) else 0


# -- which runs --------------------------------------------------------------------------
def load_sides(baseline: str | None, candidate: str | None, results: Path,
               scenario: str | None) -> tuple[Side, Side]:
    if baseline is None:
        store = _database(results)
        name = scenario or store.run().scenario
        runs = [run["run_id"] for run in store.runs() if run["scenario"] == name]
        if len(runs) < 2:
            raise InputError(f"scenario '{name}' has {len(runs)} run{'' if len(runs) == 1 else 's'} "
                             "here: no earlier run to compare with (name a BASELINE)",
                             file=str(results))
        return _side(store, str(results), runs[-2]), _side(store, str(results), runs[-1])
    base = resolve(baseline, results, scenario)
    if candidate is None:
        store = _database(results)
        latest = store.run(scenario=scenario or base.run.scenario)
        return base, _side(store, str(results), latest.run_id)
    return base, resolve(candidate, results, scenario)


def resolve(reference: str, results: Path, scenario: str | None) -> Side:
    """A run as the user named it: an existing path first, else a run id in `results`."""
    path = Path(reference)
    if path.exists():
        store = open_results(path)
        return _side(store, reference, store.run(scenario=scenario).run_id)
    if not results.exists():
        raise InputError(f"'{reference}' is no file, and there is no results database at "
                         f"{results} to look it up as a run id", field="compare")
    store = _database(results)
    if not store.has_run(reference):
        ids = [run["run_id"] for run in store.runs()]
        raise InputError(f"'{reference}' is neither an existing path nor a run id in "
                         f"{results}{did_you_mean(reference, ids)}", field="compare")
    return _side(store, str(results), reference)


def _side(store: ResultStore, source: str, run_id: str) -> Side:
    return Side(source, store.run(run_id), store.trials(run_id), store)


def _database(path: Path) -> ResultStore:
    return open_results(path) if path.exists() else ResultStore(path, read_only=True)


# -- rendering -----------------------------------------------------------------------------
def header_lines(baseline: Side, candidate: Side, frame: pd.DataFrame) -> list[str]:
    """The verdict with both runs named, then each run's facts, then what differs."""
    lines = [f"{verdict(frame)}: baseline {baseline.run.run_id} vs candidate "
             f"{candidate.run.run_id}",
             f"baseline: {describe_run(baseline)}", f"candidate: {describe_run(candidate)}"]
    differences = environment_differences(baseline.run.env, candidate.run.env)
    if differences:
        lines.append(f"environments differ ({ENV_HINT}): {'; '.join(differences)}")
    if machine_of(baseline.run.env) != machine_of(candidate.run.env):
        lines.append(f"WARNING: {OTHER_MACHINES}")
    for side in (baseline, candidate):
        busy = [t for t in side.trials if t["status"] == "ok" and is_busy(t)]
        if busy:
            lines.append(f"WARNING: {len(busy)} of the {side_name(side, baseline)} run's trials were "
                         f"measured on a busy machine and left out of every test: "
                         f"{busy_message(busy)}")
    if baseline.run.scenario != candidate.run.scenario:
        lines.append(f"different scenarios: {baseline.run.scenario} → {candidate.run.scenario}")
    for status, label in (("new", "new in the candidate"), ("removed", "not in the candidate")):
        names = frame.loc[frame["status"] == status, "trial"].tolist()
        if names:
            lines.append(f"{label}: {', '.join(names)}")
    return lines


def side_name(side: Side, baseline: Side) -> str:
    return "baseline" if side is baseline else "candidate"


def busy_message(trials: list[dict[str, Any]]) -> str:
    """The first busy warning's own words, and how many more there are."""
    messages = busy_messages(trials)
    more = f" (and {len(messages) - 1} more)" if len(messages) > 1 else ""
    return (messages[0] if messages else "machine busy") + more


def describe_run(side: Side) -> str:
    run, env = side.run, side.run.env
    commit = env.get("git_commit")
    commit_text = (f"commit {commit[:10]}{' (dirty)' if env.get('git_dirty') else ''}"
                   if commit else "commit unknown")
    state = "" if run.finished_at else ", unfinished"
    return (f"run {run.run_id} of {run.scenario} from {side.source}, {commit_text}, "
            f"{hardware_of(env, run.device)}, started {run.started_at}{state}")


def cells(frame: pd.DataFrame) -> pd.DataFrame:
    """The compared rows (not new/removed) as strings, one column per TABLE_HEADERS entry."""
    shown = frame[~frame["status"].isin(("new", "removed"))]
    records = [(row.trial, "" if row.metric == TRIAL_ROW else row.metric,
                figure(row.metric, row.baseline), figure(row.metric, row.candidate),
                ratio_text(row), units.DASH if math.isnan(row.p_value) else f"{row.p_value:.2g}",
                units.DASH if math.isnan(row.change) else f"{row.change:+.1%}",
                units.DASH if math.isnan(row.threshold) else f"{row.threshold * 100:g}%",
                row.status, row.note) for row in shown.itertuples()]
    return pd.DataFrame(records, columns=list(TABLE_HEADERS))


def figure(metric: str, value: float) -> str:
    if value is None or math.isnan(value):
        return units.DASH
    if metric.endswith("_bytes"):
        return units.size(value)
    if metric == "tokens_per_s":
        return units.tokens_per_s(value)
    if metric.endswith("_s"):
        return units.duration(value)
    return f"{value:.4g}"


def ratio_text(row: Any) -> str:
    if math.isnan(row.ratio):
        return units.DASH
    if not row.tested:
        return f"{row.ratio:.3f}"
    return f"{row.ratio:.3f} ({row.low:.3f}–{row.high:.3f})"


def to_markdown(header: list[str], frame: pd.DataFrame) -> str:
    """GitHub markdown for a CI job summary: the verdict line, the facts, the changed rows,
    and the unchanged ones folded away."""
    out = [f"### {escape_markdown(header[0])}", "", *(f"- {escape_markdown(line)}"
                                                     for line in header[1:]), ""]
    table = cells(frame).map(escape_markdown)
    marked = table["status"].isin(REGRESSIONS)
    table.loc[marked, "status"] = "**" + table.loc[marked, "status"].str.upper() + "**"
    table.columns = [escape_markdown(h) for h in TABLE_HEADERS]
    unchanged = cells(frame)["status"] == "unchanged"
    if (~unchanged).any():
        out += [table[~unchanged].to_markdown(index=False, disable_numparse=True), ""]
    if unchanged.any():
        out += [f"<details><summary>{int(unchanged.sum())} unchanged</summary>", "",
                table[unchanged].to_markdown(index=False, disable_numparse=True), "",
                "</details>", ""]
    out += [escape_markdown(HOW_TO_READ), ""]
    return "\n".join(out)


def print_rich(header: list[str], frame: pd.DataFrame, console: Console) -> None:
    regressions = regression_count(frame)
    console.print(rich_text(header[0], style="bold red" if regressions else "bold green"))
    for line in header[1:]:
        console.print(rich_text(f"  {line}"))
    table = Table()
    for column in TABLE_HEADERS:
        table.add_column(rich_text(column), overflow="fold")
    for row in cells(frame).itertuples(index=False):
        style = STYLES.get(row.status, "")
        table.add_row(*(rich_text(str(cell), style=style if column == "status" else "")
                        for column, cell in zip(TABLE_HEADERS, row)))
    console.print(table)
    console.print(rich_text(HOW_TO_READ, style="dim"))
