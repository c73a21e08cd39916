"""A whole suite, end to end on the CPU: two scenario entries into one database, a report each,
checks beside them (one raising), the index listing it all; then its dry run reads the fixed
costs those trials measured. The only test here that trains."""

from __future__ import annotations

import json

import pytest

from harness import checks
from harness.checks import CheckResult
from harness.store import ResultStore
from harness.suite.command import exit_code
from harness.suite.index import CheckRow, ScenarioRow

SUITE = """\
name: e2e
description: "two tiny entries <script>alert(1)</script>"
smoke: [train.steps=3, train.warmup_steps=1]
entries:
  - label: fake-ok
    check: fake
  - label: a
    scenario: ../scenarios/tiny.yaml
  - label: b
    scenario: ../scenarios/tiny.yaml
    set: [name=tiny-b, "matrix.checkpointing=[none]"]
  - label: broken
    check: broken
"""


@pytest.fixture
def fake_checks(monkeypatch):
    def fake(device: str, smoke: bool) -> CheckResult:
        return CheckResult("fake", "ok", f"fine on {device} (smoke {smoke})", {"ratio": 1.5})

    def broken(device: str, smoke: bool) -> CheckResult:
        raise RuntimeError("the check blew up")

    monkeypatch.setitem(checks.CHECKS, "fake", fake)
    monkeypatch.setitem(checks.CHECKS, "broken", broken)
    # in this process, not a child's: the child would not know the fakes
    monkeypatch.setattr(checks, "run_isolated",
                        lambda name, device, smoke=False: checks.CHECKS[name](device, smoke))


def test_a_suite_runs_into_one_database_with_a_report_each_and_an_index(write_suite, cli, fake_checks,
                                                                        suite_dir):
    path = write_suite(SUITE)
    db, out = suite_dir / "r" / "suite.db", suite_dir / "out"
    code, stdout, _ = cli("suite", path, "--smoke", "--results", db, "--out", out, "-q")
    assert code == 1  # a check failed; every trial is ok

    runs = ResultStore(db, read_only=True).runs()
    assert [(r["scenario"], r["trials"], r["device"]) for r in runs] == \
        [("tiny-a", 2, "cpu"), ("tiny-b", 1, "cpu")]
    store = ResultStore(db, read_only=True)
    assert {t["status"] for r in runs for t in store.trials(r["run_id"])} == {"ok"}
    assert {t["spec"]["train"]["steps"] for r in runs for t in store.trials(r["run_id"])} == {3}
    for label in ("a", "b"):
        assert (out / label / "index.html").is_file() and (out / label / "report.md").is_file()
    fake_ok = json.loads((out / "checks" / "fake-ok.json").read_text())
    assert fake_ok.pop("seconds") >= 0
    assert fake_ok == {"name": "fake", "status": "ok", "summary": "fine on cpu (smoke True)",
                       "figures": {"ratio": 1.5}}
    broken = json.loads((out / "checks" / "broken.json").read_text())
    assert (broken["status"], broken["summary"]) == ("failed", "RuntimeError: the check blew up")

    html, markdown = (out / "index.html").read_text(), (out / "index.md").read_text()
    for run in runs:
        assert html.count(run["run_id"]) == 1 and markdown.count(run["run_id"]) == 1
    assert 'href="a/index.html"' in html and 'href="b/index.html"' in html
    assert "(b/report.md)" in markdown and "(checks/broken.json)" in markdown
    assert "2 ok" in html and "1 ok" in html and "RuntimeError: the check blew up" in html
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<script>" not in markdown
    assert "suite e2e: 2 runs and 2 checks" in stdout

    # the reports again, elsewhere, from the database and the checks' JSON (what a GPU machine
    # brings back): the same runs, the same check results; without the JSON, one line naming it
    again = suite_dir / "again"
    code, _, err = cli("suite", path, "--smoke", "--report-only", "--results", db, "--out", again)
    missing = f"not run, or its result is missing: no readable {again / 'checks' / 'fake-ok.json'}"
    assert code == 1 and f"harness: fake-ok: {missing} (FileNotFoundError)" in err
    assert missing in (again / "index.md").read_text()
    (again / "checks").mkdir(parents=True)
    for name in ("fake-ok.json", "broken.json"):
        (again / "checks" / name).write_text((out / "checks" / name).read_text())
    # the runs were smoke runs: without --smoke their overrides are not this suite's
    code, _, err = cli("suite", path, "--report-only", "--results", db, "--out", again)
    assert code == 1 and f"harness: a: no run of scenario 'tiny-a' in {db} made with this suite's " \
        "overrides or another scenario file; if the suite ran with --smoke, add --smoke" in err
    assert "not run: no run of scenario 'tiny-a'" in (again / "index.md").read_text()
    code, stdout, _ = cli("suite", path, "--smoke", "--report-only", "--results", db, "--out", again)
    assert code == 1 and "suite e2e: 2 reports and 2 checks from" in stdout  # the check still failed
    rebuilt = (again / "index.html").read_text()
    for run in runs:
        assert rebuilt.count(run["run_id"]) == 1
        assert (again / ("a" if run["scenario"] == "tiny-a" else "b") / "report.md").is_file()
    assert "RuntimeError: the check blew up" in rebuilt

    # the dry run now measures the per-trial cost from those three trials on this CPU
    code, stdout, _ = cli("suite", path, "--smoke", "--dry-run", "--format", "json", "--results", db)
    plan = json.loads(stdout)
    assert code == 0 and len(plan["trials"]) == 3
    assert plan["assumptions"]["trial_s"]["source"].startswith("measured: median over 3 trials of their runs")
    assert 0 < plan["assumptions"]["trial_s"]["value"] < 60
    assert plan["assumptions"]["compile_s"]["default"]["source"] == "assumed"


def _row(statuses: dict, report: str | None = "a") -> ScenarioRow:
    return ScenarioRow("a", "s", "s.yaml", (), "run", statuses, 1.0, report)


def test_exit_code_is_1_only_when_nothing_ran_ok_or_a_check_or_report_failed():
    ok_check = CheckRow("c", "fake", "ok", "", 1.0, "checks/c.json")
    assert exit_code([_row({"ok": 1, "failed": 3})], [ok_check]) == 0
    assert exit_code([_row({"failed": 1}), _row({"oom": 1, "skipped": 1})], [ok_check]) == 1
    assert exit_code([_row({"ok": 1})], [CheckRow("c", "fake", "failed", "", 1.0, "x")]) == 1
    assert exit_code([_row({"ok": 1})], [CheckRow("c", "fake", "skipped", "", 1.0, "x")]) == 0
    assert exit_code([_row({"ok": 1}, report=None)], []) == 1
    assert exit_code([], [ok_check]) == 0


def test_no_report_stores_and_writes_the_checks_but_no_reports(write_suite, cli, fake_checks, suite_dir):
    path = write_suite("name: checks-only\nentries:\n  - {label: fake-ok, check: fake}\n")
    out = suite_dir / "out"
    code, stdout, _ = cli("suite", path, "--no-report", "--results", suite_dir / "r.db", "--out", out)
    assert code == 0
    assert json.loads((out / "checks" / "fake-ok.json").read_text())["status"] == "ok"
    assert not (out / "index.html").exists()
    assert f"--report-only --results {suite_dir / 'r.db'} --out {out}" in stdout
    code, _, err = cli("suite", path, "--no-report", "--report-only")
    assert code == 2 and "--report-only writes the reports --no-report leaves out: choose one" in err
