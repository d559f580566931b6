"""Every page of the table of contents, opened in headless Chromium (issue 6).

One test per page of ``_toc.yml``: the list is read when the tests are collected, so a chapter added
to the book is checked without touching this file. What is checked is listed in sitecheck.py.
"""
import pathlib
import re
import urllib.request

import pytest

import sitecheck

pytestmark = pytest.mark.browser

ROOT = pathlib.Path(__file__).resolve().parents[2]

DOCNAMES = sitecheck.BookConfig.read(ROOT).docnames


@pytest.mark.parametrize("docname", DOCNAMES)
def test_page_reads_as_intended(docname, checker):
    report = checker.check(docname)
    assert report.screenshots, "a screenshot of every page"
    assert not report.problems, f"{docname}.html:\n  " + "\n  ".join(report.problems)


def test_published_pages_keep_the_cdn_and_the_test_serves_a_local_copy(site, server):
    """The rewrite to the local MathJax happens in the test's server only, never on disk."""
    pages_with_math = [p for p in site.glob("book/**/*.html") if 'class="math' in p.read_text()]
    assert pages_with_math, "the book has formulas"
    for page in pages_with_math:
        on_disk = page.read_text()
        assert sitecheck.MATHJAX_CDN.search(on_disk), f"{page.name}: MathJax is not the CDN copy"
        with urllib.request.urlopen(server.url(str(page.relative_to(site)))) as response:
            served = response.read().decode()
        assert not sitecheck.MATHJAX_CDN.search(served)
        local = re.search(r'src="(/__local_mathjax__/[^"]+)"', served).group(1)
        with urllib.request.urlopen(server.url(local)) as response:
            assert response.status == 200 and b"MathJax" in response.read(200_000)


def test_toc_reader_finds_nested_sections():
    toc = {"root": "book/intro", "parts": [{"chapters": [
        {"file": "book/a.ipynb", "sections": [{"file": "book/a1"}]}, {"file": "book/b.md"}]}]}
    assert list(sitecheck._toc_files(toc)) == ["book/intro", "book/a", "book/a1", "book/b"]
