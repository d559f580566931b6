"""Fixtures of the browser test: the built site served on localhost, one headless Chromium.

These tests carry the ``browser`` marker, which ``pytest tests`` (``make unit``) deselects
(pyproject.toml's addopts): they need the HTML that ``make html`` builds after the unit tests.
``make browser`` runs them (``pytest tests/browser -m browser``) and installs what they need.
Paths can be changed with environment variables: BOOK_HTML (the built site), BOOK_MATHJAX (the
``mathjax`` npm package folder), BOOK_SCREENSHOTS, CHROMIUM, CHROMEDRIVER.
"""
import os
import pathlib
import shutil

import pytest

import sitecheck

ROOT = pathlib.Path(__file__).resolve().parents[2]
SITE = pathlib.Path(os.environ.get("BOOK_HTML", ROOT / "_build" / "html"))
MATHJAX = pathlib.Path(os.environ.get("BOOK_MATHJAX", ROOT / ".venv" / "npm" / "node_modules" / "mathjax"))
SCREENSHOTS = pathlib.Path(os.environ.get("BOOK_SCREENSHOTS", ROOT / "_build" / "screenshots"))
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver")
_SHOTS_TAKEN = []   # set when this session wrote screenshots (for the closing line)


@pytest.fixture(scope="session")
def book_config() -> sitecheck.BookConfig:
    return sitecheck.BookConfig.read(ROOT)


@pytest.fixture(scope="session")
def site() -> pathlib.Path:
    if not (SITE / "index.html").is_file():
        pytest.fail(f"no built book at {SITE}: run `make html` first (`make test` does)")
    return SITE


@pytest.fixture(scope="session")
def mathjax_dir() -> pathlib.Path:
    if not (MATHJAX / "es5" / "tex-mml-chtml.js").is_file():
        pytest.fail(f"no local MathJax 3 at {MATHJAX}: `make browser` installs the npm package")
    return MATHJAX


@pytest.fixture(scope="session")
def driver():
    profile = sitecheck.fresh_profile_dir()
    browser = sitecheck.start_chromium(chromium=CHROMIUM, chromedriver=CHROMEDRIVER, profile_dir=profile)
    yield browser
    browser.quit()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture(scope="session")
def server(site, mathjax_dir):
    with sitecheck.SiteServer(site, mathjax_dir) as running:
        yield running


@pytest.fixture(scope="session")
def screenshot_dir() -> pathlib.Path:
    shutil.rmtree(SCREENSHOTS, ignore_errors=True)   # no pictures of pages that no longer exist
    SCREENSHOTS.mkdir(parents=True)
    _SHOTS_TAKEN.append(SCREENSHOTS)
    return SCREENSHOTS


@pytest.fixture(scope="session")
def checker(driver, server, book_config, screenshot_dir) -> sitecheck.PageChecker:
    return sitecheck.PageChecker(driver, server, book_config, ROOT, screenshot_dir=screenshot_dir)


def pytest_terminal_summary(terminalreporter, exitstatus, config):
    if _SHOTS_TAKEN:
        count = len(list(SCREENSHOTS.glob("*.png")))
        terminalreporter.write_line(f"browser test: {count} screenshots of the book in {SCREENSHOTS}")
