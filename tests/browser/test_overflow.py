"""Nothing a reader must scroll sideways to see (issue 19): on every page, at a 1280 px window no code
block, output, display equation, table or figure is wider than its box; at 768 px (a tablet) code
may scroll, but equations, tables and figures still fit."""
import pathlib

import pytest

import overflow
import sitecheck

pytestmark = pytest.mark.browser

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCNAMES = sitecheck.BookConfig.read(ROOT).docnames
KINDS = {1280: overflow.KINDS, 768: ("math", "table", "figure")}


@pytest.fixture
def restore_width(driver):
    size = driver.get_window_size()
    yield
    driver.set_window_size(size["width"], size["height"])


@pytest.mark.parametrize("width", sorted(KINDS, reverse=True))
@pytest.mark.parametrize("docname", DOCNAMES)
def test_nothing_overflows_horizontally(docname, width, driver, server, restore_width):
    state = sitecheck.open_page(driver, server, docname, width=width)
    assert state in ("typeset", "absent"), f"{docname}: MathJax {state}"
    found = [f for f in overflow.overflowing(driver, f"{docname}.html") if f.kind in KINDS[width]]
    assert not found, "\n".join(f"{f.kind}: {f.text!r} ({f.scroll_width} px in {f.client_width} px)"
                                for f in found)
