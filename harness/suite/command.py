"""`harness suite FILE`: run a suite's entries in file order into one results database, then
write one report per scenario entry and the suite's index.

Exit 0 when the suite ran; 1 when not one trial of any entry finished ok, a check failed, or
a report could not be written; 2 on bad input (the suite file, an override, an option), before
anything runs. One failing entry never stops the suite: a trial's failure is its status, a
check that raises is a failed check. SIGTERM and Ctrl-C stop it as they stop `harness run`:
the running trial's worker is stopped and every finished trial stays stored.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from harness.errors import InputError
from harness.files import file_in_the_way, write_file
from harness.text import printable

if TYPE_CHECKING:  # the parser is built for every command: its module stays light
    from harness.suite.index import CheckRow, ScenarioRow
    from harness.suite.loader import LoadedSuite, SuiteEntry

EXIT_OK, EXIT_FAILED = 0, 1


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from harness.store import DEFAULT_RESULTS

    parser.add_argument("suite", help="suite YAML file (scenarios/suites/)")
    parser.add_argument("--results", type=Path, default=DEFAULT_RESULTS,
                        help="results database every entry runs into (and, for --dry-run, where "
                             "measured fixed costs are read)")
    parser.add_argument("--out", type=Path, help="report folder (default reports/<suite name>/)")
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"],
                        help="the device (default: the suite file's, else auto)")
    parser.add_argument("--smoke", action="store_true",
                        help="run the suite at tiny sizes on the CPU (its smoke overrides)")
    parser.add_argument("--dry-run", action="store_true",
                        help="print the planned trials with an estimated time each, and stop")
    parser.add_argument("--format", default="table", choices=["table", "json"], help="of --dry-run")
    parser.add_argument("--assume-device", metavar="NAME",
                        help="plan for this GPU instead of this machine's device (--dry-run), "
                             "e.g. 'NVIDIA H200'")
    parser.add_argument("--no-report", action="store_true",
                        help="run and store only (checks still write OUT/checks/); the reports can "
                             "be written later, on another machine, with --report-only")
    parser.add_argument("--report-only", action="store_true",
                        help="run nothing: write the reports and the index from --results (each "
                             "entry's latest run) and OUT/checks/")
    parser.add_argument("-q", "--quiet", action="store_true", help="one line per trial, no progress bar")


def run(args: argparse.Namespace) -> int:
    from harness.suite.loader import load_suite

    requested = _requested_device(args)
    suite = load_suite(args.suite, smoke=args.smoke, device="cuda" if args.assume_device else requested)
    if args.dry_run:
        return _dry_run(suite, args, requested)
    out = args.out or default_out(suite.name)
    if (blocker := file_in_the_way(out / "index.html")) is not None:
        raise InputError(f"cannot write the reports: {blocker} is a file", file=str(out), field="--out")
    if args.report_only:
        return _report_only(suite, out, args)
    device = suite.resolve_device(requested)
    before = signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        return _run(suite, device, out, args)
    except KeyboardInterrupt:
        print(f"harness: interrupted; finished trials are stored in {args.results}", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGTERM, before)


def _requested_device(args: argparse.Namespace) -> str | None:
    if args.assume_device and not args.dry_run:
        raise InputError("plans for a device that is not here: add --dry-run", field="--assume-device")
    if args.assume_device and (args.smoke or args.device):
        other = "--smoke" if args.smoke else "--device"
        raise InputError(f"names the device to plan for; leave out {other}", field="--assume-device")
    if args.smoke and args.device not in (None, "cpu"):
        raise InputError("--smoke runs on the CPU; leave out --device", field="--device")
    if args.no_report and args.report_only:
        raise InputError("--report-only writes the reports --no-report leaves out: choose one",
                         field="--report-only")
    if args.report_only and (args.dry_run or args.device):
        other = "--dry-run" if args.dry_run else "--device"
        raise InputError(f"runs nothing, so {other} has no effect: leave it out", field="--report-only")
    if args.format != "table" and not args.dry_run:
        raise InputError("formats the --dry-run plan: add --dry-run", field="--format")
    return "cpu" if args.smoke else args.device


def default_out(name: str) -> Path:
    return Path("reports") / name


def _dry_run(suite: LoadedSuite, args: argparse.Namespace, requested: str | None) -> int:
    from harness.suite.devices import assumed_device, this_device
    from harness.suite.plan import plan_suite, print_plan

    if args.assume_device:
        device = assumed_device(args.assume_device)
    else:
        try:
            resolved = suite.resolve_device(requested)
        except InputError as err:  # a GPU suite planned on a machine without one
            raise InputError(f"{err.message}; plan for a GPU that is not here with --assume-device NAME",
                             file=err.file, line=err.line, field=err.field) from None
        device = this_device(resolved)
    plan = plan_suite(suite, device, args.results)
    if args.format == "json":
        print(json.dumps(plan, indent=2, allow_nan=False, default=str))
    else:
        print_plan(plan)
    return EXIT_OK


def run_check(name: str, device: str, smoke: bool):
    """One check in a process of its own (harness.checks.run_isolated); whatever goes wrong
    around it is a failed result, never the end of the suite."""
    from harness import checks
    from harness.checks import CheckResult

    try:
        return checks.run_isolated(name, device, smoke)
    except Exception as err:
        return CheckResult(name, "failed", f"{type(err).__name__}: {err}"[:400])


def _run(suite: LoadedSuite, device: str, out: Path, args: argparse.Namespace) -> int:
    from harness import hardware, runner
    from harness.progress import SweepProgress
    from harness.store import ResultStore, utc_now
    from harness.suite.index import CheckRow, SuiteIndex, write_index

    store = ResultStore(args.results)
    started_at, t0 = utc_now(), time.perf_counter()
    scenarios: list[tuple[SuiteEntry, object, float]] = []
    checks: list[CheckRow] = []
    total = len(suite.entries)
    for position, entry in enumerate(suite.entries, 1):
        t_entry = time.perf_counter()
        if entry.is_check:
            print(printable(f"[{position}/{total}] {entry.label}: check {entry.check}"), flush=True)
            result = run_check(entry.check, device, suite.smoke)
            seconds = time.perf_counter() - t_entry
            relative = f"checks/{entry.label}.json"
            write_file(out / relative, json.dumps({**result.to_json(), "seconds": seconds}, indent=2,
                                                  allow_nan=False, default=str))
            checks.append(CheckRow(entry.label, entry.check, result.status, result.summary, seconds, relative))
            print(printable(f"  {result.status}: {result.summary}"), flush=True)
            continue
        print(printable(f"[{position}/{total}] {entry.label}: {entry.scenario_path}"
                        + "".join(f" --set {item}" for item in entry.overrides)), flush=True)
        summary = runner.run_scenario(entry.loaded, store, device, progress=SweepProgress(quiet=args.quiet))
        counts = ", ".join(f"{n} {status}" for status, n in sorted(summary.statuses.items()))
        print(printable(f"  run {summary.run_id}: {counts}"), flush=True)
        scenarios.append((entry, summary, time.perf_counter() - t_entry))

    wall_s = time.perf_counter() - t0
    if args.no_report:
        print(f"suite {suite.name}: {len(scenarios)} runs and {len(checks)} checks in {wall_s:.0f} s; "
              f"results in {args.results}, checks in {out / 'checks'}; reports: harness suite "
              f"{suite.path} --report-only --results {args.results} --out {out}")
        return exit_code([_row(entry, summary.run_id, summary.statuses, seconds, None)
                          for entry, summary, seconds in scenarios], checks, reports=False)
    rows = [_report(store, entry, summary.run_id, summary.statuses, seconds, out)
            for entry, summary, seconds in scenarios]
    index = SuiteIndex(suite.name, suite.suite.description, suite.path, suite.smoke, device,
                       hardware.device_facts(device).name, str(args.results), started_at, wall_s, rows, checks)
    html, markdown = write_index(out, index)
    print(f"suite {suite.name}: {len(rows)} runs and {len(checks)} checks in {index.wall_s:.0f} s; "
          f"results in {args.results}; index: {html} and {markdown}")
    return exit_code(rows, checks)


def _report_only(suite: LoadedSuite, out: Path, args: argparse.Namespace) -> int:
    """The reports and the index of a suite that ran elsewhere (a GPU machine that brought back
    its database and its checks' JSON): each scenario entry's latest run in --results, each
    check's result from OUT/checks/. An entry with no run, or a check with no result (a suite
    cut short by a time limit), is a "not run" row of the index, named on stderr, and makes
    the exit code 1: a partial index never passes for the whole suite."""
    from datetime import datetime

    from harness.store import ResultStore
    from harness.suite.index import CheckRow, SuiteIndex, write_index

    store = ResultStore(args.results, read_only=True)
    rows, checks, starts, ends, devices = [], [], [], [], set()
    for entry in suite.entries:
        if entry.is_check:
            relative = f"checks/{entry.label}.json"
            try:
                found = json.loads((out / relative).read_text())
                checks.append(CheckRow(entry.label, entry.check, str(found["status"]), str(found["summary"]),
                                       float(found.get("seconds") or 0.0), relative))
            except (OSError, ValueError, KeyError, TypeError) as err:  # a suite cut short, say
                why = f"not run, or its result is missing: no readable {out / relative} ({type(err).__name__})"
                print(printable(f"harness: {entry.label}: {why}"), file=sys.stderr)
                checks.append(CheckRow(entry.label, entry.check, "failed", why, 0.0, relative))
            continue
        try:
            run = _latest_run_of(store, entry, suite.smoke)
        except NotRun as err:  # the index lists it as not run; the exit code says incomplete
            print(printable(f"harness: {entry.label}: {err}"), file=sys.stderr)
            rows.append(_row(entry, "-", {}, 0.0, None, f"not run: {err}"))
            continue
        statuses: dict[str, int] = {}
        for trial in store.trials(run.run_id):
            statuses[trial["status"]] = statuses.get(trial["status"], 0) + 1
        begun = datetime.fromisoformat(run.started_at)
        finished = datetime.fromisoformat(run.finished_at) if run.finished_at else begun
        starts.append(begun)
        ends.append(finished)
        devices.add((run.device, str(run.env.get("device_name") or run.device)))
        rows.append(_report(store, entry, run.run_id, statuses, (finished - begun).total_seconds(), out))
    device, device_name = sorted(devices)[0] if len(devices) == 1 else (
        "/".join(sorted(d for d, _ in devices)) or "-", "; ".join(sorted(n for _, n in devices)) or "-")
    wall_s = (max(ends) - min(starts)).total_seconds() if starts else sum(c.seconds for c in checks)
    index = SuiteIndex(suite.name, suite.suite.description, suite.path, suite.smoke, device, device_name,
                       str(args.results), min(starts).isoformat() if starts else "-", wall_s, rows, checks)
    html, markdown = write_index(out, index)
    print(f"suite {suite.name}: {len(rows)} reports and {len(checks)} checks from {args.results}; "
          f"index: {html} and {markdown}")
    return exit_code(rows, checks)


def _latest_run_of(store, entry: SuiteEntry, smoke: bool):
    """The latest run of the entry's scenario made from the same file and overrides (its hash):
    a run of the same name made otherwise (the smoke sizes, an edited scenario) is not this
    entry's evidence, and an error says so rather than report it."""
    name = entry.loaded.scenario.name
    for found in reversed([r for r in store.runs() if r["scenario"] == name]):
        run = store.run(found["run_id"])
        if run.scenario_hash == entry.loaded.file_hash:
            return run
    hint = " or another scenario file" + ("" if smoke else "; if the suite ran with --smoke, add --smoke")
    raise NotRun(f"no run of scenario '{name}' in {store.path} made with this suite's overrides{hint}")


class NotRun(Exception):
    """A suite entry without a run in the database (the suite was cut short, or ran otherwise)."""


def _row(entry: SuiteEntry, run_id: str, statuses: dict[str, int], seconds: float, report: str | None,
         report_error: str | None = None) -> ScenarioRow:
    from harness.suite.index import ScenarioRow

    return ScenarioRow(label=entry.label, scenario=entry.loaded.scenario.name, path=entry.scenario_path,
                       overrides=entry.overrides, run_id=run_id, statuses=dict(statuses), seconds=seconds,
                       report=report, report_error=report_error)


def _report(store, entry: SuiteEntry, run_id: str, statuses: dict[str, int], seconds: float,
            out: Path) -> ScenarioRow:
    from harness.report import write_report

    try:
        write_report(store, run_id, out / entry.label)
    except InputError:
        raise
    except Exception as err:  # one report's failure leaves the others and the index to write
        reason = f"report failed: {type(err).__name__}: {err}"[:400]
        print(printable(f"harness: {entry.label}: {reason}"), file=sys.stderr)
        return _row(entry, run_id, statuses, seconds, None, reason)
    return _row(entry, run_id, statuses, seconds, entry.label)


def exit_code(rows: list[ScenarioRow], checks: list[CheckRow], reports: bool = True) -> int:
    """1 when scenario entries planned trials and not one finished ok, when a check failed, or
    (`reports`) when a report could not be written; else 0."""
    trials = sum(sum(row.statuses.values()) for row in rows)
    none_ok = bool(trials) and not any(row.statuses.get("ok") for row in rows)
    failed = any(c.status == "failed" for c in checks) or (reports and any(row.report is None for row in rows))
    return EXIT_FAILED if none_ok or failed else EXIT_OK


def _exit_on_sigterm(signum, frame) -> None:
    # as in `harness run`: SystemExit unwinds the sweep, so its worker is stopped and its
    # temporary folder removed; the trials already finished are stored
    print("harness: terminated (SIGTERM); finished trials are stored", file=sys.stderr)
    raise SystemExit(128 + signal.SIGTERM)
