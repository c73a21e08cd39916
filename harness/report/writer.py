"""Write a run's report: out/index.html (self-contained), out/report.md and its figure PNGs."""

from __future__ import annotations

from pathlib import Path

from harness.report.content import build_content
from harness.report.html import render_html
from harness.report.markdown import render_markdown
from harness.store import ResultStore


def write_report(store: ResultStore, run_id: str, out: Path) -> tuple[Path, Path]:
    """Render run `run_id` of `store` into folder `out`; returns (html_path, md_path)."""
    content = build_content(store, run_id)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    for figure in content.figures:  # report.md links these; the HTML embeds its own copies
        (out / f"{figure.slug}.png").write_bytes(figure.png)
    md_path = out / "report.md"
    md_path.write_text(render_markdown(content), encoding="utf-8")
    html_path = out / "index.html"
    html_path.write_text(render_html(content), encoding="utf-8")
    return html_path, md_path
