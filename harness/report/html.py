"""The report as one self-contained HTML page (jinja2, autoescape on)."""

from __future__ import annotations

import base64
from dataclasses import dataclass

from jinja2 import Environment, StrictUndefined
from markupsafe import Markup

from harness.report.content import ReportContent
from harness.report.html_template import STYLE, TABLE_MACRO, TEMPLATE
from harness.text import printable_if_text

# autoescape=True for every expression: names, reasons and params come from users' files
_ENV = Environment(autoescape=True, undefined=StrictUndefined, trim_blocks=True,
                   lstrip_blocks=True, finalize=printable_if_text)
_TEMPLATE = _ENV.from_string(TABLE_MACRO + TEMPLATE)


@dataclass(frozen=True)
class _EmbeddedFigure:
    title: str
    how_measured: str
    base64: str


def render_html(content: ReportContent) -> str:
    embedded = [_EmbeddedFigure(f.title, f.how_measured, base64.b64encode(f.png).decode("ascii"))
                for f in content.figures]
    # STYLE is our own constant, marked safe: escaped quotes would break the CSS
    return _TEMPLATE.render(c=content, figures=embedded, style=Markup(STYLE))
