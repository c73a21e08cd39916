"""User text (names, descriptions, matrix values, claims, a failure's reason) shown to people:
control characters stripped everywhere, and never read as markup by rich."""

from __future__ import annotations

import re

from rich.text import Text

# C0 and C1 control characters but tab and newline: an ESC sequence in a trial name would
# drive the terminal (clear it, retitle it), NUL and friends are not allowed in HTML or XML
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def printable(text: object) -> str:
    """`text` as a string without control characters (tab and newline kept)."""
    return _CONTROL.sub("", str(text))


def rich_text(text: object, style: str = "") -> Text:
    """A rich Text of user text: shown as written, never parsed as markup ('a[/x]:b')."""
    return Text(printable(text), style=style)


def printable_if_text(value: object) -> object:
    """A jinja2 `finalize`: every {{ expression }} that is a plain string loses its control
    characters (NUL and ESC are not allowed in HTML); Markup the template built is kept."""
    return printable(value) if type(value) is str else value
