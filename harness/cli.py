"""`harness` command line. Exit 0 on success; 1 when the run finished but every trial failed;
2 on bad input or usage, with one line naming the file, line and field (never a traceback)."""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
from pathlib import Path

from harness.errors import InputError
from harness.procure.arguments import add_arguments as add_procure_arguments
from harness.regression.arguments import add_compare_arguments, add_history_arguments
from harness.store import DEFAULT_RESULTS, FORMATS
from harness.text import printable, rich_text


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, not argparse's usage block
        raise InputError(f"{message} (see '{self.prog} --help')")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="harness", description=__doc__.splitlines()[0])
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a scenario's trials, store them, write the report")
    run.add_argument("scenario", help="scenario YAML file")
    run.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="results database")
    run.add_argument("--report", type=Path, help="report folder (default reports/<scenario>/)")
    run.add_argument("--no-report", action="store_true", help="do not write a report")
    run.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    run.add_argument("--resume", action="store_true",
                     help="finish the latest run of this scenario: run only the trials it lacks")
    run.add_argument("--dry-run", action="store_true", help="print the planned trials and stop")
    run.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                     help="override a scenario field, e.g. --set model.preset=tiny (repeatable)")
    run.add_argument("-q", "--quiet", action="store_true", help="one line per trial, no progress bar")
    run.add_argument("--nnodes", type=int, default=1,
                     help="nodes of the sweep: run the same command on each (see README, Slurm)")
    run.add_argument("--node-rank", type=int, default=0, help="this node's rank (0 records results)")
    run.add_argument("--rdzv-endpoint", metavar="HOST:PORT",
                     help="node 0's address and a free port, for trials that span nodes")

    validate = commands.add_parser("validate", help="check scenario files without running them")
    validate.add_argument("scenarios", nargs="+")
    validate.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")

    report = commands.add_parser("report", help="write the HTML and markdown report of a run")
    report.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    report.add_argument("--run", dest="run_id", help="run id (default: the latest run)")
    report.add_argument("--out", type=Path, help="folder (default reports/<scenario>/)")

    export = commands.add_parser("export", help="export a run's trials")
    export.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    export.add_argument("--run", dest="run_id", help="run id (default: the latest run)")
    export.add_argument("--format", required=True, choices=FORMATS)
    export.add_argument("--out", type=Path, help="file (default: standard output)")

    claims = commands.add_parser("claims", help="the verdict of every published claim, from stored results")
    claims.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="results database, JSON export, or folder of JSON exports")
    claims.add_argument("--claims", dest="claims_file", type=Path,
                        help="claims file (default: scenarios/claims.yaml of this checkout)")
    claims.add_argument("--format", default="table", choices=["table", "markdown", "json"])

    add_compare_arguments(commands.add_parser(
        "compare", help="a candidate run against a baseline run: exit 1 on a regression"))
    add_history_arguments(commands.add_parser(
        "history", help="each metric over a scenario's runs; regressions by a K-consecutive policy"))

    add_procure_arguments(commands.add_parser(
        "procure", help="machines side by side on one scenario: $ per million tokens, projected training cost"))

    from harness.suite.command import add_arguments as add_suite_arguments

    add_suite_arguments(commands.add_parser(
        "suite", help="several scenarios (with overrides) and checks into one database, a report each"))

    imports = commands.add_parser("import", help="bring JSON exports from other machines into a database")
    imports.add_argument("exports", nargs="+", type=Path, help="JSON export files or folders of them")
    imports.add_argument("--results", type=Path, default=DEFAULT_RESULTS, help="database to add them to")

    commands.add_parser("env", help="print the environment fingerprint stored with every trial")
    runs = commands.add_parser("runs", help="list the runs in a results database")
    runs.add_argument("--results", type=Path, default=DEFAULT_RESULTS)
    return parser


def main(argv: list[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return COMMANDS[args.command](args)
    except InputError as err:
        print(f"harness: error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `harness runs | head`: the reader has all it wanted
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush
        return 0
    except OSError as err:  # a file or folder the command was pointed at: one line naming it
        if err.filename is None:
            raise
        print(f"harness: error: {err.filename}: {err.strerror or err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("harness: interrupted; finished trials are stored (resume with --resume)", file=sys.stderr)
        return 130


def cmd_run(args: argparse.Namespace) -> int:
    before = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _sweep(args)
    finally:
        signal.signal(signal.SIGTERM, before)


def _sweep(args: argparse.Namespace) -> int:
    from harness import hardware, runner
    from harness.progress import SweepProgress
    from harness.scenario import load_scenario
    from harness.store import ResultStore

    loaded = load_scenario(args.scenario, args.overrides, device=args.device)
    device = hardware.resolve_device(args.device)
    cluster = cluster_of(args)
    if args.dry_run:
        print_plan(runner.iter_plan(loaded, device, cluster), planned_count(loaded),
                   loaded.scenario.name, device)
        return 0
    if cluster.node_rank > 0:
        summary = runner.run_scenario(loaded, None, device, progress=SweepProgress(quiet=args.quiet),
                                      cluster=cluster)
        print(f"node {cluster.node_rank}: took part in {summary.ran} trials; node 0 records them")
        return 0
    store = ResultStore(args.results)
    summary = runner.run_scenario(loaded, store, device, resume=args.resume,
                                  progress=SweepProgress(quiet=args.quiet), cluster=cluster)
    counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.statuses.items()))
    print(f"run {summary.run_id}: {counts}; results in {args.results}")
    if not args.no_report:
        from harness.report import write_report

        out = args.report or default_report_dir(loaded.scenario.name)
        html, markdown = write_report(store, summary.run_id, out)
        print(f"report: {html} and {markdown}")
    return summary.exit_code


def _exit_on_sigterm(signum, frame) -> None:
    # Python's default for SIGTERM (what Slurm, systemd and `kill` send) ends the process on the
    # spot; as SystemExit the sweep unwinds instead: its worker is stopped, its temporary folder
    # removed. Trials already finished are stored; --resume runs the rest.
    print("harness: terminated (SIGTERM); finished trials are stored (resume with --resume)",
          file=sys.stderr)
    raise SystemExit(128 + signal.SIGTERM)


def cluster_of(args: argparse.Namespace):
    from harness.launch import Cluster

    if args.nnodes < 1:
        raise InputError(f"--nnodes must be at least 1, got {args.nnodes}", field="--nnodes")
    if not 0 <= args.node_rank < args.nnodes:
        raise InputError(f"--node-rank must be in [0, {args.nnodes}), got {args.node_rank}",
                         field="--node-rank")
    if args.nnodes > 1 and not args.rdzv_endpoint:
        raise InputError("a sweep on several nodes needs --rdzv-endpoint HOST:PORT of node 0",
                         field="--rdzv-endpoint")
    if args.nnodes > 1 and args.resume:
        raise InputError("--resume works on one node: node 0 alone knows which trials are stored",
                         field="--resume")
    return Cluster(args.nnodes, args.node_rank, args.rdzv_endpoint)


def cmd_validate(args: argparse.Namespace) -> int:
    from harness.scenario import expand_combinations, load_scenario

    for path in args.scenarios:
        loaded = load_scenario(path, args.overrides)
        combos = len(expand_combinations(loaded.scenario))
        print(f"{path}: ok ({combos} combinations x {loaded.scenario.repeats} repeats)")
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from harness.report import write_report
    from harness.store import ResultStore

    store = ResultStore(args.results, read_only=True)
    run = store.run(args.run_id)
    html, markdown = write_report(store, run.run_id, args.out or default_report_dir(run.scenario))
    print(f"report: {html} and {markdown}")
    return 0


def cmd_export(args: argparse.Namespace) -> int:
    from harness.store import ResultStore, export_trials

    store = ResultStore(args.results, read_only=True)
    run = store.run(args.run_id)
    text = export_trials(store.trials(run.run_id, with_series=True), args.format, args.out)
    if text is not None:
        sys.stdout.write(text)
    return 0


def cmd_claims(args: argparse.Namespace) -> int:
    from harness.claims import default_claims_path, evaluate_claims, load_claims, results_frame
    from harness.report.claims_table import claims_table
    from harness.store import open_results

    claims = load_claims(args.claims_file or default_claims_path())
    store = open_results(args.results)
    results = evaluate_claims(store, claims)
    if args.format == "json":
        print(results_frame(results).to_json(orient="records", indent=2))
        return 0
    table = claims_table(results)
    if args.format == "markdown":
        from harness.report.markdown import table_markdown

        print(table_markdown(table))
        return 0
    from rich.console import Console
    from rich.table import Table as RichTable

    shown = RichTable(title=rich_text(f"{len(results)} claims against {args.results}"), show_lines=True)
    for header in ("claim", "verdict", "measured (95% interval)", "claimed", "hardware", "why"):
        shown.add_column(header, overflow="fold")
    for row in table.rows:
        claim, verdict, measured, claimed, _, hardware, why, _ = row
        shown.add_row(rich_text(claim), rich_text(verdict, VERDICT_STYLE.get(verdict, "")),
                      *map(rich_text, (measured, claimed, hardware, why)))
    Console(width=max(Console().width, 140)).print(shown)
    return 0


VERDICT_STYLE = {"confirmed": "green", "partly": "yellow", "refuted": "red",
                 "inconclusive": "magenta", "not-testable-here": "dim", "unsourced": "dim italic"}


def cmd_compare(args: argparse.Namespace) -> int:
    from harness.regression import compare_command

    return compare_command.run(args)


def cmd_history(args: argparse.Namespace) -> int:
    from harness.regression import history_command

    return history_command.run(args)


def cmd_procure(args: argparse.Namespace) -> int:
    from harness.procure import command as procure_command

    return procure_command.run(args)


def cmd_suite(args: argparse.Namespace) -> int:
    from harness.suite import command as suite_command

    return suite_command.run(args)


def cmd_import(args: argparse.Namespace) -> int:
    from harness.store import ResultStore, import_trials, read_export

    files = []
    for path in args.exports:
        found = sorted(path.glob("*.json")) if path.is_dir() else [path]
        if not found:
            raise InputError("no JSON exports (*.json) in this folder", file=str(path))
        files += found
    exports = [(file, read_export(file)) for file in files]  # all checked before any is written
    store = ResultStore(args.results)
    lines = []
    with store.batch():  # every file or none
        for file, trials in exports:
            added = import_trials(store, trials, str(file))
            lines.append(f"{file}: {added.trials_added} trials added ({added.runs_added} new runs), "
                         f"{added.trials_present} already present")
    print("\n".join(lines))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from harness import hardware

    print(json.dumps(hardware.fingerprint(hardware.resolve_device("auto")), indent=2))
    return 0


def cmd_runs(args: argparse.Namespace) -> int:
    from harness.store import ResultStore

    for run in ResultStore(args.results, read_only=True).runs():
        state = "finished" if run["finished_at"] else "unfinished"
        print(f"{run['run_id']}  {run['scenario']:<24} {run['device']:<5} "
              f"{run['trials']}/{run['planned_trials']} trials  {run['started_at']}  {state}")
    return 0


PLAN_TABLE_ROWS = 200  # a larger plan streams one tab-separated line per trial


def planned_count(loaded) -> int:
    from harness.scenario import expand_combinations

    return len(expand_combinations(loaded.scenario)) * loaded.scenario.repeats


def print_plan(planned, count: int, scenario: str, device: str) -> None:
    """The plan as a table; past PLAN_TABLE_ROWS trials as lines printed while the plan is
    built, so 100,000 planned trials never sit in memory (or in a table) at once."""
    from rich.console import Console
    from rich.table import Table

    title = f"{scenario}: {count} trials on {device}"
    columns = ("#", "trial", "name", "model", "global batch (micro x accum x ranks)", "steps", "plan")
    rows = (_plan_row(index, spec, skip) for index, (spec, skip) in enumerate(planned))
    if count > PLAN_TABLE_ROWS:
        print(printable(title))
        print("\t".join(columns))
        for row in rows:
            print(printable("\t".join(row)))
        return
    table = Table(title=rich_text(title))
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*map(rich_text, row))
    Console(width=160).print(table)


def _plan_row(index: int, spec, skip: str | None) -> tuple[str, ...]:
    model, t = spec.model, spec.techniques
    shape = f"{model['flavour']} L{model['n_layer']} d{model['d_model']} h{model['n_head']}"
    micro, accum, ranks = spec.train["micro_batch_size"], t["grad_accum"], t["world_size"] * t["nnodes"]
    batch = f"{micro * accum * ranks} ({micro} x {accum} x {ranks})"
    return (str(index), spec.trial_id, spec.name, shape, batch, str(spec.train["steps"]),
            f"skip: {skip}" if skip else "run")


def default_report_dir(scenario: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in scenario)
    return Path("reports") / safe


COMMANDS = {"run": cmd_run, "validate": cmd_validate, "report": cmd_report,
            "export": cmd_export, "claims": cmd_claims, "compare": cmd_compare, "history": cmd_history,
            "procure": cmd_procure, "suite": cmd_suite,
            "import": cmd_import, "env": cmd_env, "runs": cmd_runs}
