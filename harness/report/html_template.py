"""The HTML report's jinja2 template and stylesheet, kept as Python strings so the package
needs no data files. The page is self-contained: CSS inline, figures as data: URIs, no URL
fetched, so it opens offline and survives being mailed or attached to a CI run."""

STYLE = """
:root { --fg: #1f2328; --muted: #59636e; --line: #d1d9e0; --soft: #f6f8fa;
        --base: #fff4e5; --bad: #b42318; --skip: #7a5b00; }
* { box-sizing: border-box; }
body { font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg);
       margin: 0 auto; padding: 1rem; max-width: 72rem; }
h1 { font-size: 1.6rem; margin: 0.2rem 0 0.6rem; overflow-wrap: anywhere; }
h2 { font-size: 1.25rem; margin-top: 2rem; border-bottom: 1px solid var(--line); }
h3 { font-size: 1.05rem; margin-bottom: 0.3rem; }
.description { color: var(--muted); margin-top: 0; }
dl.facts { display: grid; grid-template-columns: max-content 1fr; gap: 0.15rem 1rem; margin: 0; }
dl.facts dt { font-weight: 600; }
dl.facts dd { margin: 0; overflow-wrap: anywhere; }
.scroll { overflow-x: auto; -webkit-overflow-scrolling: touch; max-width: 100%; }
table { border-collapse: collapse; font-size: 0.88rem; font-variant-numeric: tabular-nums; }
th, td { border: 1px solid var(--line); padding: 0.3rem 0.55rem; text-align: left;
         vertical-align: top; }
th { background: var(--soft); white-space: nowrap; }
/* on a phone a long header would hold its column wider than the screen, hiding its cells */
@media (max-width: 40rem) { th { white-space: normal; } }
td.num { text-align: right; white-space: nowrap; }
tr.baseline td { background: var(--base); }
tr.baseline td:first-child::after { content: " baseline"; font-size: 0.75rem; font-weight: 600;
                                    color: #a34a00; }
tr.status-failed td, tr.status-oom td, tr.status-timeout td, tr.status-diverged td { color: var(--bad); }
tr.status-skipped td { color: var(--skip); }
tr[class^="verdict-"] td:nth-child(2) { font-weight: 600; white-space: nowrap; }
tr.verdict-confirmed td:nth-child(2) { color: #1a7f37; }
tr.verdict-partly td:nth-child(2) { color: #9a6700; }
tr.verdict-refuted td:nth-child(2) { color: var(--bad); }
tr.verdict-inconclusive td:nth-child(2) { color: #8250df; }
tr.verdict-not-testable-here td:nth-child(2), tr.verdict-unsourced td:nth-child(2) { color: var(--muted); }
figure { margin: 1rem 0 1.5rem; }
figure img { max-width: 100%; height: auto; border: 1px solid var(--line); }
figcaption, .note { color: var(--muted); font-size: 0.88rem; }
.warning { background: #fff1f0; border-left: 4px solid var(--bad); padding: 0.4rem 0.7rem;
           overflow-wrap: anywhere; }
pre { background: var(--soft); padding: 0.5rem; overflow-x: auto; font-size: 0.8rem; }
code { font-size: 0.85em; }
"""

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Benchmark report: {{ c.scenario }}</title>
<style>{{ style }}</style>
</head>
<body>
<header>
<h1>Benchmark report: {{ c.scenario }}</h1>
{% if c.description %}<p class="description">{{ c.description }}</p>{% endif %}
<dl class="facts">
{% for key, value in c.facts %}<dt>{{ key }}</dt><dd>{{ value }}</dd>
{% endfor %}</dl>
{% for line in c.warnings %}<p class="warning"><strong>WARNING:</strong> {{ line }}</p>
{% endfor %}
</header>

<h2>Summary</h2>
<dl class="facts">
{% for what, answer in c.summary %}<dt>{{ what }}</dt><dd>{{ answer }}</dd>
{% endfor %}</dl>
{% if c.claims %}
<h3>Claims this run bears on: {{ c.verdict_counts }}</h3>
{{ table(c.claims) }}
<p class="note">{{ c.claims_note }}</p>
{% endif %}

{% if c.setup %}
<h2>Setup</h2>
<dl class="facts">
{% for key, value in c.setup %}<dt>{{ key }}</dt><dd>{{ value }}</dd>
{% endfor %}</dl>
{% endif %}

<h2>Trials</h2>
{{ table(c.trials) }}
{% if c.baseline_name %}<p class="note">Ratios are against the baseline
<strong>{{ c.baseline_name }}</strong> (median over its ok repeats).</p>{% endif %}
<p class="note">{{ c.dash_meaning }}</p>
{% if c.unmeasured %}
<p class="note">Not measured, or measured with a caveat:</p>
<ul class="note">
{% for metric, reason, which in c.unmeasured %}<li><code>{{ metric }}</code>: {{ reason }} ({{ which }})</li>
{% endfor %}</ul>
{% endif %}
{% if c.unfinished %}
<p class="note">Trials that did not finish:</p>
<ul class="note">
{% for t in c.unfinished %}<li>{{ t.name }}: <strong>{{ t.status }}</strong>: {{ t.reason }}
{% if t.traceback %}<details><summary>traceback</summary><pre>{{ t.traceback }}</pre></details>{% endif %}
</li>
{% endfor %}</ul>
{% endif %}

{% for title, how, t in c.analysis %}
<h2>{{ title }}</h2>
{{ table(t) }}
<p class="note">{{ how }}</p>
{% endfor %}

{% if c.combinations %}
<h2>Per combination (median over ok repeats)</h2>
{{ table(c.combinations) }}
{% endif %}

{% for title, how, t in c.accounting %}
<h2>{{ title }}</h2>
{{ table(t) }}
<p class="note">{{ how }}</p>
{% endfor %}

<h2>Figures</h2>
{% for f in figures %}
<figure>
<h3>{{ f.title }}</h3>
<img src="data:image/png;base64,{{ f.base64 }}" alt="{{ f.title }}">
<figcaption>{{ f.how_measured }}</figcaption>
</figure>
{% endfor %}

<h2>How each figure is measured</h2>
<ul>
{% for label, how in c.measurements %}<li><strong>{{ label }}</strong>: {{ how }}</li>
{% endfor %}</ul>

<h2>Environment</h2>
{{ table(c.environment) }}
</body>
</html>
"""

# Every table goes through this one macro, so every cell is autoescaped the same way.
TABLE_MACRO = """{% macro table(t) %}<div class="scroll"><table>
<thead><tr>{% for h in t.headers %}<th>{{ h }}</th>{% endfor %}</tr></thead>
<tbody>
{% for row in t.rows %}<tr{% if t.row_classes and t.row_classes[loop.index0] %} class="{{ t.row_classes[loop.index0] }}"{% endif %}>
{%- for cell in row %}<td{% if t.numeric and t.numeric[loop.index0] %} class="num"{% endif %}>{{ cell }}</td>{% endfor -%}
</tr>
{% endfor %}</tbody>
</table></div>{% endmacro %}
"""
