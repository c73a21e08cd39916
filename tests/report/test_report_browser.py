"""The HTML report as a reader sees it: rendered in headless Chromium at a desktop and a phone
width. The static tests in test_report_html.py read the markup; only a browser can say that the
figures decode, that no script runs, that nothing is fetched and that the page does not scroll
sideways on a phone. Skips when playwright or a Chromium binary is missing."""

from __future__ import annotations

import os
import shutil
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from report_fixture_store import EVIL

try:
    from playwright import sync_api
except ImportError as error:  # absent, or installed without its driver: either way no browser
    pytest.skip(f"playwright is not importable ({error}); pip install 'harness[test]'",
                allow_module_level=True)

CHROMIUM_NAMES = ("chromium", "chromium-browser", "google-chrome")
VIEWPORTS = {"desktop": (1280, 900), "phone": (390, 844)}
# data: for the embedded figures; file: for the page itself. Anything else needs a network.
OFFLINE_SCHEMES = ("file:", "data:")


def find_chromium() -> str | None:
    """HARNESS_CHROMIUM (a path or a command name) wins; otherwise the first Chromium on PATH."""
    named = os.environ.get("HARNESS_CHROMIUM")
    for candidate in ((named,) if named else CHROMIUM_NAMES):
        found = shutil.which(candidate)
        if found:
            return found
    return None


@dataclass
class LoadedPage:
    """One page of the report, opened at one viewport, with everything it did while loading."""

    page: sync_api.Page
    width: int
    height: int
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    requested_urls: list[str] = field(default_factory=list)


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    executable = find_chromium()
    if executable is None:
        named = os.environ.get("HARNESS_CHROMIUM")
        pytest.skip(f"no Chromium binary: HARNESS_CHROMIUM={named!r} is not an executable" if named
                    else f"no Chromium binary: none of {', '.join(CHROMIUM_NAMES)} on PATH "
                         "(set HARNESS_CHROMIUM to one)")
    with sync_api.sync_playwright() as playwright:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        browser = playwright.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield browser
        browser.close()


def _dismiss(dialog: sync_api.Dialog, seen: list[str]) -> None:
    seen.append(f"{dialog.type}: {dialog.message}")
    dialog.dismiss()  # an undismissed dialog would block the page and hang the test


@pytest.fixture(scope="module", params=sorted(VIEWPORTS))
def loaded(request: pytest.FixtureRequest, browser: sync_api.Browser,
           written_report: tuple[Path, Path]) -> Iterator[LoadedPage]:
    width, height = VIEWPORTS[request.param]
    page = browser.new_page(viewport={"width": width, "height": height})
    loaded = LoadedPage(page=page, width=width, height=height)
    # listeners before goto, so nothing that happens while loading is missed
    page.on("console",
            lambda message: message.type == "error" and loaded.console_errors.append(message.text))
    page.on("pageerror", lambda error: loaded.page_errors.append(str(error)))
    page.on("dialog", lambda dialog: _dismiss(dialog, loaded.dialogs))
    page.on("request", lambda req: loaded.requested_urls.append(req.url))
    page.goto(written_report[0].resolve().as_uri(), wait_until="load")
    yield loaded
    page.close()


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) from a PNG's IHDR chunk, which the format puts first, at byte 16."""
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and data[12:16] == b"IHDR"
    return struct.unpack(">II", data[16:24])


def test_page_loads_without_errors(loaded: LoadedPage):
    assert loaded.console_errors == []
    assert loaded.page_errors == []


def test_every_figure_is_an_image_that_decoded(loaded: LoadedPage,
                                               written_report: tuple[Path, Path]):
    images = loaded.page.evaluate(
        "Array.from(document.images, i => ({complete: i.complete, width: i.naturalWidth}))")
    figures = loaded.page.locator("figure").count()
    png_files = sorted(written_report[1].parent.glob("*.png"))
    assert figures == len(png_files) > 0
    assert len(images) == figures
    assert all(image["complete"] and image["width"] > 0 for image in images), images


def test_a_hostile_trial_name_is_shown_not_run(loaded: LoadedPage):
    assert loaded.dialogs == []
    assert loaded.page.locator("script").count() == 0
    assert EVIL in loaded.page.inner_text("body")


def test_page_fetches_nothing_from_the_network(loaded: LoadedPage):
    assert loaded.requested_urls, "the page's own file: request should have been seen"
    assert [url for url in loaded.requested_urls if not url.startswith(OFFLINE_SCHEMES)] == []


def test_page_does_not_scroll_sideways(loaded: LoadedPage):
    # wide tables scroll inside their own .scroll wrapper; the page itself must fit the screen
    scroll_width = loaded.page.evaluate("document.scrollingElement.scrollWidth")
    inner_width = loaded.page.evaluate("window.innerWidth")
    assert inner_width == loaded.width
    assert scroll_width <= inner_width + 1


def test_full_page_screenshot_is_as_wide_as_the_viewport(loaded: LoadedPage, tmp_path: Path):
    shot = tmp_path / f"report-{loaded.width}.png"
    loaded.page.screenshot(path=str(shot), full_page=True)
    width, height = png_size(shot.read_bytes())
    assert width == loaded.width
    assert height >= loaded.height  # the whole report, not only the first screen
