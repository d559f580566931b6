"""Horizontal overflow in the built book: what a reader must scroll sideways to see.

:func:`overflowing` lists, on the page a selenium driver has open, the elements wider than their
box (``scrollWidth > clientWidth + 1``), by kind:

- ``code``: code blocks (``div.highlight pre`` outside cell outputs);
- ``output``: cell outputs shown as text (``div.cell_output pre``, ``.output pre``);
- ``math``: display math (``mjx-container[display="true"]`` or its parent), once per formula;
- ``table``: tables and their wrappers (e.g. ``div.pst-scrollable-table-container``), or a table
  wider than the content column;
- ``figure``: images wider than the content column.

Exercise solutions folded in a dropdown are unfolded first (a reader opens them); cells hidden by
``hide-input``/``hide-output`` toggles stay folded, as tools/reader_view.py counts them hidden.

Script mode, on an existing build (it builds nothing; ``make html`` does, and ``make browser``
installs Chromium and the local MathJax)::

    .venv/bin/python tests/browser/overflow.py            # counts per page and kind, 1280 and 768
    .venv/bin/python tests/browser/overflow.py --list     # and every overflowing element

The paths are those of conftest.py (BOOK_HTML, BOOK_MATHJAX, CHROMIUM, CHROMEDRIVER).
"""
from __future__ import annotations

import argparse
import os
import pathlib
import shutil
import sys
import urllib.parse
from typing import NamedTuple

HERE = pathlib.Path(__file__).resolve().parent
if str(HERE) not in sys.path:   # script mode; pytest puts this folder on the path itself
    sys.path.insert(0, str(HERE))
import sitecheck  # noqa: E402

KINDS = ("code", "output", "math", "table", "figure")
WIDTHS = (1280, 768)


class Overflow(NamedTuple):
    page: str     # the page's path in the site, e.g. "book/11_odenet_mnist.html"
    kind: str     # one of KINDS
    text: str     # the element's first 60 characters of text (an image: its alt text or file)
    scroll_width: int
    client_width: int   # for a figure or a too-wide table: the content column's width


OVERFLOW_JS = r"""
const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
// unfold the dropdown admonitions (exercise solutions) of sphinx-togglebutton, not hide-* cells
article.querySelectorAll(".admonition.toggle-hidden").forEach(box => box.classList.remove("toggle-hidden"));
article.querySelectorAll(".toggle-button-hidden").forEach(b => b.classList.remove("toggle-button-hidden"));
const column = article.clientWidth;
const wide = el => el.clientWidth > 0 && el.scrollWidth > el.clientWidth + 1;
const text = el => (el.textContent || "").replace(/\s+/g, " ").trim().slice(0, 60);
const out = [];
const seen = new Set();
const add = (kind, el, shown, scroll, client) => {
  if (seen.has(el)) return;
  seen.add(el);
  out.push({kind: kind, text: shown, scroll: Math.round(scroll), client: Math.round(client)});
};
article.querySelectorAll("div.highlight pre, div.cell_output pre, .output pre").forEach(pre => {
  if (wide(pre)) add(pre.closest(".cell_output, .output") ? "output" : "code", pre, text(pre),
                     pre.scrollWidth, pre.clientWidth);
});
// a formula is named by its TeX, which MathJax keeps beside its output
const items = (window.MathJax && MathJax.startup && MathJax.startup.document) ?
  Array.from(MathJax.startup.document.math) : [];
const tex = mjx => {
  const item = items.find(m => m.typesetRoot === mjx);
  return item ? String(item.math).replace(/\s+/g, " ").trim().slice(0, 60) : text(mjx);
};
article.querySelectorAll('mjx-container[display="true"]').forEach(mjx => {
  const box = [mjx, mjx.parentElement].find(wide);
  if (box) add("math", mjx, tex(mjx), box.scrollWidth, box.clientWidth);
});
article.querySelectorAll("table").forEach(table => {
  const boxes = [table, table.parentElement, table.closest(".pst-scrollable-table-container, .output, .cell_output")];
  const box = boxes.find(b => b && wide(b));
  const width = table.getBoundingClientRect().width;
  if (box) add("table", table, text(table), box.scrollWidth, box.clientWidth);
  else if (width > column + 1) add("table", table, text(table), width, column);
});
article.querySelectorAll("img").forEach(img => {
  const width = img.getBoundingClientRect().width;
  if (width > column + 1 || wide(img))
    add("figure", img, (img.alt || img.getAttribute("src") || "").slice(0, 60), width, column);
});
return out;
"""


def overflowing(driver, page: str | None = None) -> list[Overflow]:
    """The elements of the open page that overflow horizontally (see the module's docstring).

    ``page`` names the page in the result (default: the path of the driver's current URL).
    The page should be loaded and typeset first (:func:`sitecheck.open_page`).
    """
    if page is None:
        page = urllib.parse.urlsplit(driver.current_url).path.lstrip("/")
    return [Overflow(page, item["kind"], item["text"], item["scroll"], item["client"])
            for item in driver.execute_script(OVERFLOW_JS)]


def count_by_kind(found: list[Overflow]) -> dict[str, int]:
    return {kind: sum(1 for f in found if f.kind == kind) for kind in KINDS}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Count horizontally overflowing elements per page "
                                                 "of the built book (it builds nothing).")
    parser.add_argument("--list", action="store_true", help="also list every overflowing element")
    parser.add_argument("--widths", default=",".join(map(str, WIDTHS)),
                        help="window widths in pixels (default: %(default)s)")
    args = parser.parse_args(argv)
    widths = [int(w) for w in args.widths.split(",")]

    root = HERE.parents[1]
    site = pathlib.Path(os.environ.get("BOOK_HTML", root / "_build" / "html"))
    mathjax = pathlib.Path(os.environ.get("BOOK_MATHJAX", root / ".venv" / "npm" / "node_modules" / "mathjax"))
    if not (site / "index.html").is_file():
        parser.error(f"no built book at {site}: run `make html` first")
    if not (mathjax / "es5" / "tex-mml-chtml.js").is_file():
        parser.error(f"no local MathJax 3 at {mathjax}: `make browser` installs it")
    docnames = sitecheck.BookConfig.read(root).docnames

    profile = sitecheck.fresh_profile_dir()
    driver = sitecheck.start_chromium(chromium=os.environ.get("CHROMIUM", "/usr/bin/chromium"),
                                      chromedriver=os.environ.get("CHROMEDRIVER", "/usr/bin/chromedriver"),
                                      profile_dir=profile)
    rows, listed = [], []
    try:
        with sitecheck.SiteServer(site, mathjax) as server:
            for width in widths:
                for docname in docnames:
                    state = sitecheck.open_page(driver, server, docname, width=width)
                    found = overflowing(driver, f"{docname}.html")
                    rows.append((docname, width, count_by_kind(found), state))
                    listed += [(width, f) for f in found]
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)

    name_width = max(len(d) for d in docnames) + 2
    header = f"{'page':{name_width}s}{'width':>6s}" + "".join(f"{k:>8s}" for k in KINDS)
    print(header)
    print("-" * len(header))
    for docname, width, counts, state in rows:
        note = "" if state in ("typeset", "absent") else f"   (MathJax: {state})"
        print(f"{docname:{name_width}s}{width:6d}" + "".join(f"{counts[k]:8d}" for k in KINDS) + note)
    print("-" * len(header))
    for width in widths:
        totals = [sum(r[2][k] for r in rows if r[1] == width) for k in KINDS]
        print(f"{'total':{name_width}s}{width:6d}" + "".join(f"{t:8d}" for t in totals))
    if args.list:
        for width, f in listed:
            print(f"{width} {f.page} {f.kind} ({f.scroll_width} > {f.client_width} px): {f.text}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
