"""Write a run's report: out/index.html (self-contained), out/report.md and its figure PNGs."""

from __future__ import annotations

from pathlib import Path

from harness.files import write_file
from harness.report.content import build_content
from harness.report.html import render_html
from harness.report.markdown import render_markdown
from harness.store import ResultStore


def write_report(store: ResultStore, run_id: str, out: Path) -> tuple[Path, Path]:
    """Render run `run_id` of `store` into folder `out`; returns (html_path, md_path)."""
    content = build_content(store, run_id)
    out = Path(out)
    for figure in content.figures:  # report.md links these; the HTML embeds its own copies
        write_file(out / f"{figure.slug}.png", figure.png)
    md_path = write_file(out / "report.md", render_markdown(content))
    html_path = write_file(out / "index.html", render_html(content))
    return html_path, md_path
