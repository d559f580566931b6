"""Check the built book the way a reader meets it: pages opened in headless Chromium.

The pytest files in this folder drive it (``make browser``); the pieces are:

- :class:`SiteServer` serves ``_build/html`` on localhost from a thread. It serves MathJax from a
  local copy (the npm package ``mathjax@3``) by rewriting the CDN address in the HTML it sends, so
  the check works offline while the published files keep their usual CDN source. It also records
  every request it answered with an error (a missing image, script or page).
- :func:`start_chromium` starts Debian's Chromium through its chromedriver (selenium), with the
  flags that keep a browser quiet on a closed network.
- :class:`PageChecker` opens one page, waits for MathJax, and returns the list of problems a reader
  would see: console errors, raw or broken math, images that did not load, theorem boxes without a
  number or a body, cross-references that do not resolve, a wrong Colab link, a search box that does
  not find the page. Each problem is one line that starts with its kind: ``console``, ``http``
  (a request the server answered with an error), ``math``, ``image``, ``proof``, ``xref``,
  ``link``, ``colab``, ``search`` or ``page``.
"""
from __future__ import annotations

import dataclasses
import functools
import html.parser
import http.server
import os
import pathlib
import re
import shutil
import tempfile
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator

import yaml
from sphinx.search.en import english_stopwords

MATHJAX_CDN = re.compile(r"https://cdn\.jsdelivr\.net/npm/mathjax@3[0-9.]*/")
LOCAL_MATHJAX_PREFIX = "/__local_mathjax__/"
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--hide-scrollbars",
    "--window-size=1280,1000",
)


# --------------------------------------------------------------------------- book configuration
@dataclasses.dataclass(frozen=True)
class BookConfig:
    """The parts of ``_config.yml`` and ``_toc.yml`` the checks need."""

    docnames: tuple[str, ...]   # every page of the table of contents, root first
    github: str                 # "org/repo"
    branch: str
    path_to_book: str
    colab_url: str

    @classmethod
    def read(cls, root: pathlib.Path) -> "BookConfig":
        config = yaml.safe_load((root / "_config.yml").read_text())
        toc = yaml.safe_load((root / "_toc.yml").read_text())
        repo = config.get("repository", {})
        url = repo.get("url", "")
        match = re.fullmatch(r"https://github\.com/([^/]+/[^/]+?)/?", url)
        if match is None:
            raise ValueError(f"_config.yml: repository.url must be a GitHub repository, got {url!r}")
        return cls(
            docnames=tuple(_toc_files(toc)),
            github=match.group(1),
            branch=repo.get("branch", "master"),   # Jupyter Book's default when unset
            path_to_book=(repo.get("path_to_book") or "").strip("/"),
            colab_url=config.get("launch_buttons", {}).get("colab_url", "").rstrip("/"),
        )

    def colab_link(self, source: str) -> str:
        """The launch link Jupyter Book should write for a notebook at ``source`` (book-relative)."""
        path = f"{self.path_to_book}/{source}" if self.path_to_book else source
        return f"{self.colab_url}/github/{self.github}/blob/{self.branch}/{path}"


def _toc_files(entry) -> Iterator[str]:
    if isinstance(entry, dict):
        for key in ("root", "file"):
            if key in entry:
                yield str(entry[key]).removesuffix(".md").removesuffix(".ipynb")
        for key in ("parts", "chapters", "sections"):
            for child in entry.get(key, []):
                yield from _toc_files(child)


def screenshot_name(docname: str) -> str:
    return docname.replace("/", "--")


# --------------------------------------------------------------------------------- the server
class SiteServer:
    """Serve a built site on 127.0.0.1 from a daemon thread (a context manager).

    HTML responses get the MathJax CDN address replaced by ``/__local_mathjax__/``, which is served
    from ``mathjax_dir`` (the ``mathjax`` npm package folder); the files on disk are not touched.
    """

    def __init__(self, site: pathlib.Path, mathjax_dir: pathlib.Path | None):
        self.site = pathlib.Path(site)
        self.mathjax_dir = pathlib.Path(mathjax_dir) if mathjax_dir else None
        self.failures: list[tuple[str, int]] = []   # (path, status) of every error answered
        self._lock = threading.Lock()
        handler = functools.partial(_Handler, server_state=self, directory=str(self.site))
        self._httpd = _QuietServer(("127.0.0.1", 0), handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def url(self, path: str) -> str:
        return f"{self.origin}/{path.lstrip('/')}"

    def take_failures(self, path: str | None = None) -> list[tuple[str, int]]:
        """Remove and return the failures recorded so far (only those of ``path`` if given)."""
        with self._lock:
            out = [f for f in self.failures if path is None or f[0] == path]
            self.failures = [f for f in self.failures if f not in out]
        return out

    def _record(self, path: str, status: int) -> None:
        if urllib.parse.urlsplit(path).path != "/favicon.ico":   # the browser asks on its own
            with self._lock:
                self.failures.append((path, status))

    def __enter__(self) -> "SiteServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)


class _QuietServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        import sys
        if not isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            super().handle_error(request, client_address)   # the browser left mid-answer: fine


class _Handler(http.server.SimpleHTTPRequestHandler):
    def __init__(self, *args, server_state: SiteServer, **kwargs):
        self.state = server_state
        super().__init__(*args, **kwargs)

    def log_message(self, format, *args):   # keep pytest's output clean
        pass

    def end_headers(self):
        # Every server of a test run gets a fresh port, but ports are reused: without this, Chromium
        # may take a file (MathJax) from its cache for a server that does not serve it.
        self.send_header("Cache-Control", "no-store")
        super().end_headers()

    def send_error(self, code, message=None, explain=None):
        self.state._record(self.path, code)
        super().send_error(code, message, explain)

    def translate_path(self, path):
        clean = urllib.parse.unquote(urllib.parse.urlsplit(path).path)
        if clean.startswith(LOCAL_MATHJAX_PREFIX) and self.state.mathjax_dir is not None:
            rel = pathlib.PurePosixPath(clean[len(LOCAL_MATHJAX_PREFIX):])
            if ".." not in rel.parts:
                return str(self.state.mathjax_dir / rel)
        return super().translate_path(path)

    def send_head(self):
        path = self.translate_path(self.path)
        if not path.endswith(".html") or not os.path.isfile(path):
            return super().send_head()
        text = pathlib.Path(path).read_text(encoding="utf-8")
        if self.state.mathjax_dir is not None:
            text = MATHJAX_CDN.sub(LOCAL_MATHJAX_PREFIX, text)
        body = text.encode("utf-8")
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        return _BytesFile(body)


class _BytesFile:
    def __init__(self, data: bytes):
        self.data = data

    def read(self, *args) -> bytes:
        data, self.data = self.data, b""
        return data

    def close(self) -> None:
        pass


# -------------------------------------------------------------------------------- the browser
def start_chromium(*, chromium: str, chromedriver: str, profile_dir: pathlib.Path):
    """Headless Chromium driven by selenium through Debian's chromedriver (nothing downloaded)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    for name, path in (("chromium", chromium), ("chromedriver", chromedriver)):
        if not (os.path.isfile(path) and os.access(path, os.X_OK)):
            raise FileNotFoundError(
                f"{name} not found at {path!r}: run `make browser` (it installs Debian's chromium and "
                f"chromium-driver), or set {name.upper()} to the executable")
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in CHROMIUM_FLAGS:
        options.add_argument(flag)
    options.add_argument(f"--user-data-dir={profile_dir}")
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(executable_path=chromedriver))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


# ----------------------------------------------------------------------------- in-page scripts
WAIT_FOR_PAGE_JS = r"""
const done = arguments[arguments.length - 1];
const start = Date.now();
function images() {
  const imgs = Array.from(document.images);
  imgs.forEach(img => { if (img.loading === "lazy") img.loading = "eager"; });
  return Promise.all(imgs.map(img => img.complete ? null :
    new Promise(resolve => { img.addEventListener("load", resolve); img.addEventListener("error", resolve); })));
}
function mathjax() {
  const mj = window.MathJax;
  if (mj && mj.startup && mj.startup.promise) return mj.startup.promise.then(() => "typeset", e => "error: " + e);
  // a MathJax script tag or a MathJax configuration object: the page wants MathJax
  const wants = document.querySelector('script[src*="mathjax" i]') || mj;
  const loaded = document.readyState === "complete";
  // decide only once the page has loaded: until then its script tags may not all be parsed
  if (!wants && loaded) return Promise.resolve("absent");
  // the page has loaded (deferred scripts ran) and MathJax is still not there: it never will be
  if (wants && loaded && Date.now() - start > 2000) return Promise.resolve("MathJax did not load");
  if (Date.now() - start > 15000) return Promise.resolve("MathJax did not start");
  return new Promise(r => setTimeout(r, 50)).then(mathjax);
}
Promise.all([mathjax(), images()]).then(([m]) => done(m), e => done("error: " + e));
"""

INSPECT_JS = r"""
const article = document.querySelector("article.bd-article") || document.querySelector("main") || document.body;
const out = {};
out.title = (article.querySelector("h1") || {}).textContent || "";

// math: every Sphinx math node must hold MathJax output, without errors
const mathNodes = Array.from(article.querySelectorAll(".math"));
out.mathCount = mathNodes.length;
out.mjxCount = article.querySelectorAll("mjx-container").length;
out.mathUntypeset = mathNodes.filter(n => !n.querySelector("mjx-container"))
  .map(n => n.textContent.trim().slice(0, 80));
// MathJax keeps each formula's TeX next to its output: name broken formulas by their TeX
const items = (window.MathJax && MathJax.startup && MathJax.startup.document) ?
  Array.from(MathJax.startup.document.math) : [];
const texOf = el => {
  const item = items.find(m => m.typesetRoot && m.typesetRoot.contains(el));
  return item ? String(item.math).trim().slice(0, 80) : el.textContent.slice(0, 80);
};
out.mathErrors = Array.from(article.querySelectorAll("mjx-merror"))
  .map(n => texOf(n) + " (" + (n.getAttribute("data-mjx-error") || "error") + ")");
// an undefined command is drawn in red (MathJax's noundefined package)
out.mathUndefined = Array.from(article.querySelectorAll("mjx-container [style*='color: red'], mjx-container [style*='color:red'], mjx-container [mathcolor='red']"))
  .map(texOf);
// raw TeX left in the prose (code, outputs in <pre> and MathJax output excluded)
const prose = article.cloneNode(true);
prose.querySelectorAll("pre, code, script, style, mjx-container, .highlight, .math").forEach(n => n.remove());
out.proseText = prose.textContent;

// images
out.images = Array.from(document.images).map(img => ({
  src: img.getAttribute("src"), ok: img.complete && img.naturalWidth > 0,
  inArticle: article.contains(img)}));

// sphinx-proof boxes
out.proofs = Array.from(article.querySelectorAll("div.proof")).map(box => {
  const kinds = Array.from(box.classList).filter(c => c !== "proof" && c !== "admonition");
  const title = box.querySelector(":scope > .admonition-title");
  const number = title ? title.querySelector(".caption-number") : null;
  const content = box.querySelector(':scope > section[class$="-content"]');
  const rect = box.getBoundingClientRect();
  return {id: box.id, kinds: kinds, title: title ? title.textContent.trim() : null,
          number: number ? number.textContent.trim() : null,
          body: content ? content.textContent.trim() : null,
          text: box.textContent.trim().slice(0, 200),
          visible: rect.width > 0 && rect.height > 0};
});

// cross-references Sphinx could not resolve are left as bare .xref nodes outside a link
out.unresolved = Array.from(article.querySelectorAll(".xref"))
  .filter(n => !n.closest("a")).map(n => n.textContent.trim());
out.links = Array.from(document.querySelectorAll("a[href]")).map(a => ({
  href: a.href, raw: a.getAttribute("href"), text: a.textContent.trim().slice(0, 60),
  inArticle: article.contains(a)}));
out.ids = Array.from(document.querySelectorAll("[id]")).map(n => n.id);
out.colab = Array.from(document.querySelectorAll('a[href*="colab.research.google.com"]')).map(a => a.href);

// the search box: the page's own form, as the theme writes it
const form = document.querySelector('form.bd-search, form[action*="search.html"]');
const input = form ? form.querySelector('input[name]') : null;
out.search = form && input ? {action: form.action, field: input.name} : null;

// words for the search check, one text node at a time (math, code and links left out)
function words(root) {
  const skip = ".math, code, pre, a, .xref, mjx-container, script, style, .headerlink";
  const walker = document.createTreeWalker(root, NodeFilter.SHOW_TEXT, {acceptNode: n =>
    n.parentElement.closest(skip) ? NodeFilter.FILTER_REJECT : NodeFilter.FILTER_ACCEPT});
  const out = [];
  for (let n = walker.nextNode(); n; n = walker.nextNode()) out.push(...(n.textContent.match(/[A-Za-z]+/g) || []));
  return out;
}
out.leadWords = Array.from(article.querySelectorAll("section > p")).slice(0, 6).flatMap(words);
out.titleWords = words(article.querySelector("h1") || document.createElement("h1"));
out.allWords = words(article);
return out;
"""

SEARCH_RESULTS_JS = r"""
const status = document.querySelector("#search-results .search-summary, #search-results p");
const text = status ? status.textContent : "";
const finished = /finished|did not match/i.test(text);
return {finished: finished, status: text,
        hits: Array.from(document.querySelectorAll("#search-results ul a")).map(a => a.href)};
"""

RAW_MATH = re.compile(r"\$\$|\$[^$\s][^$\n]*\$|\\\(|\\\[|\\begin\{")
STOP_WORDS = english_stopwords   # never indexed by Sphinx, so never found


def _search_word(page) -> str | None:
    """The longest lower-case word of the page's opening, else of its title, else of the page."""
    for words, shortest in ((page["leadWords"], 5), (page["titleWords"], 4), (page["allWords"], 5)):
        candidates = [w for w in words if len(w) >= shortest and w.lower() not in STOP_WORDS
                      and (w.islower() or words is page["titleWords"])]
        if candidates:
            return max(candidates, key=len).lower()
    return None


# ------------------------------------------------------------------------------- the checker
@dataclasses.dataclass
class PageReport:
    docname: str
    problems: list[str]
    search_word: str | None = None
    screenshots: list[pathlib.Path] = dataclasses.field(default_factory=list)


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids: set[str] = set()

    def handle_starttag(self, tag, attrs):
        for key, value in attrs:
            if key in ("id", "name") and value:
                self.ids.add(value)


class PageChecker:
    """Open pages of one served site in one browser and list what is wrong with each."""

    def __init__(self, driver, server: SiteServer, config: BookConfig, source_root: pathlib.Path,
                 *, screenshot_dir: pathlib.Path | None = None):
        self.driver = driver
        self.server = server
        self.config = config
        self.source_root = pathlib.Path(source_root)
        self.screenshot_dir = screenshot_dir
        self._targets: dict[str, set[str] | int] = {}   # url -> ids of an HTML page, or HTTP status

    # ---- public
    def check(self, docname: str, *, source: str | None = None) -> PageReport:
        """Check the page built from ``docname`` (e.g. ``"book/intro"``).

        ``source`` is the page's source file relative to the book root (found next to the
        docname when omitted); a notebook source means a Colab launch link is expected.
        """
        report = PageReport(docname, [])
        problems = report.problems
        html_path = self.server.site / f"{docname}.html"
        if not html_path.is_file():
            problems.append(f"page: {docname}.html was not built")
            return report
        url = self.server.url(f"{docname}.html")
        self.driver.get_log("browser")          # drop what earlier pages left
        self.server.take_failures()
        self.driver.get(url)
        state = self.driver.execute_async_script(WAIT_FOR_PAGE_JS)
        if state not in ("typeset", "absent"):
            problems.append(f"math: MathJax did not typeset the page ({state})")
        page = self.driver.execute_script(INSPECT_JS)

        self._check_math(page, problems)
        self._check_images(page, problems)
        self._check_proofs(page, problems)
        self._check_links(page, url, problems)
        self._check_colab(page, docname, source, problems)
        self._take_screenshots(docname, page, report)
        self._console_and_http(problems, where="page")
        report.search_word = self._check_search(page, url, problems)
        self._console_and_http(problems, where="search page")
        report.problems[:] = list(dict.fromkeys(problems))   # a resource asked twice: one problem
        return report

    # ---- the checks
    @staticmethod
    def _check_math(page, problems):
        for text in page["mathUntypeset"]:
            problems.append(f"math: formula not typeset by MathJax: {text}")
        for text in page["mathErrors"]:
            problems.append(f"math: MathJax error in {text}")
        for text in page["mathUndefined"]:
            problems.append(f"math: undefined TeX command shown in red in {text}")
        if page["mathCount"] and not page["mjxCount"]:
            problems.append(f"math: {page['mathCount']} formulas but no MathJax output on the page")
        for match in RAW_MATH.finditer(page["proseText"]):
            context = page["proseText"][max(0, match.start() - 30): match.end() + 30]
            problems.append(f"math: raw TeX left in the text: ...{' '.join(context.split())}...")

    @staticmethod
    def _check_images(page, problems):
        for img in page["images"]:
            if not img["ok"]:
                problems.append(f"image: did not load: {img['src']}")

    @staticmethod
    def _check_proofs(page, problems):
        for box in page["proofs"]:
            name = box["id"] or box["text"][:40]
            if not box["visible"]:
                problems.append(f"proof: box {name!r} is not displayed")
            if box["kinds"]:   # theorem, lemma, definition, ...: numbered, titled, with a body
                if not box["number"] or not re.search(r"\d", box["number"]):
                    problems.append(f"proof: {'/'.join(box['kinds'])} box {name!r} has no number "
                                    f"(title {box['title']!r})")
                if not box["body"]:
                    problems.append(f"proof: {'/'.join(box['kinds'])} box {name!r} has an empty body")
            else:              # a plain proof: "Proof." followed by the argument
                body = re.sub(r"^\s*Proof\.?", "", box["text"]).strip()
                if not box["text"].startswith("Proof"):
                    problems.append(f"proof: proof box {name!r} does not start with 'Proof'")
                if not body:
                    problems.append(f"proof: proof box {name!r} has an empty body")

    def _check_links(self, page, url, problems):
        for text in page["unresolved"]:
            problems.append(f"xref: unresolved cross-reference {text!r}")
        if "???" in page["proseText"]:
            at = page["proseText"].index("???")
            context = " ".join(page["proseText"][max(0, at - 40):at + 10].split())
            problems.append(f"xref: '???' in the text: ...{context}...")
        own_ids = set(page["ids"])
        seen = set()
        for link in page["links"]:
            href = link["href"]
            if not href.startswith(self.server.origin + "/") or href in seen:
                continue
            seen.add(href)
            target, _, fragment = href.partition("#")
            fragment = urllib.parse.unquote(fragment)
            target = target.split("?")[0]
            if target == url.split("#")[0]:
                if fragment and fragment not in own_ids:
                    problems.append(f"link: anchor #{fragment} not on this page "
                                    f"(link text {link['text']!r})")
                continue
            found = self._target(target)
            if isinstance(found, int):
                problems.append(f"link: {link['raw']} answers HTTP {found}")
            elif fragment and fragment not in found:
                problems.append(f"link: {link['raw']}: no anchor #{fragment} in the target page")

    def _target(self, url: str) -> set[str] | int:
        if url not in self._targets:
            try:
                with urllib.request.urlopen(url, timeout=10) as response:
                    body = response.read()
                    kind = response.headers.get_content_type()
            except urllib.error.HTTPError as err:
                self._targets[url] = err.code
            else:
                parser = _Ids()
                if kind == "text/html":
                    parser.feed(body.decode("utf-8", "replace"))
                self._targets[url] = parser.ids
            self.server.take_failures(urllib.parse.urlsplit(url).path)   # ours, not the page's
        return self._targets[url]

    def _check_colab(self, page, docname, source, problems):
        if source is None:
            source = next((f"{docname}{ext}" for ext in (".ipynb", ".md")
                           if (self.source_root / f"{docname}{ext}").exists()), None)
        if source is None or not source.endswith(".ipynb"):
            return   # Jupyter Book puts launch buttons on notebook pages only
        expected = self.config.colab_link(source)
        if not page["colab"]:
            problems.append(f"colab: no Colab launch link (expected {expected})")
        for href in page["colab"]:
            if href != expected:
                problems.append(f"colab: launch link {href} is not {expected}")
        if not (self.source_root / source).is_file():
            problems.append(f"colab: the launch link's notebook {source} is not in the repository")

    def _check_search(self, page, url, problems) -> str | None:
        word = _search_word(page)
        if word is None:
            problems.append("search: no word of five letters or more on the page to search for")
            return None
        if page["search"] is None:
            problems.append("search: the page has no search box")
            return word
        query = urllib.parse.urlencode({page["search"]["field"]: word})
        self.driver.get(f"{page['search']['action']}?{query}")
        deadline = time.monotonic() + 15
        result = self.driver.execute_script(SEARCH_RESULTS_JS)
        while not result["finished"] and time.monotonic() < deadline:
            time.sleep(0.05)
            result = self.driver.execute_script(SEARCH_RESULTS_JS)
        hits = {h.split("#")[0].split("?")[0] for h in result["hits"]}
        if not result["finished"]:
            problems.append(f"search: search for {word!r} did not finish ({result['status']!r})")
        elif url not in hits:
            problems.append(f"search: searching {word!r} from the page's search box does not find "
                            f"the page ({result['status'].strip()!r})")
        return word

    def _console_and_http(self, problems, *, where):
        for entry in self.driver.get_log("browser"):
            if entry.get("level") == "SEVERE" and not _favicon(entry.get("message", "")):
                problems.append(f"console: {where}: {entry.get('message', '')[:300]}")
        for path, status in self.server.take_failures():
            problems.append(f"http: {where}: {path} answered {status}")

    def _take_screenshots(self, docname, page, report):
        if self.screenshot_dir is None:
            return
        self.screenshot_dir.mkdir(parents=True, exist_ok=True)
        name = screenshot_name(docname)
        path = self.screenshot_dir / f"{name}.png"
        _full_page_png(self.driver, path)
        report.screenshots.append(path)
        from selenium.webdriver.common.by import By
        for box in page["proofs"]:   # each numbered box on its own, e.g. for the README
            if box["kinds"] and box["id"] and box["visible"]:
                element = self.driver.find_element(By.ID, box["id"])
                self.driver.execute_script("arguments[0].scrollIntoView({block: 'center'});", element)
                shot = self.screenshot_dir / f"{name}--{box['id']}.png"
                element.screenshot(str(shot))
                report.screenshots.append(shot)


def _favicon(message: str) -> bool:
    """The browser's own request for /favicon.ico, which no page asks for."""
    return re.match(r"\S+/favicon\.ico - Failed to load resource", message) is not None


def _full_page_png(driver, path: pathlib.Path, *, max_height: int = 16000) -> None:
    """The whole page as one PNG: the viewport is made as tall as the page for one capture."""
    import base64

    width, height = driver.execute_script(
        "return [window.innerWidth, Math.max(document.documentElement.scrollHeight,"
        " document.body ? document.body.scrollHeight : 0)]")
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", {
        "width": width, "height": min(height, max_height), "deviceScaleFactor": 1, "mobile": False})
    try:
        data = driver.execute_cdp_cmd("Page.captureScreenshot", {"format": "png"})
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
    tmp = path.with_suffix(".tmp")
    tmp.write_bytes(base64.b64decode(data["data"]))
    tmp.replace(path)


def copy_site(site: pathlib.Path, dest: pathlib.Path) -> pathlib.Path:
    """A throwaway copy of a built site (for the checker's own negative cases)."""
    shutil.copytree(site, dest, ignore=shutil.ignore_patterns(".doctrees"))
    return dest


def fresh_profile_dir() -> pathlib.Path:
    return pathlib.Path(tempfile.mkdtemp(prefix="book-chromium-"))


# ----------------------------------------------------------------------- opening a page alone
def open_page(driver, server: SiteServer, docname: str, *, width: int | None = None,
              height: int = 1000) -> str:
    """Open the page of ``docname`` and wait for MathJax and the images, as :class:`PageChecker`
    does; with ``width``, first make the window that wide. Returns the MathJax state
    (``"typeset"``, ``"absent"`` or what went wrong). For checks of one aspect, e.g. overflow.py.
    """
    if width is not None:
        driver.set_window_size(width, height)
    driver.get(server.url(f"{docname}.html"))
    return driver.execute_async_script(WAIT_FOR_PAGE_JS)
