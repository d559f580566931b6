"""The browser check fails on a broken page: a copy of a real chapter page, broken on purpose.

The built site is copied to a temporary folder; one notebook page is copied within it to
``book/zz_broken.html`` and broken in every way the book must never ship (figure, formula,
cross-reference, theorem box, Colab link, script). The checker must name each problem, and must
find nothing wrong with the untouched page in the same copy.
"""
import pathlib
import re

import pytest

import sitecheck

pytestmark = pytest.mark.browser

ROOT = pathlib.Path(__file__).resolve().parents[2]

BROKEN = "book/zz_broken"

# What sphinx-proof 0.4 writes for numbered boxes and proofs, then broken where named.
INJECTED = r"""
<p>A figure whose file is gone: <img alt="gone" src="../_images/gone-figure.png" /></p>
<p>Raw display math the reader would see as text: $$ \int_0^1 f(t)\,dt $$ and inline $x^2$ too.</p>
<p>Broken TeX: an unclosed brace <span class="math notranslate nohighlight">\(\frac{1}{\)</span>,
a double exponent <span class="math notranslate nohighlight">\(x^{1}^{2}\)</span>
and an unknown command <span class="math notranslate nohighlight">\(\notacommand x\)</span>.</p>
<p>Links: <a class="reference internal" href="#equation-not-there">(99)</a>,
<a class="reference internal" href="no-such-chapter.html">a missing chapter</a>,
<a class="reference internal" href="intro.html#no-such-section">a missing section</a>,
an unresolved <code class="xref prf prf-ref docutils literal notranslate"><span class="pre">thm-missing</span></code>
and a <a class="reference internal" href="#">Theorem ???</a>.</p>
<div class="proof theorem admonition" id="thm-good">
<p class="admonition-title"><span class="caption-number">Theorem 9 </span> (Good)</p>
<section class="theorem-content" id="proof-content"><p>A sound body.</p></section></div>
<div class="proof theorem admonition" id="thm-unnumbered">
<p class="admonition-title">(Lost its number)</p>
<section class="theorem-content"><p>Body.</p></section></div>
<div class="proof lemma admonition" id="lem-empty">
<p class="admonition-title"><span class="caption-number">Lemma 9 </span></p>
<section class="lemma-content"></section></div>
<div class="proof admonition" id="proof-empty"><p>Proof. </p></div>
<script>notAFunctionOnThisPage();</script>
"""

# kind -> (the problem's opening, a piece of its text): each must be reported
EXPECTED = {
    "image": [("image: did not load", "../_images/gone-figure.png"),
              ("http: page:", "/_images/gone-figure.png answered 404")],
    "math": [("math: raw TeX left in the text", r"$$ \int_0^1 f(t)"),
             ("math: raw TeX left in the text", "inline $x^2$"),
             ("math: formula not typeset by MathJax", r"\frac{1}{"),
             ("math: MathJax error in x^{1}^{2}", "Double exponent"),
             ("math: undefined TeX command shown in red", r"\notacommand x")],
    "xref": [("link: anchor #equation-not-there not on this page", ""),
             ("link: no-such-chapter.html answers HTTP 404", ""),
             ("link: intro.html#no-such-section", "no anchor #no-such-section"),
             ("xref: unresolved cross-reference", "thm-missing"),
             ("xref: '???' in the text", "Theorem ???")],
    "proof": [("proof: theorem box 'thm-unnumbered' has no number", ""),
              ("proof: lemma box 'lem-empty' has an empty body", ""),
              ("proof: proof box 'proof-empty' has an empty body", "")],
    "colab": [("colab: launch link", "/blob/not-the-branch/")],
    "console": [("console: page:", "notAFunctionOnThisPage is not defined")],
    "search": [("search: searching", "does not find the page")],
}


def break_the_chapters_own_content(page: str) -> tuple[str, list[tuple[str, str]]]:
    """Break the chapter's first figure, first equation link and first display formula.

    Returns the page and what the checker must report for each breakage that the page allowed.
    """
    expected = []
    figure = re.search(r'<img alt="[^"]*" src="\.\./_images/([^"]+)"', page)
    if figure:
        page = page.replace(f'src="../_images/{figure[1]}"', f'src="../_images/gone-{figure[1]}"', 1)
        expected.append(("image: did not load", f"gone-{figure[1]}"))
    eqref = re.search(r'<a class="reference internal" href="#(equation-[^"]+)"', page)
    if eqref:
        page = page.replace(eqref[0], eqref[0].replace(eqref[1], "equation-renamed"), 1)
        expected.append(("link: anchor #equation-renamed not on this page", ""))
    display = re.search(r'<div class="math notranslate nohighlight"( id="[^"]*")?>\s*'
                        r'(?:<span class="eqno">.*?</span>)?\\\[(.*?)\\\]</div>', page, re.S)
    if display:   # what a `$$` block the parser missed looks like: a paragraph of raw TeX
        page = page.replace(display[0], f"<p{display[1] or ''}>$${display[2]}$$</p>", 1)
        expected.append(("math: raw TeX left in the text", " ".join(display[2].split())[:20]))
    return page, expected


@pytest.fixture(scope="module")
def broken_site(site, tmp_path_factory, book_config):
    notebooks = [d for d in book_config.docnames if (ROOT / f"{d}.ipynb").is_file()]
    if not notebooks:
        pytest.skip("the book has no notebook chapter yet")
    original = notebooks[0]
    copy = sitecheck.copy_site(site, tmp_path_factory.mktemp("site") / "html")
    page = (copy / f"{original}.html").read_text()
    page, own = break_the_chapters_own_content(page)
    article = page.index('<article class="bd-article">')
    heading = page.index("</h1>", article) + len("</h1>")
    page = page[:heading] + INJECTED + page[heading:]
    assert f"/blob/{book_config.branch}/" in page
    page = page.replace(f"/blob/{book_config.branch}/", "/blob/not-the-branch/")
    (copy / f"{BROKEN}.html").write_text(page)
    return copy, original, own


@pytest.fixture(scope="module")
def broken_checker(broken_site, driver, mathjax_dir, book_config):
    copy, original, _ = broken_site
    with sitecheck.SiteServer(copy, mathjax_dir) as server:
        yield sitecheck.PageChecker(driver, server, book_config, ROOT), original


def test_the_untouched_page_in_the_copy_passes(broken_checker):
    checker, original = broken_checker
    report = checker.check(original)
    assert not report.problems, report.problems


@pytest.fixture(scope="module")
def broken_report(broken_checker):
    checker, original = broken_checker
    # the broken page claims to be built from the original notebook: its Colab link is checked
    return checker.check(BROKEN, source=f"{original}.ipynb")


@pytest.mark.parametrize("kind", sorted(EXPECTED))
def test_the_broken_page_fails_for_each_problem(kind, broken_report):
    problems = broken_report.problems
    for opening, piece in EXPECTED[kind]:
        assert any(p.startswith(opening) and piece in p for p in problems), (
            f"not reported: {opening!r} with {piece!r}; reported:\n  " + "\n  ".join(problems))
    assert not any("thm-good" in p for p in problems), "the sound theorem box is not reported"


def test_the_chapters_own_figure_formula_and_reference_broken_are_caught(broken_site, broken_report):
    _, original, own = broken_site
    assert own, f"{original} has a figure, an equation link or a display formula to break"
    for opening, piece in own:
        assert any(p.startswith(opening) and piece in p for p in broken_report.problems), (
            f"not reported: {opening!r} with {piece!r}; reported:\n  " + "\n  ".join(broken_report.problems))


def test_nothing_else_is_reported(broken_report):
    """Every problem found is one of the injected ones (no false alarms from the copy itself)."""
    needles = ["gone-figure", "$$", "$x^2$", "\\frac", "\\notacommand", "x^{1}^{2}",
               "equation-not-there", "no-such-chapter", "no-such-section", "thm-missing", "???",
               "thm-unnumbered", "lem-empty", "proof-empty", "not-the-branch",
               "notAFunctionOnThisPage", "searching", "gone-", "equation-renamed", "raw TeX"]
    stray = [p for p in broken_report.problems if not any(n in p for n in needles)]
    assert not stray, stray


def test_a_page_without_mathjax_fails(broken_site, driver, book_config, tmp_path):
    """MathJax missing altogether (here: an empty local copy) is reported, not passed silently."""
    copy, original, _ = broken_site
    with sitecheck.SiteServer(copy, tmp_path) as server:
        report = sitecheck.PageChecker(driver, server, book_config, ROOT).check(original)
    problems = report.problems
    assert any(p.startswith("math: MathJax did not typeset the page (MathJax did not load)") for p in problems), problems
    assert any(p.startswith("math: formula not typeset by MathJax") for p in problems), problems
    assert any(p.startswith("http: page: /__local_mathjax__/es5/tex-mml-chtml.js answered 404") for p in problems), problems
