"""The HTML page is self-contained and readable on a narrow screen."""

from __future__ import annotations

import base64
import re
from html.parser import HTMLParser


class _Resources(HTMLParser):
    """Collects every src/href and the tags that could fetch something."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self.images: list[str] = []
        self.tags: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for key, value in attrs:
            if key in ("src", "href") and value is not None:
                self.urls.append(value)
                if tag == "img":
                    self.images.append(value)


def _parse(html_path) -> _Resources:
    parser = _Resources()
    parser.feed(html_path.read_text())
    return parser


def test_html_fetches_nothing_from_the_network(written_report):
    html_path, _ = written_report
    page = _parse(html_path)
    assert not [url for url in page.urls if re.match(r"\s*(https?:)?//", url)]
    assert not {"script", "link", "iframe"} & set(page.tags)
    assert "@import" not in html_path.read_text()


def test_html_embeds_one_png_per_figure(written_report):
    html_path, _ = written_report
    images = _parse(html_path).images
    assert len(images) == 5
    for src in images:
        assert src.startswith("data:image/png;base64,")
        assert base64.b64decode(src.split(",", 1)[1]).startswith(b"\x89PNG")


def test_html_tables_scroll_sideways_on_a_narrow_screen(written_report):
    html = written_report[0].read_text()
    assert 'name="viewport"' in html
    assert "overflow-x: auto" in html
    tables, wrapped = html.count("<table>"), html.count('<div class="scroll"><table>')
    assert tables >= 3 and wrapped == tables


def test_html_css_quotes_are_not_entity_escaped(written_report):
    style = re.search(r"<style>(.*?)</style>", written_report[0].read_text(), re.S).group(1)
    assert '"Segoe UI"' in style and "&#34;" not in style


def test_html_marks_the_baseline_rows_and_failed_statuses(written_report):
    html = written_report[0].read_text()
    # 3 repeats in the trial, compute and memory tables, and the combination row
    assert html.count('<tr class="status-ok baseline">') == 3 * 3 + 1
    assert 'class="status-failed"' in html and 'class="status-skipped"' in html
