"""The history of a scenario as tables, one time-series figure per metric, and a nightly
report: DIR/history.md (figures linked) and DIR/index.html (self-contained: CSS inline,
figures as data: URIs, every text from a results file escaped by jinja2's autoescape).

The x axis is the run (labelled with its date), not wall-clock time, so that nightly runs
sit evenly spaced and an environment change falls between the two runs it separates.
"""

from __future__ import annotations

import base64
from pathlib import Path

import numpy as np
import pandas as pd
from jinja2 import Environment, StrictUndefined
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter

from harness.files import write_file
from harness.regression.history import MIN_NOISE_RUNS, HistoryAnalysis
from harness.report import units
from harness.report.figures import DPI, _palette, _png, _text
from harness.report.markdown import escape_markdown, table_markdown
from harness.report.tables import Table
from harness.text import printable_if_text

REGRESSION = "#C0392B"
CHANGE = "#555555"
MAX_TICK_LABELS = 12


def format_value(metric: str, value: float | None) -> str:
    """A metric's value in the unit a reader thinks in, judged from its name."""
    if metric == "tokens_per_s":
        return units.tokens_per_s(value)
    if metric.endswith("_bytes"):
        return units.size(value)
    if metric.endswith("_s"):
        return units.duration(value)
    if metric.endswith("loss"):
        return units.loss(value)
    if metric.endswith("_j"):
        return units.joules(value)
    if metric.startswith("tokens"):
        return units.tokens(value)
    return units.number(value)


def run_date(started_at: str) -> str:
    return pd.Timestamp(started_at).strftime("%Y-%m-%d %H:%M")


# -- tables ------------------------------------------------------------------------------
def flags_table(analysis: HistoryAnalysis) -> Table:
    """Regressions, then suspects: where each streak started and how far it moved."""
    headers = ["verdict", "trial", "metric", "from run", "runs", "window median",
               "first → last", "change", "flagged past (noise)", "ongoing"]
    rows, classes = [], []
    for flag in analysis.flags.to_dict("records"):
        metric = flag["metric"]
        if flag["kind"] == "inconclusive":
            rows.append(["inconclusive: machine busy", flag["key"], metric,
                         f"{flag['run_id']} ({run_date(flag['started_at'])})", "1", units.DASH,
                         "every repeat measured on a busy machine: passed over", units.DASH,
                         units.DASH, "yes" if flag["ongoing"] else "no"])
            classes.append("suspect")
            continue
        noise = flag.get("noise")
        rows.append([flag["kind"], flag["key"], metric,
                     f"{flag['run_id']} ({run_date(flag['started_at'])})", str(flag["runs"]),
                     format_value(metric, flag["reference"]),
                     f"{format_value(metric, flag['value'])} → {format_value(metric, flag['last_value'])}",
                     units.signed_percent(flag["change"]),
                     f"{units.percent(flag['threshold'])} "
                     f"({units.percent(noise) if noise == noise and noise is not None else 'not yet known'})",
                     "yes" if flag["ongoing"] else "no"])
        classes.append(flag["kind"])
    return Table(headers, rows, classes, [False] * 4 + [True] * 5 + [False])


def variance_table(analysis: HistoryAnalysis) -> Table:
    headers = ["trial", "metric", "runs", "mean", "CV (std/mean)", "median", "MAD/median",
               "noise (robust σ of a run)", "flagged past"]
    rows = [[v["key"], v["metric"], str(v["runs"]), format_value(v["metric"], v["mean"]),
             units.percent(v["cv"]), format_value(v["metric"], v["median"]), units.percent(v["mad_rel"]),
             units.percent(v["noise"]) if v["noise"] == v["noise"] else f"not yet known (< {MIN_NOISE_RUNS + 2} runs)",
             units.percent(v["flag_past"])]
            for v in analysis.variance.to_dict("records")]
    return Table(headers, rows, [""] * len(rows), [False, False] + [True] * 7)


def changes_table(analysis: HistoryAnalysis) -> Table:
    headers = ["run", "date", "after run", "what changed"]
    rows = [[c["run_id"], run_date(c["started_at"]), c["previous_run_id"], c["changes"]]
            for c in analysis.changes.to_dict("records")]
    return Table(headers, rows, [""] * len(rows), [False] * 4)


# -- figures -----------------------------------------------------------------------------
def history_png(analysis: HistoryAnalysis, metric: str) -> bytes:
    """One line per trial key across the runs; a filled red marker where a regression's
    streak starts, hollow markers on the other violations; dotted verticals where the
    environment changed, annotated with what changed."""
    judged = analysis.judged[analysis.judged["metric"] == metric]
    flags = analysis.flags[analysis.flags["metric"] == metric]
    positions = np.arange(len(analysis.run_ids))
    fig = Figure(figsize=(9.0, 4.8), dpi=DPI, layout="constrained")
    ax = fig.add_subplot()
    keys = list(dict.fromkeys(judged["key"]))
    for colour, key in zip(_palette(len(keys)), keys):
        series = judged[judged["key"] == key].set_index("run_index").reindex(positions)
        ax.plot(positions, series["value"], "-o", color=colour, markersize=3.5, linewidth=1.4,
                label=_text(key))
        starts, continued = _regression_runs(analysis, flags[flags["key"] == key])
        violations = series[series["violates"].fillna(False).astype(bool)]
        for runs, style in ((continued, {"markerfacecolor": "none", "markeredgecolor": REGRESSION}),
                            (starts, {"color": REGRESSION, "zorder": 5})):
            marked = violations[violations.index.isin(runs)]
            ax.plot(marked.index, marked["value"], "o", markersize=9, linestyle="none", **style)
        suspect = violations[~violations.index.isin(starts | continued)]
        ax.plot(suspect.index, suspect["value"], "o", markersize=9, markerfacecolor="none",
                markeredgecolor=colour, markeredgewidth=1.6, linestyle="none")
    for change in analysis.changes.to_dict("records"):
        x = change["run_index"] - 0.5
        ax.axvline(x, color=CHANGE, linestyle=":", linewidth=1)
        ax.text(x, 0.98, _text(change["changes"]), transform=ax.get_xaxis_transform(), rotation=90,
                ha="right", va="top", fontsize=7, color=CHANGE)
    _run_axis(ax, analysis)
    ax.yaxis.set_major_formatter(FuncFormatter(lambda value, _: format_value(metric, value)))
    ax.set_ylabel(metric)
    rule = analysis.rules[metric]
    ax.set_title(_text(f"{metric} over {len(positions)} runs of {analysis.scenario} "
                       f"({rule.better} is better, threshold {rule.threshold:.0%})"), fontsize=10)
    handles, labels = ax.get_legend_handles_labels()
    handles += [Line2D([], [], marker="o", color=REGRESSION, linestyle="none", markersize=8),
                Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor=REGRESSION,
                       linestyle="none", markersize=8),
                Line2D([], [], marker="o", markerfacecolor="none", markeredgecolor=CHANGE,
                       linestyle="none", markersize=8),
                Line2D([], [], color=CHANGE, linestyle=":")]
    labels += [f"regression ({analysis.consecutive}+ runs in a row): first run",
               "regression: later runs of the streak", "suspect violation", "environment change"]
    ax.legend(handles, labels, fontsize=7, loc="upper left", bbox_to_anchor=(1.01, 1.0))
    return _png(fig)


def _regression_runs(analysis: HistoryAnalysis, flags: pd.DataFrame) -> tuple[set[int], set[int]]:
    """Run positions of one key's regression streaks: their first runs, and the rest."""
    starts: set[int] = set()
    continued: set[int] = set()
    for flag in flags[flags["kind"] == "regression"].to_dict("records"):
        first, last = analysis.run_ids.index(flag["run_id"]), analysis.run_ids.index(flag["last_run_id"])
        starts.add(first)
        continued.update(range(first + 1, last + 1))
    return starts, continued


def _run_axis(ax, analysis: HistoryAnalysis) -> None:
    dates = analysis.run_dates
    every = max(1, -(-len(dates) // MAX_TICK_LABELS))  # at most MAX_TICK_LABELS labels
    ticks = list(range(0, len(dates), every))
    ax.set_xticks(ticks, [run_date(dates[t])[5:] for t in ticks], rotation=45, ha="right",
                  fontsize=8)
    ax.set_xlim(-0.6, max(len(dates) - 0.4, 0.6))
    ax.set_xlabel("run (month-day hour:minute)")
    ax.grid(axis="y", alpha=0.3)


# -- documents ---------------------------------------------------------------------------
def summary(analysis: HistoryAnalysis) -> str:
    kinds = analysis.flags["kind"].value_counts()
    ongoing = len(analysis.ongoing_regressions())
    text = (f"{kinds.get('regression', 0)} regression(s), {ongoing} still at the latest run; "
            f"{kinds.get('suspect', 0)} suspect(s)")
    if kinds.get("inconclusive", 0):
        text += f"; {kinds['inconclusive']} inconclusive (machine busy)"
    return text


def policy(analysis: HistoryAnalysis) -> str:
    return (f"Each run is compared with the median of the previous {analysis.window} runs of the "
            f"same trial; it violates when it is worse by more than the larger of the metric's "
            f"threshold and {analysis.noise_k:g} × the series' run-to-run noise (1.4826 × the "
            f"median absolute deviation of the earlier runs' log deviations from their "
            f"references; the threshold alone until {MIN_NOISE_RUNS} such deviations exist). A "
            f"regression is {analysis.consecutive} or more consecutive violating runs, reported at "
            "its first run, once the noise is known; fewer, or a streak that starts before the "
            "noise is known, are suspect. Trials measured on a busy machine are left out; a run "
            "with none left is passed over.")


def facts(analysis: HistoryAnalysis) -> list[tuple[str, str]]:
    dates = analysis.run_dates
    span = f"{run_date(dates[0])} to {run_date(dates[-1])}" if dates else units.DASH
    return [("scenario", analysis.scenario), ("runs", f"{len(analysis.run_ids)} ({span})"),
            ("latest run", analysis.run_ids[-1] if analysis.run_ids else units.DASH),
            ("thresholds", ", ".join(f"{m} {r.threshold:.0%}" for m, r in analysis.rules.items())),
            ("verdict", summary(analysis))]


def history_markdown(analysis: HistoryAnalysis, figure_files: dict[str, str]) -> str:
    out = [f"# History: {escape_markdown(analysis.scenario)}", ""]
    out += [f"- **{key}**: {escape_markdown(value)}" for key, value in facts(analysis)] + [""]
    out += ["## Regressions and suspects", "", f"*{escape_markdown(policy(analysis))}*", ""]
    out += [table_markdown(flags_table(analysis)) if len(analysis.flags) else "None.", ""]
    out += ["## Environment changes", ""]
    out += [table_markdown(changes_table(analysis)) if len(analysis.changes) else "None.", ""]
    out += ["## Run-to-run variation", "", table_markdown(variance_table(analysis)), ""]
    out += ["## Figures", ""]
    out += [f"![{escape_markdown(metric)} over runs]({name})\n" for metric, name in figure_files.items()]
    return "\n".join(out)


_ENV = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                   finalize=printable_if_text)
_TEMPLATE = _ENV.from_string("""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>History: {{ scenario }}</title>
<style>
body { font: 15px/1.5 system-ui, sans-serif; color: #1f2328; margin: 0 auto; padding: 1rem; max-width: 72rem; }
h2 { border-bottom: 1px solid #d1d9e0; margin-top: 2rem; }
table { border-collapse: collapse; font-size: 0.88rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid #d1d9e0; padding: 0.3rem 0.55rem; text-align: left; vertical-align: top; }
th { background: #f6f8fa; } td.num { text-align: right; white-space: nowrap; }
tr.regression td { color: #b42318; font-weight: 600; } tr.suspect td { color: #9a6700; }
.scroll { overflow-x: auto; } .note { color: #59636e; font-size: 0.88rem; }
img { max-width: 100%; height: auto; border: 1px solid #d1d9e0; }
</style></head><body>
{% macro table(t) %}<div class="scroll"><table><thead><tr>
{% for h in t.headers %}<th>{{ h }}</th>{% endfor %}</tr></thead><tbody>
{% for row in t.rows %}<tr class="{{ t.row_classes[loop.index0] }}">
{% for cell in row %}<td{% if t.numeric[loop.index0] %} class="num"{% endif %}>{{ cell }}</td>{% endfor %}
</tr>{% endfor %}</tbody></table></div>{% endmacro %}
<h1>History: {{ scenario }}</h1>
<dl>{% for key, value in facts %}<dt><b>{{ key }}</b></dt><dd>{{ value }}</dd>{% endfor %}</dl>
<h2>Regressions and suspects</h2><p class="note">{{ policy }}</p>
{% if flags.rows %}{{ table(flags) }}{% else %}<p>None.</p>{% endif %}
<h2>Environment changes</h2>
{% if changes.rows %}{{ table(changes) }}{% else %}<p>None.</p>{% endif %}
<h2>Run-to-run variation</h2>
<p class="note">CV: sample standard deviation over the mean of the per-run medians;
MAD/median: median absolute deviation over the median, robust to one bad night; noise: 1.4826 ×
the median absolute deviation of each run's log deviation from its window median (about one
standard deviation of a run); flagged past: the change a run must pass to violate.</p>
{{ table(variance) }}
<h2>Figures</h2>
{% for metric, data in figures %}<figure><img alt="{{ metric }} over runs"
 src="data:image/png;base64,{{ data }}"></figure>{% endfor %}
</body></html>
""")


def history_html(analysis: HistoryAnalysis, figures: dict[str, bytes]) -> str:
    embedded = [(metric, base64.b64encode(png).decode("ascii")) for metric, png in figures.items()]
    return _TEMPLATE.render(scenario=analysis.scenario, facts=facts(analysis), policy=policy(analysis),
                            flags=flags_table(analysis), changes=changes_table(analysis),
                            variance=variance_table(analysis), figures=embedded)


def write_history(analysis: HistoryAnalysis, out: Path) -> tuple[Path, Path]:
    """DIR/index.html, DIR/history.md and DIR/history-<metric>.png for each metric with data."""
    metrics = [m for m in analysis.rules if (analysis.history["metric"] == m).any()]
    figures = {metric: history_png(analysis, metric) for metric in metrics}
    files = {metric: f"history-{metric}.png" for metric in metrics}
    for metric, png in figures.items():
        write_file(out / files[metric], png)
    markdown = write_file(out / "history.md", history_markdown(analysis, files))
    html = write_file(out / "index.html", history_html(analysis, figures))
    return html, markdown
