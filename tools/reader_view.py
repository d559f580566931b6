"""What the published book shows a reader, measured chapter by chapter (nothing is executed).

Each check is a pure function of an nbformat notebook that returns the places where the HTML book
breaks a rule of the reader's view (shared/GUIDE.md, "The reader's view"):

- :func:`wide_code_lines`: visible code lines longer than 88 characters (the text column);
- :func:`wide_output_lines`: visible text output lines longer than 88 characters;
- :func:`builder_phrases`: timings, temp paths, machine names, targets, hidden checks, paths under
  ``benchmarks/`` or ``tools/``, remarks about how a run was made (:data:`BUILDER_PHRASES`);
- :func:`internal_equation_labels`: ``eq. (some-label)`` in outputs and code comments, where the
  reader sees equation numbers;
- :func:`printed_tables`: tables printed as text instead of returned as a DataFrame;
- :func:`output_boxes`: cells that show more than one text output box;
- :func:`broken_math`: inline formulas that a line break turns into a Markdown list;
- :func:`prose_words`: the number of words of prose (markdown without math), against
  :func:`word_limit`.

Visibility follows the cell tags that Jupyter Book honours: a cell's source is hidden by
``remove-cell``, ``remove-input``, ``hide-input`` and ``hide-cell`` (the ``hide-*`` toggles count
as hidden), its outputs by ``remove-cell``, ``remove-output``, ``hide-output`` and ``hide-cell``.
Markdown is always visible. ``text/plain`` of a result is shown only when the result has no richer
form (HTML, an image, Markdown, LaTeX): a figure's ``<Figure size ...>`` is not.

Run ``python tools/reader_view.py`` for a table of counts per chapter (``book/*.ipynb`` and
``book/*.md``), ``python tools/reader_view.py --details 11`` for every violation of one chapter.
"""
from __future__ import annotations

import argparse
import html
import pathlib
import re
import sys
from typing import Callable, Iterator, NamedTuple

import nbformat

ROOT = pathlib.Path(__file__).resolve().parents[1]
WIDTH = 88
HIDE_SOURCE = frozenset({"remove-cell", "remove-input", "hide-input", "hide-cell"})
#: Sources a reader can unfold ("show code"): folded, not removed, so their lines must fit the column too.
FOLDED_SOURCE = frozenset({"hide-input", "hide-cell"})
HIDE_OUTPUT = frozenset({"remove-cell", "remove-output", "hide-output", "hide-cell"})
RICH_MIME = ("text/html", "text/markdown", "text/latex", "image/")   # text/plain then not shown
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


class Violation(NamedTuple):
    chapter: str
    cell: int    # index in nb.cells
    part: str    # "markdown", "code" (the source) or "output" (the cell's visible text outputs)
    line: int    # 1-based line of that part; 0 for the whole cell
    text: str    # the line, or what was found


# ------------------------------------------------------------------------------ what is visible
def _tags(cell) -> set[str]:
    return set(cell.get("metadata", {}).get("tags", []))


def source_visible(cell) -> bool:
    return cell.cell_type == "markdown" or (cell.cell_type == "code" and not _tags(cell) & HIDE_SOURCE)


def outputs_visible(cell) -> bool:
    return cell.cell_type == "code" and not _tags(cell) & HIDE_OUTPUT


def text_outputs(cell) -> list[str]:
    """The cell's visible outputs that the book shows as text boxes, each as its text.

    Streams, errors (the traceback, without colour codes) and results whose only form is
    ``text/plain``.
    """
    if not outputs_visible(cell):
        return []
    texts = []
    for out in cell.get("outputs", []):
        if out.output_type == "stream":
            texts.append(out.text)
        elif out.output_type == "error":
            texts.append(ANSI.sub("", "\n".join(out.get("traceback", []))))
        elif out.output_type in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "text/plain" in data and not any(k.startswith(RICH_MIME) for k in data):
                texts.append(data["text/plain"])
    return texts


def _html_text(cell) -> list[str]:
    """The text a reader sees in the cell's visible HTML outputs (a DataFrame), tags removed."""
    if not outputs_visible(cell):
        return []
    return [html.unescape(re.sub(r"<style.*?</style>|<[^>]+>", " ", out.data["text/html"], flags=re.S))
            for out in cell.get("outputs", [])
            if out.output_type in ("execute_result", "display_data") and "text/html" in out.get("data", {})]


def _output_lines(cell, *, with_html: bool = False) -> list[str]:
    """The lines of the cell's visible text outputs, numbered together (1-based) in order."""
    lines = []
    for text in text_outputs(cell) + (_html_text(cell) if with_html else []):
        if text:   # a carriage return overwrites the line (a progress bar) as in a terminal
            lines += [ANSI.sub("", line.rstrip("\r")).rsplit("\r", 1)[-1]
                      for line in text.rstrip("\n").split("\n")]
    return lines


def _source_lines(cell) -> list[str]:
    return cell.source.splitlines() if source_visible(cell) else []


def _width(line: str) -> int:
    return len(line.expandtabs())


# ----------------------------------------------------------------------------------- the checks
def wide_code_lines(nb, limit: int = WIDTH, *, chapter: str = "") -> list[Violation]:
    """Code lines longer than ``limit`` characters, in visible cells and in folded ones (a reader
    who presses "show code" sees those too)."""
    return [Violation(chapter, i, "code", n, line)
            for i, cell in enumerate(nb.cells) if cell.cell_type == "code"
            for n, line in enumerate(cell.source.splitlines() if source_visible(cell) or _tags(cell) & FOLDED_SOURCE
                                     else [], 1) if _width(line) > limit]


def wide_output_lines(nb, limit: int = WIDTH, *, chapter: str = "") -> list[Violation]:
    """Visible text output lines (streams, text-only results, errors) longer than ``limit``."""
    return [Violation(chapter, i, "output", n, line)
            for i, cell in enumerate(nb.cells)
            for n, line in enumerate(_output_lines(cell), 1) if _width(line) > limit]


# Phrases about how the book was built, not about the mathematics: (kind, regex). Markdown is
# searched with its math removed. Durations stated as results (a model's training time in a
# comparison, "7.83 ms" per evaluation) are not flagged; durations of *this run* are.
BUILDER_PHRASES: list[tuple[str, re.Pattern]] = [(kind, re.compile(rx)) for kind, rx in [
    # "complete in 54.2 s", "wall time 15 s", "took 44 seconds", "training: 15 s"
    ("timing", r"(?i)\b(?:complete|completed|finished|done|took|wall[- ]?(?:clock )?time|elapsed"
               r"|training(?: time)?)\b:?(?: in| of| about)? ~?\d[\d,.]*\s?"
               r"(?:ms|s|sec|seconds?|min|minutes?|h|hours?)\b"),
    # a log line's "(2.3 s)"
    ("timing", r"\(\d[\d.]*\s?(?:ms|s|min|h)\)"),
    ("temp path", r"(?<![\w.])/tmp/\S*|/var/folders/\S+|\bipykernel_\d+"),
    ("builder path", r"(?<![\w./-])(?:benchmarks|tools)/[\w./-]*"),
    ("machine", r"\b(?:NVIDIA\s+)?(?:[ABH]100|[BH]200|H800|A10G?|A40|L40S?|L4|V100|P100|T4|K80)\b"
                r"|\b(?:AMD\s+)?EPYC\b|\bXeon\b|\bRyzen\b|\bApple M\d\b"),
    # "this CPU", "this book's 2-core CPU", "this machine", "2-core", "2 CPU thread(s)"
    ("machine", r"(?i)\b(?:this|our|my|the book's|this book's) (?:(?:\d+|one|two|four)-core )?"
                r"(?:CPU|GPU|machine|laptop|computer|server|hardware)s?\b"),
    ("machine", r"(?i)\b(?:\d+|one|two|four|eight|single)-core\b"),
    ("machine", r"(?i)\b(?:\d+|one|two|four|eight) CPU threads?\b|\bCPU thread\(s\)"),
    # "our target: 0.5", "misses our target.", "our target of at most 0.6%", "the target is met",
    # "a target of 20"; not "Our target is the first test energy" (a target density)
    ("target", r"(?i)\bour targets?\b(?=\s*[:;).,]|\s+(?:of|is met|is missed|was met|was missed)\b)"
               r"|\btargets? (?:is |was |are )?(?:met|missed)\b|\btarget of (?:at (?:most|least) |about )?\d[\d.,]*%?"
               r"|\btarget of this (?:comparison|chapter|page|book|run)\b"),
    ("hidden check", r"(?i)\bhidden (?:checks?|asserts?|assertions?|tests?)\b"),
    # how and when a run was made
    ("run remark", r"(?i)\bsessions?\b|\blent\b|\bcut off\b|\b(?:no )?GPUs? (?:was|were|is) (?:not )?available\b"
                   r"|\bother jobs\b"),
    ("run date", r"\b20\d\d-[01]\d-[0-3]\d\b"),
]]

MATH = re.compile(r"\$\$.*?\$\$(?:[ \t]*\([^()\s]+\))?|\$[^$\n]+\$"
                  r"|\\begin\{([a-z*]+)\}.*?\\end\{\1\}", re.S)


def _blank(match: re.Match) -> str:
    """The match replaced by spaces, its line breaks kept (line numbers stay right)."""
    return re.sub(r"[^\n]", " ", match.group(0))


def _without_math(text: str) -> str:
    return MATH.sub(_blank, text)


def _visible_parts(nb, *, with_html: bool = False) -> Iterator[tuple[int, str, list[str]]]:
    """(cell index, part, lines) of everything visible: markdown without math, code, outputs."""
    for i, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            yield i, "markdown", _without_math(cell.source).splitlines()
        elif cell.cell_type == "code":
            yield i, "code", _source_lines(cell)
            yield i, "output", _output_lines(cell, with_html=with_html)


def _find(lines: list[str], patterns: list[tuple[str, re.Pattern]]) -> Iterator[tuple[int, str]]:
    """(line number, "kind: match") of each match, leftmost first; overlapping matches once."""
    for n, line in enumerate(lines, 1):
        hits = sorted((m.start(), -m.end(), kind, m.group(0)) for kind, rx in patterns for m in rx.finditer(line))
        end = -1
        for start, neg_end, kind, found in hits:
            if start >= end:
                yield n, f"{kind}: {found}"
                end = -neg_end


def builder_phrases(nb, *, chapter: str = "") -> list[Violation]:
    """Builder phrases (:data:`BUILDER_PHRASES`) in markdown, visible code and visible outputs."""
    return [Violation(chapter, i, part, n, found)
            for i, part, lines in _visible_parts(nb, with_html=True)
            for n, found in _find(lines, BUILDER_PHRASES)]


def equation_labels(nb) -> set[str]:
    """Labels the notebook's markdown defines: ``$$ ... $$ (label)``, ``(label)=``, ``:label:``,
    ``\\label{...}``."""
    labels = set()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            src = cell.source
            labels |= set(re.findall(r"\$\$[ \t]*\(([^()\s]+)\)[ \t]*$", src, re.M))
            labels |= set(re.findall(r"^\(([^()\s]+)\)=[ \t]*$", src, re.M))
            labels |= set(re.findall(r"^[ \t]*:label:[ \t]*(\S+)", src, re.M))
            labels |= set(re.findall(r"\\label\{([^}]+)\}", src))
    return labels


def book_labels(paths=None) -> set[str]:
    """Every label defined in the book's chapters (a chapter may cite another's)."""
    paths = sorted((ROOT / "book").glob("*.ipynb")) if paths is None else paths
    return set().union(*(equation_labels(load(p)) for p in paths))


LABEL_REF = re.compile(r"(?i)\b(?:eqs?\.|equations?)[ \t]*(?:\(([\w-]+)\)|([\w-]+))|\(([\w-]+)\)|\{eq\}`([\w-]+)`")


def internal_equation_labels(nb, labels: set[str] | None = None, *, chapter: str = "") -> list[Violation]:
    """Equations cited by their internal label (``eq. (time-gradients)``, ``(time-gradients)``,
    ``eq. time-gradients``) in visible outputs and in comments of visible code.

    ``labels`` are the labels to look for: by default those the notebook itself defines
    (:func:`book_labels` gives the whole book's).
    """
    labels = equation_labels(nb) if labels is None else labels
    found = []
    for i, part, lines in _visible_parts(nb, with_html=True):
        if part == "markdown":
            continue
        for n, line in enumerate(lines, 1):
            if part == "code":
                line = line.split("#", 1)[1] if "#" in line else ""
            for m in LABEL_REF.finditer(line):
                if next(g for g in m.groups() if g) in labels:
                    found.append(Violation(chapter, i, part, n, m.group(0)))
    return found


def _is_row(line: str) -> bool:
    """A line of a printed table: columns separated by ' | ', or by two or more spaces."""
    s = line.strip()
    if not s or s.startswith(("[", "(", "tensor(", "array(")):   # reprs of arrays
        return False
    if " | " in s or (s.startswith("|") and s.endswith("|")):
        return True
    return len(re.split(r"\s{2,}", s)) >= 2


def _is_markdown_table(line: str) -> bool:
    return re.fullmatch(r"\s*\|.*\|\s*", line) is not None


def printed_tables(nb, *, chapter: str = "") -> list[Violation]:
    """Tables printed as text: 3+ consecutive row-like lines, or 2+ lines of Markdown pipe syntax,
    in a visible stream or text-only result. One violation per table, at its first line."""
    found = []
    for i, cell in enumerate(nb.cells):
        if not outputs_visible(cell):
            continue
        lines = []
        for out in cell.get("outputs", []):   # errors are not tables
            if out.output_type != "error":
                lines += _output_lines(nbformat.v4.new_code_cell(outputs=[out]))
        n = 0
        while n < len(lines):
            for test, least in ((_is_markdown_table, 2), (_is_row, 3)):
                run = 0
                while n + run < len(lines) and test(lines[n + run]):
                    run += 1
                if run >= least:
                    found.append(Violation(chapter, i, "output", n + 1, f"{run} rows: {lines[n].strip()}"))
                    n += run
                    break
            else:
                n += 1
    return found


def output_boxes(nb, *, chapter: str = "") -> list[Violation]:
    """Cells that show more than one text output box (one per printed line, a log, ...)."""
    found = []
    for i, cell in enumerate(nb.cells):
        texts = text_outputs(cell)
        if len(texts) > 1:
            first = texts[0].strip().splitlines()[0] if texts[0].strip() else ""
            found.append(Violation(chapter, i, "output", 0, f"{len(texts)} boxes, the first: {first}"))
    return found


FENCED_CODE = re.compile(r"^[ \t]*(`{3,}|~{3,})(?!\{).*?^[ \t]*\1[ \t]*$", re.S | re.M)


def prose_text(source: str) -> str:
    """The prose of a markdown cell: math, code blocks, directive options and fences, label
    targets, comments and link targets removed."""
    text = _without_math(FENCED_CODE.sub(_blank, source))
    text = re.sub(r"<!--.*?-->", " ", text, flags=re.S)
    text = re.sub(r"^[ \t]*:[\w-]+:.*$", " ", text, flags=re.M)              # directive options
    text = re.sub(r"^[ \t]*(?::{3,}|`{3,})(?:\{[^}]*\})?", " ", text, flags=re.M)  # fences (titles kept)
    text = re.sub(r"^\([^()\s]+\)=[ \t]*$", " ", text, flags=re.M)         # (label)=
    text = re.sub(r"\]\([^)\s]*\)", "] ", text)                               # [text](target)
    return re.sub(r"\{[\w:-]+\}`[^`]*`", "REF", text)                         # {cite}`key`: one word


def prose_words(nb) -> int:
    """Words of prose in the markdown cells (tokens with a letter or digit; math excluded)."""
    return sum(len([w for w in prose_text(cell.source).split() if re.search(r"\w", w)])
               for cell in nb.cells if cell.cell_type == "markdown")


def word_limit(chapter: str) -> int:
    """3,000 words of prose per chapter; the experiment chapters 11 and 12: 2,500."""
    return 2500 if chapter.startswith(("11", "12")) else 3000


# ----------------------------------------------------------------------------------- the report
def broken_math(nb, *, chapter: str = "") -> list[Violation]:
    """Markdown lines that start with ``+``, ``-``, ``*`` or ``1.`` and a space inside inline math (an
    odd number of ``$`` earlier in the paragraph): Markdown reads them as list items, and the
    formula prints as raw TeX."""
    found = []
    for i, cell in enumerate(nb.cells):
        if cell.cell_type != "markdown":
            continue
        dollars = 0
        for n, line in enumerate(cell.source.split("\n"), 1):
            if not line.strip():
                dollars = 0
                continue
            if re.match(r"\s*([+*-]|\d+\.)\s", line) and dollars % 2:
                found.append(Violation(chapter, i, "markdown", n, line))
            dollars += len(re.findall(r"(?<!\\)\$", line.replace("$$", "")))
    return found


CHECKS: dict[str, Callable[..., list[Violation]]] = {
    "code>88": wide_code_lines,
    "out>88": wide_output_lines,
    "builder": builder_phrases,
    "eq-label": internal_equation_labels,
    "tables": printed_tables,
    "boxes": output_boxes,
    "math": broken_math,
}


def load(path) -> nbformat.NotebookNode:
    """A chapter as a notebook; a Markdown page becomes one markdown cell (front matter dropped)."""
    path = pathlib.Path(path)
    if path.suffix == ".ipynb":
        return nbformat.read(path, as_version=4)
    text = re.sub(r"\A---\n.*?\n---\n", "", path.read_text(), flags=re.S)
    return nbformat.v4.new_notebook(cells=[nbformat.v4.new_markdown_cell(text)])


def check(path, labels: set[str] | None = None) -> dict[str, list[Violation]]:
    """Every check of :data:`CHECKS` on one chapter (labels: the whole book's by default)."""
    path = pathlib.Path(path)
    nb, chapter = load(path), path.stem
    labels = book_labels() if labels is None else labels
    return {name: (fn(nb, labels, chapter=chapter) if fn is internal_equation_labels else fn(nb, chapter=chapter))
            for name, fn in CHECKS.items()}


def chapters() -> list[pathlib.Path]:
    book = ROOT / "book"
    return sorted(book.glob("*.ipynb")) + sorted(book.glob("*.md"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--details", metavar="CHAPTER",
                        help="list every violation of one chapter (its file name or a prefix, e.g. 11)")
    args = parser.parse_args(argv)
    labels = book_labels()
    paths = chapters()
    if args.details:
        chosen = [p for p in paths if p.name.startswith(args.details) or str(p).endswith(args.details)]
        if len(chosen) != 1:
            parser.error(f"--details {args.details!r} names {len(chosen)} chapters: "
                         + ", ".join(p.name for p in chosen or paths))
        path = chosen[0]
        words = prose_words(load(path))
        print(f"{path.name}: {words:,} words of prose (limit {word_limit(path.stem):,})")
        for name, found in check(path, labels).items():
            print(f"\n{name}: {len(found)}")
            for v in found:
                where = f"cell {v.cell} {v.part}" + (f" line {v.line}" if v.line else "")
                width = f" [{_width(v.text)}]" if name.endswith(">88") else ""
                print(f"  {where}{width}: {v.text}")
        return 0
    names = list(CHECKS)
    w = max(len(p.name) for p in paths) + 1
    header = f"{'chapter':{w}s}" + "".join(f"{n:>9s}" for n in names) + f"{'words':>17s}"
    print(header)
    print("-" * len(header))
    totals = [0] * len(names)
    for path in paths:
        found = check(path, labels)
        counts = [len(found[n]) for n in names]
        totals = [t + c for t, c in zip(totals, counts)]
        words, limit = prose_words(load(path)), word_limit(path.stem)
        flag = " OVER" if words > limit else ""
        print(f"{path.name:{w}s}" + "".join(f"{c:9d}" for c in counts) + f"{words:>8,} / {limit:,}{flag}")
    print("-" * len(header))
    print(f"{'total':{w}s}" + "".join(f"{t:9d}" for t in totals))
    return 0


if __name__ == "__main__":
    sys.exit(main())
