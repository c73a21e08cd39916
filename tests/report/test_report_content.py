"""What the report says, cell by cell: units, ratios, dashes, statuses and reasons."""

from __future__ import annotations

import pytest
from report_fixture_store import ACTIVATION_REASON, RUN_ID

from harness.report.content import build_content
from harness.report.units import DASH


@pytest.fixture(scope="module")
def content(fixture_store):
    return build_content(fixture_store, RUN_ID)


def _row(table, first_cell: str) -> dict[str, str]:
    matches = [row for row in table.rows if row[0] == first_cell]
    assert len(matches) == 1, first_cell
    return dict(zip(table.headers, matches[0]))


def test_trial_table_has_every_trial_in_planned_order(content, fixture_store):
    names = [t["name"] for t in fixture_store.trials(RUN_ID)]
    assert [row[0] for row in content.trials.rows] == names


def test_cpu_run_labels_its_memory_column_as_host_rss(content):
    assert "peak host RSS" in content.trials.headers
    assert "peak device memory" not in content.trials.headers
    assert _row(content.trials, "precision=fp32 checkpointing=none #0")["peak host RSS"] == "300.0 MiB"


def test_trial_ratios_are_against_the_baseline_median(content):
    # baseline repeats 90, 100, 130 tok/s: median 100
    assert _row(content.trials, "precision=bf16 checkpointing=none #0")["speedup"] == "1.50×"
    assert _row(content.trials, "precision=bf16 checkpointing=none #1")["speedup"] == "1.40×"
    assert _row(content.trials, "precision=fp32 checkpointing=none #2")["speedup"] == "1.30×"
    assert _row(content.trials, "precision=bf16 checkpointing=none #0")["activations vs baseline"] == "0.50×"


def test_combination_table_uses_the_median_of_ok_repeats(content):
    bf16 = _row(content.combinations, "precision=bf16 checkpointing=none")
    assert bf16["speedup"] == "1.50×" and bf16["tokens/s"] == "150"
    assert bf16["ok / repeats"] == "3 / 3"
    partial = _row(content.combinations, "precision=bf16 checkpointing=full")
    assert partial["ok / repeats"] == "0 / 2" and partial["speedup"] == DASH


def test_unmeasured_metric_is_a_dash_with_its_reason_listed_once(content):
    row = _row(content.trials, "precision=bf16 checkpointing=none #1")
    assert row["activation bytes"] == DASH and row["activations vs baseline"] == DASH
    reasons = [(metric, why) for metric, why, _ in content.unmeasured]
    assert reasons.count(("activation_bytes", f"not measured: {ACTIVATION_REASON}")) == 1
    which = dict(((m, r), w) for m, r, w in content.unmeasured)
    assert which[("activation_bytes", f"not measured: {ACTIVATION_REASON}")] == \
        "precision=bf16 checkpointing=none #1"
    assert which[("mfu", "not measured: no peak FLOP/s table for this device yet")] == "all 6 ok trials"


def test_trials_that_did_not_finish_show_dashes_never_zero(content):
    for name in ("precision=bf16 checkpointing=full #0", "precision=fp8 checkpointing=none #0"):
        row = _row(content.trials, name)
        figures = [row[h] for h in content.trials.headers[2:]]
        assert set(figures) == {DASH}


def test_status_column_carries_the_reason_of_non_ok_trials(content):
    assert _row(content.trials, "precision=bf16 checkpointing=full #0")["status"] == \
        "failed: RuntimeError: boom"
    assert _row(content.trials, "precision=fp8 checkpointing=none #0")["status"] == \
        "skipped: fp8 needs compute capability 8.9+ (this device: cpu)"
    assert [(u.name, u.status) for u in content.unfinished] == [
        ("precision=bf16 checkpointing=full #0", "failed"),
        ("precision=bf16 checkpointing=full #1", "oom"),
        ("precision=fp8 checkpointing=none #0", "skipped"),
        ("precision=<script>alert(1)</script> checkpointing=none #0", "diverged"),
    ]


def test_rendered_markdown_shows_dash_and_status_not_zero(written_report):
    markdown = written_report[1].read_text()
    failed_line = next(line for line in markdown.splitlines()
                       if line.startswith("| precision=bf16 checkpointing=full #0"))
    cells = [cell.strip() for cell in failed_line.strip("|").split("|")]
    assert cells[1] == "failed: RuntimeError: boom"
    assert cells[2:] == [DASH] * (len(cells) - 2)
    assert "| 0 " not in markdown and " 0 B" not in markdown


def test_every_figure_states_how_it_is_measured(content):
    assert [f.slug for f in content.figures] == ["throughput", "memory", "loss", "pareto",
                                                 "memory_breakdown"]
    assert all(f.how_measured and f.png.startswith(b"\x89PNG") for f in content.figures)
    assert "warm-up" in content.figures[0].how_measured
    labels = [label for label, _ in content.measurements]
    assert labels[:3] == ["tokens/s", "step time", "peak host RSS"] and "ratios" in labels
