"""write_report: the files, their links, and that every trial is in both formats."""

from __future__ import annotations

import re

from report_fixture_store import EVIL, RUN_ID, fixture_trials
from markupsafe import escape

from harness.report.markdown import escape_markdown

TRIAL_NAMES = [spec.name for spec, _ in fixture_trials()]


def test_write_report_returns_the_two_files_it_wrote(written_report):
    html_path, md_path = written_report
    assert html_path.name == "index.html" and md_path.name == "report.md"
    assert html_path.parent == md_path.parent
    assert html_path.stat().st_size > 0 and md_path.stat().st_size > 0


def test_markdown_links_a_png_next_to_it_for_each_figure(written_report):
    _, md_path = written_report
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md_path.read_text())
    assert links == ["throughput.png", "memory.png", "loss.png", "pareto.png", "memory_breakdown.png"]
    for link in links:
        assert (md_path.parent / link).read_bytes().startswith(b"\x89PNG\r\n\x1a\n")


def test_every_trial_name_appears_escaped_in_both_formats(written_report):
    html_path, md_path = written_report
    html, markdown = html_path.read_text(), md_path.read_text()
    for name in TRIAL_NAMES:
        assert str(escape(name)) in html
        assert escape_markdown(name) in markdown


def test_no_script_from_a_name_reaches_either_format_unescaped(written_report):
    html_path, md_path = written_report
    html, markdown = html_path.read_text(), md_path.read_text()
    assert EVIL not in html and "<script" not in html.lower()
    assert EVIL not in markdown and "<script" not in markdown.lower()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "<b>fixture</b>" not in html  # the description is escaped too


def test_header_names_run_device_commit_and_incomplete_count(written_report):
    _, md_path = written_report
    markdown = md_path.read_text()
    assert RUN_ID in markdown
    assert "Test CPU" in markdown
    assert "0123456789ab (dirty)" in markdown
    assert "10 stored of 11 planned" in markdown
    assert "torch 2.5.0, numpy 2.0.0" in markdown  # libraries in the environment table


def test_report_of_an_existing_folder_overwrites_in_place(fixture_store, tmp_path):
    from harness.report import write_report

    first = write_report(fixture_store, RUN_ID, tmp_path / "r")
    second = write_report(fixture_store, RUN_ID, tmp_path / "r")
    assert first == second
    assert first[1].read_text() == second[1].read_text()


def test_a_run_with_no_stored_trial_still_gets_a_report(tmp_path):
    from harness.report import write_report
    from harness.store import ResultStore

    store = ResultStore(tmp_path / "empty.db")
    store.create_run("empty-run", scenario="empty", description="", scenario_path="",
                     scenario_hash="h", overrides=[], device="cpu", baseline=None,
                     planned_trials=3, env={})
    html_path, md_path = write_report(store, "empty-run", tmp_path / "report")
    assert "0 stored of 3 planned" in md_path.read_text()
    assert html_path.read_text().count("data:image/png;base64,") == 3
