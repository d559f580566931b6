"""Two fixes for JavaScript console errors every page of a Jupyter Book 1.0.4 site shows.

The browser test (tests/browser, issue 6) found them; both come from the toolchain, not the book:

1. Sphinx 7.4 writes an inline ``<script>`` twice when an extension registers it after the builder
   started (it is stored once under the file name ``None`` and once under ``''``). sphinx-thebe
   registers ``const THEBE_JS_URL = ...`` that way, and the second copy throws "Identifier
   'THEBE_JS_URL' has already been declared". We drop the repeated copies from each page's script
   list (Jupyter Book 1.x requires Sphinx 7, so upgrading Sphinx is not an option).
2. pydata-sphinx-theme logs "Got invalid theme mode" on a reader's first visit when no default mode
   is configured (the template variable ``default_mode`` is empty). We set it to ``auto``, which is
   what the theme falls back to anyway.
"""
from __future__ import annotations

from sphinx.application import Sphinx


def _page_context(app: Sphinx, pagename: str, templatename: str, context: dict, doctree) -> None:
    if not context.get("default_mode"):   # read by pydata-sphinx-theme's layout.html
        context["default_mode"] = "auto"
    scripts = context.get("script_files")
    if not isinstance(scripts, list):
        return
    seen, unique = set(), []
    for script in scripts:
        key = (script.filename or "", script.priority, tuple(sorted(script.attributes.items())))
        if key not in seen:
            seen.add(key)
            unique.append(script)
    scripts[:] = unique   # the builder restores its own list after each page


def setup(app: Sphinx) -> dict:
    app.connect("html-page-context", _page_context)
    return {"parallel_read_safe": True, "parallel_write_safe": True}
