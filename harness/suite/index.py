"""The suite's index: out/index.html (self-contained) and out/index.md, one row per entry with
its run, its trials' statuses and a link to its report, one per check with its verdict.

Labels, paths, overrides and check summaries come from users' files and from the machine: the
HTML escapes every expression (jinja2 autoescape, control characters stripped), the markdown
goes through the report's escape_markdown.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

from harness.files import write_file
from harness.report.html_template import STYLE
from harness.report.markdown import escape_markdown
from harness.text import printable_if_text


@dataclass(frozen=True)
class ScenarioRow:
    label: str
    scenario: str  # the scenario's name
    path: str  # its file
    overrides: tuple[str, ...]
    run_id: str
    statuses: dict[str, int]  # status -> trials
    seconds: float
    report: str | None  # its report's folder, relative to the index; None when it failed
    report_error: str | None = None

    @property
    def status_counts(self) -> str:
        return ", ".join(f"{n} {status}" for status, n in sorted(self.statuses.items())) or "no trials"


@dataclass(frozen=True)
class CheckRow:
    label: str
    check: str
    status: str
    summary: str
    seconds: float
    result: str  # its JSON, relative to the index


@dataclass(frozen=True)
class SuiteIndex:
    suite: str
    description: str
    file: str
    smoke: bool
    device: str  # cpu or cuda
    device_name: str
    results: str
    started_at: str
    wall_s: float
    scenarios: list[ScenarioRow]
    checks: list[CheckRow]


_ENV = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                   finalize=printable_if_text)
_TEMPLATE = _ENV.from_string("""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Suite {{ i.suite }}</title>
<style>{{ style }}</style>
</head>
<body>
<h1>Suite: {{ i.suite }}{% if i.smoke %} (smoke){% endif %}</h1>
{% if i.description %}<p class="description">{{ i.description }}</p>{% endif %}
<dl class="facts">
<dt>suite file</dt><dd>{{ i.file }}</dd>
<dt>device</dt><dd>{{ i.device_name }} ({{ i.device }})</dd>
<dt>results</dt><dd>{{ i.results }}</dd>
<dt>started</dt><dd>{{ i.started_at }}</dd>
<dt>wall time</dt><dd>{{ "%.0f"|format(i.wall_s) }} s</dd>
</dl>
{% if i.scenarios %}
<h2>Scenarios</h2>
<div class="scroll"><table>
<tr><th>entry</th><th>scenario</th><th>overrides</th><th>run id</th><th>trials</th><th>time</th>
<th>report</th></tr>
{% for r in i.scenarios %}
<tr><td>{{ r.label }}</td><td>{{ r.scenario }}<br><code>{{ r.path }}</code></td>
<td>{% for o in r.overrides %}<code>{{ o }}</code>{% if not loop.last %}<br>{% endif %}{% endfor %}</td>
<td><code>{{ r.run_id }}</code></td><td>{{ r.status_counts }}</td>
<td class="num">{{ "%.0f"|format(r.seconds) }} s</td>
<td>{% if r.report %}<a href="{{ r.report }}/index.html">report</a>
{% else %}<span class="warning">{{ r.report_error }}</span>{% endif %}</td></tr>
{% endfor %}
</table></div>
{% endif %}
{% if i.checks %}
<h2>Checks</h2>
<div class="scroll"><table>
<tr><th>entry</th><th>check</th><th>status</th><th>summary</th><th>time</th><th>result</th></tr>
{% for c in i.checks %}
<tr class="status-{{ c.status }}"><td>{{ c.label }}</td><td>{{ c.check }}</td><td>{{ c.status }}</td>
<td>{{ c.summary }}</td><td class="num">{{ "%.0f"|format(c.seconds) }} s</td>
<td><a href="{{ c.result }}">JSON</a></td></tr>
{% endfor %}
</table></div>
{% endif %}
</body>
</html>
""")


def render_html(index: SuiteIndex) -> str:
    return _TEMPLATE.render(i=index, style=Markup(STYLE))  # STYLE: our own constant


def render_markdown(index: SuiteIndex) -> str:
    e = escape_markdown
    out = [f"# Suite: {e(index.suite)}{' (smoke)' if index.smoke else ''}", ""]
    if index.description:
        out += [f"> {e(index.description)}", ""]
    out += [f"- **suite file**: {e(index.file)}", f"- **device**: {e(index.device_name)} ({e(index.device)})",
            f"- **results**: {e(index.results)}", f"- **started**: {e(index.started_at)}",
            f"- **wall time**: {index.wall_s:.0f} s", ""]
    if index.scenarios:
        out += ["## Scenarios", "", "| entry | scenario | overrides | run id | trials | time | report |",
                "|---|---|---|---|---|---:|---|"]
        for r in index.scenarios:
            report = f"[report]({_link(r.report)}/report.md)" if r.report else e(r.report_error or "")
            overrides = "<br>".join(e(o) for o in r.overrides)  # escaped, so not in a code span
            out.append(f"| {e(r.label)} | {e(r.scenario)} ({e(r.path)}) | {overrides} | {e(r.run_id)} | "
                       f"{e(r.status_counts)} | {r.seconds:.0f} s | {report} |")
        out.append("")
    if index.checks:
        out += ["## Checks", "", "| entry | check | status | summary | time | result |",
                "|---|---|---|---|---:|---|"]
        for c in index.checks:
            out.append(f"| {e(c.label)} | {e(c.check)} | **{e(c.status)}** | {e(c.summary)} | "
                       f"{c.seconds:.0f} s | [JSON]({_link(c.result)}) |")
        out.append("")
    return "\n".join(out)


def _link(relative: str) -> str:
    # a label is letters, digits, '-' and '_' (harness.suite.schema): safe in a link as it is
    return relative.replace(" ", "%20").replace("(", "%28").replace(")", "%29")


def write_index(out: Path, index: SuiteIndex) -> tuple[Path, Path]:
    return (write_file(out / "index.html", render_html(index)),
            write_file(out / "index.md", render_markdown(index)))
