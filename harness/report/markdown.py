"""The report as GitHub-flavoured markdown, fit for a pull-request comment.

Figures are links to the PNGs written next to report.md. Every text that comes from a
scenario or a trial (names, reasons, descriptions) goes through `escape_markdown`, so a name
cannot open a tag, break a table row or start emphasis.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from harness.report.tables import Table
from harness.text import printable

if TYPE_CHECKING:  # the content pipeline is heavy; escaping and tables are not
    from harness.report.content import ReportContent

# HTML-significant characters become entities (GitHub shows them as text); markdown
# punctuation that changes meaning inside a line is backslash-escaped; "|" would end a cell.
_ENTITIES = {"&": "&amp;", "<": "&lt;", ">": "&gt;"}
_PUNCTUATION = re.compile(r"([\\`*\[\]|~])")
# "_" only where it could open or close emphasis: inside a word (peak_rss_bytes) it cannot
_UNDERSCORE = re.compile(r"(?<![A-Za-z0-9])_|_(?![A-Za-z0-9])")


def escape_markdown(text: object) -> str:
    """Markdown-safe inline text: one line, no tags, no emphasis, no table breaks."""
    value = "".join(_ENTITIES.get(ch, ch) for ch in printable(text))
    value = _PUNCTUATION.sub(r"\\\1", value)
    value = _UNDERSCORE.sub(r"\\_", value)
    return " ".join(value.split())


def table_markdown(table: Table) -> str:
    frame = table.to_frame().map(escape_markdown)
    frame.columns = [escape_markdown(h) for h in table.headers]
    align = ["right" if numeric else "left" for numeric in table.numeric] or None
    # disable_numparse: the cells are already formatted; tabulate must not re-round "2.910"
    return frame.to_markdown(index=False, disable_numparse=True, colalign=align)


def render_markdown(content: ReportContent) -> str:
    out: list[str] = [f"# Benchmark report: {escape_markdown(content.scenario)}", ""]
    if content.description:
        out += [f"> {escape_markdown(content.description)}", ""]
    out += [_facts(content.facts), ""]
    for line in content.warnings:
        out += [f"> **WARNING:** {escape_markdown(line)}", ""]

    out += ["## Summary", "", _facts(content.summary), ""]
    if content.claims is not None:
        out += [f"### Claims this run bears on: {escape_markdown(content.verdict_counts)}", "",
                table_markdown(content.claims), "", f"*{escape_markdown(content.claims_note)}*", ""]

    if content.setup:
        out += ["## Setup", "", _facts(content.setup), ""]

    out += ["## Trials", "", table_markdown(content.trials), ""]
    if content.baseline_name:
        out += [f"Ratios are against the baseline **{escape_markdown(content.baseline_name)}** "
                "(median over its ok repeats).", ""]
    out += [content.dash_meaning, ""]
    if content.unmeasured:
        out += ["Not measured, or measured with a caveat:", ""]
        out += [f"- `{metric}`: {escape_markdown(reason)} ({escape_markdown(which)})"
                for metric, reason, which in content.unmeasured]
        out.append("")
    if content.unfinished:
        out += ["Trials that did not finish:", ""]
        out += [f"- {escape_markdown(t.name)}: **{t.status}**: {escape_markdown(t.reason)}"
                for t in content.unfinished]
        out.append("")

    for title, how, table in content.analysis:
        out += [f"## {title}", "", table_markdown(table), "", f"*{escape_markdown(how)}*", ""]

    if content.combinations is not None:
        out += ["## Per combination (median over ok repeats)", "",
                table_markdown(content.combinations), ""]

    for title, how, table in content.accounting:
        out += [f"## {title}", "", table_markdown(table), "", f"*{escape_markdown(how)}*", ""]

    out += ["## Figures", ""]
    for figure in content.figures:
        out += [f"### {figure.title}", "", f"![{figure.title}]({figure.slug}.png)", "",
                f"*{escape_markdown(figure.how_measured)}*", ""]

    out += ["## How each figure is measured", ""]
    out += [f"- **{escape_markdown(label)}**: {escape_markdown(how)}"
            for label, how in content.measurements]
    out += ["", "## Environment", "", "<details><summary>Hardware and software fingerprint"
            "</summary>", "", table_markdown(content.environment), "", "</details>", ""]
    return "\n".join(out)


def _facts(pairs: list[tuple[str, str]]) -> str:
    return "\n".join(f"- **{escape_markdown(key)}**: {escape_markdown(value)}" for key, value in pairs)
