"""The Library reference: every public name of nodelib is on a page of the book, with an example that
runs (``make unit`` executes the docstrings' examples with ``pytest --doctest-modules nodelib``)."""
import importlib
import inspect
import pathlib
import re

import nodelib

ROOT = pathlib.Path(__file__).resolve().parents[1]
PAGES = sorted((ROOT / "book" / "api").glob("*.md"))
DIRECTIVE = re.compile(r"^\.\. auto(function|class|data|module):: ([\w.]+)", re.M)


def resolve(dotted):
    try:
        return importlib.import_module(dotted)
    except ModuleNotFoundError:
        module, _, name = dotted.rpartition(".")
        return getattr(importlib.import_module(module), name)


def documented():
    """The objects the reference pages document: named by a directive, or members of an automodule."""
    found = []
    for page in PAGES:
        for kind, dotted in DIRECTIVE.findall(page.read_text()):
            obj = resolve(dotted)
            found += [getattr(obj, n) for n in obj.__all__] if kind == "module" else [obj]
    return found


def test_every_public_name_of_nodelib_is_documented_on_a_reference_page():
    on_pages = {id(obj) for obj in documented()}
    missing = [name for name in nodelib.__all__ if id(getattr(nodelib, name)) not in on_pages]
    assert not missing, missing


def test_every_public_function_and_class_has_an_example():
    without = [name for name in nodelib.__all__
               if (inspect.isfunction(getattr(nodelib, name)) or inspect.isclass(getattr(nodelib, name)))
               and ">>> " not in (inspect.getdoc(getattr(nodelib, name)) or "")]
    assert not without, without


def test_the_reference_pages_are_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text()
    assert all(f"book/api/{page.stem}" in toc for page in PAGES)
