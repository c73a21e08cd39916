"""User text (trial names from matrix values, descriptions, a failure's reason) is shown as
written in the terminal, markdown and HTML: never read as rich markup, control characters
stripped, HTML and markdown escaped."""

from __future__ import annotations

from pathlib import Path

from rich.console import Console

from harness.cli import main
from harness.progress import SweepProgress
from harness.report import write_report
from harness.spec import TrialResult, TrialSpec
from harness.store import ResultStore
from harness.text import printable

MARKUP = "a[/x]:b [bold]c[/bold]"
CONTROL = "clear\x1b[2J\x00screen\x07\r"
EVIL = f"{MARKUP} {CONTROL} <script>alert(1)</script> *em* | pipe"


def test_printable_strips_control_characters_and_keeps_tab_and_newline():
    assert printable(CONTROL) == "clear[2Jscreen"
    assert printable("a\tb\nc\x7fd\x9be") == "a\tb\ncde"


def test_the_progress_bar_shows_markup_and_control_characters_as_plain_text():
    console = Console(record=True, force_terminal=True, width=200)
    with SweepProgress(console=console) as progress:
        progress.start_sweep(1)
        progress.start_trial(EVIL, 3)
        progress.step(1, 3)
        progress.note(f"note: {EVIL}")
        progress.end_trial(EVIL, TrialResult("t", "failed", reason=EVIL))
    shown = console.export_text()
    assert f"[1/1] {printable(EVIL)}: failed ({printable(EVIL)})" in shown
    assert f"note: {printable(EVIL)}" in shown and "\x1b[2J" not in shown and "\x00" not in shown


def test_the_dry_run_plan_shows_a_matrix_value_with_brackets_as_written(tmp_path, write_scenario,
                                                                        capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    plugin = Path("plugins") / "m[bold].py"  # the name shows the file's name: rich would eat the tag
    plugin.parent.mkdir(parents=True)
    plugin.write_text("from harness.models import GPT\n\ndef build(config):\n    return GPT(config)\n")
    path = write_scenario("plan", matrix={"model.arch": [f"{plugin}:build"]})
    assert main(["run", str(path), "--dry-run", "--device", "cpu"]) == 0
    assert "model.arch=m[bold].py:build" in capsys.readouterr().out


def test_reports_escape_user_text_and_drop_its_control_characters(tmp_path):
    store = ResultStore(tmp_path / "r.db")
    store.create_run("run-e", scenario="evil", description=EVIL, scenario_path="e.yaml",
                     scenario_hash="h", overrides=[], device="cpu", baseline=None, planned_trials=1,
                     env={"device": "cpu"})
    spec = TrialSpec(scenario="evil", trial_id="t-e", name=EVIL, params={"repeat": 0}, model={},
                     data={}, train={}, techniques={}, device="cpu", timeout_s=5)
    store.save_trial("run-e", 0, spec, TrialResult("t-e", "failed", reason=EVIL), {"device": "cpu"}, "h")
    html_path, md_path = write_report(store, "run-e", tmp_path / "rep")
    html, markdown = html_path.read_text(), md_path.read_text()
    for text in (html, markdown):
        assert "\x1b" not in text and "\x00" not in text and "\x07" not in text and "\r" not in text
        assert "<script>" not in text and "&lt;script&gt;alert(1)&lt;/script&gt;" in text
    assert "a[/x]:b [bold]c[/bold] clear[2Jscreen" in html
    assert r"a\[/x\]:b \[bold\]c\[/bold\] clear\[2Jscreen" in markdown
