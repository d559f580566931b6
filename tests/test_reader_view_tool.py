"""The reader's-view tool (tools/reader_view.py) on small synthetic notebooks.

These test the tool, not the chapters: each check must find exactly what a reader would see, and
nothing in cells the book hides.
"""
import pathlib
import sys

import nbformat
from nbformat.v4 import (new_code_cell, new_markdown_cell, new_notebook, new_output)

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tools"))
import reader_view as rv  # noqa: E402
from reader_view import Violation as V  # noqa: E402

LONG = "x = " + "1 + " * 25 + "1"   # 104 characters


def stream(text, name="stdout"):
    return new_output("stream", name=name, text=text)


def result(data, kind="execute_result"):
    if kind == "execute_result":
        return new_output(kind, data=data, execution_count=1)
    return new_output(kind, data=data)


def code(source, outputs=(), tags=()):
    cell = new_code_cell(source, outputs=list(outputs))
    if tags:
        cell.metadata["tags"] = list(tags)
    return cell


def notebook(*cells):
    return new_notebook(cells=list(cells))


# ------------------------------------------------------------------------------- visibility
def test_which_tags_hide_source_and_outputs():
    out = [stream("shown\n")]
    cells = {tag: code("x = 1", out, [tag]) for tag in
             ("remove-cell", "remove-input", "hide-input", "hide-cell", "remove-output", "hide-output")}
    assert {t for t, c in cells.items() if not rv.source_visible(c)} == {
        "remove-cell", "remove-input", "hide-input", "hide-cell"}
    assert {t for t, c in cells.items() if not rv.outputs_visible(c)} == {
        "remove-cell", "remove-output", "hide-output", "hide-cell"}
    assert rv.source_visible(new_markdown_cell("text")) and rv.source_visible(code("x = 1"))


def test_text_outputs_skip_the_plain_text_of_figures_and_html():
    cell = code("f()", [
        stream("a\n"),
        result({"text/plain": "<Figure size 640x480 with 1 Axes>", "image/png": "iVBOR"}, "display_data"),
        result({"text/plain": "   a  b\n0  1  2", "text/html": "<table></table>"}),
        result({"text/plain": "42"}),
        new_output("error", ename="ValueError", evalue="bad",
                   traceback=["\x1b[0;31mValueError\x1b[0m: bad"]),
    ])
    assert rv.text_outputs(cell) == ["a\n", "42", "ValueError: bad"]


# ------------------------------------------------------------------------------------ widths
def test_wide_code_lines_in_visible_and_folded_code():
    nb = notebook(
        new_markdown_cell(LONG),                                  # markdown: not code
        code("short\n" + LONG + "\n" + "y" * 88),                # 88 is allowed
        code(LONG, tags=["remove-cell"]),
        code(LONG, tags=["remove-input"]),
        code(LONG, tags=["hide-input"]),                         # folded: a reader may unfold it
        code(LONG, tags=["hide-cell"]),
        code(LONG, tags=["remove-output"]),                      # its source is shown
        code("\t" + "y" * 84),                                    # a tab counts as 8
    )
    assert rv.wide_code_lines(nb, chapter="c") == [
        V("c", 1, "code", 2, LONG), V("c", 4, "code", 1, LONG), V("c", 5, "code", 1, LONG),
        V("c", 6, "code", 1, LONG), V("c", 7, "code", 1, "\t" + "y" * 84)]
    assert rv.wide_code_lines(nb, limit=200) == []


def test_wide_output_lines_in_streams_plain_results_and_errors():
    wide = "z" * 89
    nb = notebook(
        code("a", [stream("ok\n" + wide + "\n"), stream("y" * 88 + "\n", "stderr")]),
        code("b", [result({"text/plain": "<Figure size " + "9" * 90 + ">", "image/png": "iVBOR"},
                          "display_data")]),
        code("c", [result({"text/plain": wide, "text/html": "<b>x</b>"})]),
        code("d", [result({"text/plain": wide})]),
        code("e", [stream(wide)], tags=["remove-output"]),
        code("f", [stream(wide)], tags=["hide-output"]),
        code("g", [stream(wide)], tags=["remove-input"]),       # only the source is hidden
        code("h", [new_output("error", ename="E", evalue="", traceback=["\x1b[31m" + wide + "\x1b[0m"])]),
        code("i", [stream("progress 10%\r" + wide + "\rdone\n")]),  # a carriage return overwrites
    )
    assert rv.wide_output_lines(nb) == [
        V("", 0, "output", 2, wide), V("", 3, "output", 1, wide), V("", 6, "output", 1, wide),
        V("", 7, "output", 1, wide)]


# ---------------------------------------------------------------------------- builder phrases
def test_builder_phrases_in_markdown_code_and_outputs():
    nb = notebook(
        new_markdown_cell("All runs were made on this book's 2-core CPU (our target: 0.5).\n"
                          "The hidden checks assert it; see `benchmarks/devices.py`."),
        code("x = 1  # an NVIDIA H200 was lent to us",
             [stream("Table 1 experiment complete in 54.2 s; results in /tmp/run-1/results.json\n"
                     "iteration 100: NLL 2.5 (2.3 s)\n")]),
        code("print('wall time 15 s')", [stream("wall time 15 s\n")], tags=["remove-cell"]),
        code("print(time)", [stream("AMD EPYC, 2 CPU thread(s), 2026-11-30\n")], tags=["hide-input"]),
        code("df", [result({"text/plain": "df", "text/html": "<td>took 3 min</td><td>H100</td>"})]),
    )
    assert rv.builder_phrases(nb, chapter="c") == [
        V("c", 0, "markdown", 1, "machine: this book's 2-core CPU"),
        V("c", 0, "markdown", 1, "target: our target"),
        V("c", 0, "markdown", 2, "hidden check: hidden checks"),
        V("c", 0, "markdown", 2, "builder path: benchmarks/devices.py"),
        V("c", 1, "code", 1, "machine: NVIDIA H200"),
        V("c", 1, "code", 1, "run remark: lent"),
        V("c", 1, "output", 1, "timing: complete in 54.2 s"),
        V("c", 1, "output", 1, "temp path: /tmp/run-1/results.json"),
        V("c", 1, "output", 2, "timing: (2.3 s)"),
        V("c", 3, "output", 1, "machine: AMD EPYC"),
        V("c", 3, "output", 1, "machine: 2 CPU thread"),
        V("c", 3, "output", 1, "run date: 2026-11-30"),
        V("c", 4, "output", 1, "timing: took 3 min"),
        V("c", 4, "output", 1, "machine: H100"),
    ]


def test_builder_phrases_leave_the_mathematics_alone():
    nb = notebook(new_markdown_cell(
        "Our target is the first test energy $U_1$: the target density $p$ is known up to $Z$.\n"
        "The hidden state $\\mathbf{z}(t)$ after $T = 2$ s of flow, the session of $H200(x)$;\n"
        "$$\nt \\in [0, 1] \\quad (1.5 s)\n$$ (time-span)\n"
        "The machine's precision; a tool for the adjoint; the cut-off is $10^{-3}$.\n"
        "Training for more iterations lowers the loss; timings depend on the machine."),
        code("target = torch.zeros(2)  # the target of the regression\n"
             "tools = ['dopri5', 'rk4']\nsession_length = 3"))
    assert rv.builder_phrases(nb) == [V("", 0, "markdown", 2, "run remark: session")]


def test_each_pattern_fires_on_an_example():
    examples = {"timing": "finished in 3.2 minutes", "temp path": "/var/folders/ab/x.json",
                "builder path": "run tools/gpu_check.sh", "machine": "runs on this machine",
                "target": "above the target of 20", "hidden check": "a hidden assert",
                "run remark": "no GPU was available", "run date": "on 2026-12-01"}
    assert {kind for kind, _ in rv.BUILDER_PHRASES} == set(examples)
    for kind, text in examples.items():
        assert [v.text.split(":")[0] for v in rv.builder_phrases(notebook(new_markdown_cell(text)))] == [kind]


# --------------------------------------------------------------------------- equation labels
LABELLED = new_markdown_cell(
    "$$\nx = 1\n$$ (time-gradients)\n\n(stacked-flow-loglik)=\n:::{prf:theorem}\n:label: thm-adjoint\n"
    "A theorem.\n:::\n\n$$\n\\begin{equation}\\label{planar-map} y = 2 \\end{equation}\n$$")


def test_equation_labels_of_all_four_forms():
    assert rv.equation_labels(notebook(LABELLED)) == {
        "time-gradients", "stacked-flow-loglik", "thm-adjoint", "planar-map"}


def test_internal_equation_labels_in_outputs_and_comments_only():
    nb = notebook(
        LABELLED,
        new_markdown_cell("As {eq}`time-gradients` shows, eq. (time-gradients) holds."),   # markdown: no
        code("y = f(x)  # eq. (time-gradients), and (planar-map)\nprint('eq. (time-gradients)')",
             [stream("eq. (stacked-flow-loglik): True\nforward log q (eq. planar-map) = 1\n"
                     "(unknown-label) and (x) are fine\n")]),
        code("# eq. (time-gradients)", [stream("eq. (time-gradients)\n")], tags=["remove-cell"]),
        code("# (planar-map)", [stream("(planar-map)\n")], tags=["remove-output"]),
    )
    assert rv.internal_equation_labels(nb, chapter="c") == [
        V("c", 2, "code", 1, "eq. (time-gradients)"),
        V("c", 2, "code", 1, "(planar-map)"),
        V("c", 2, "output", 1, "eq. (stacked-flow-loglik)"),
        V("c", 2, "output", 2, "eq. planar-map"),
        V("c", 4, "code", 1, "(planar-map)"),
    ]
    assert rv.internal_equation_labels(nb, labels={"other"}) == []


# ---------------------------------------------------------------------------- printed tables
def test_printed_tables_by_columns_pipes_and_markdown():
    spaced = "model    params   error\nResNet   576,778  0.41%\nODE-Net  208,266  0.42%\n"
    piped = "tol | NFE\n1e-3 | 20\n1e-5 | 38\n"
    markdown = "| a | b |\n|---|---|\n"
    prose = "The gradient agrees to 1e-8: True\nNFE forward 20, backward 19\nsecond line\n"
    arrays = "[[1.   2.5]\n [3.   4. ]\n [5.   6. ]]\n"
    nb = notebook(
        code("a", [stream(spaced)]),
        code("b", [stream("header\n"), stream(piped)]),        # rows in one box are counted per box
        code("c", [result({"text/plain": markdown})]),
        code("d", [stream(prose + arrays)]),
        code("e", [result({"text/plain": spaced, "text/html": "<table/>"})]),   # a rendered table
        code("f", [stream(spaced)], tags=["remove-output"]),
        code("g", [stream(spaced)], tags=["hide-input"]),
        code("h", [stream("a  b\nc  d\n")]),                   # two rows: not yet a table
    )
    assert rv.printed_tables(nb, chapter="c") == [
        V("c", 0, "output", 1, "3 rows: model    params   error"),
        V("c", 1, "output", 2, "3 rows: tol | NFE"),
        V("c", 2, "output", 1, "2 rows: | a | b |"),
        V("c", 6, "output", 1, "3 rows: model    params   error"),
    ]


# ------------------------------------------------------------------------------ output boxes
def test_output_boxes_count_visible_text_outputs():
    figure = result({"text/plain": "<Figure>", "image/png": "iVBOR"}, "display_data")
    nb = notebook(
        code("a", [stream("one\n"), stream("two\n"), stream("three\n")]),
        code("b", [stream("one\ntwo\n"), figure]),                              # one text box
        code("c", [stream("out\n"), stream("warning\n", "stderr")]),
        code("d", [stream("one\n"), stream("two\n")], tags=["remove-output"]),
        code("e", [stream("one\n"), stream("two\n")], tags=["remove-input"]),
        code("f", [result({"text/plain": "df", "text/html": "<table/>"}), stream("one\n")]),
    )
    assert rv.output_boxes(nb, chapter="c") == [
        V("c", 0, "output", 0, "3 boxes, the first: one"),
        V("c", 2, "output", 0, "2 boxes, the first: out"),
        V("c", 4, "output", 0, "2 boxes, the first: one"),
    ]


# ------------------------------------------------------------------------------------- prose
def test_prose_words_leave_out_math_code_and_directive_options():
    nb = notebook(
        new_markdown_cell("# A title\n\nThe adjoint $\\mathbf{a}(t)$ obeys\n$$\na = b + c\n$$ (adjoint-ode)\n"
                          "as {cite}`chen2018neural` shows [here](https://example.org/a b)."),   # 10 words
        new_markdown_cell(":::{admonition} Where the note differs\n:class: dropdown\n:label: x-y\n"
                          "Two words.\n:::\n\n(target-label)=\n```python\nx = 1 + 2\n```\n| a | b |\n|---|---|"),
        code("# not prose at all"),
    )
    # 10 + "Where the note differs" (4) + "Two words." (2) + the table's a and b (2)
    assert rv.prose_words(nb) == 18
    assert rv.word_limit("11_odenet_mnist") == rv.word_limit("12_cnf_vs_nf") == 2500
    assert rv.word_limit("01_resnets_to_odes") == rv.word_limit("intro") == 3000


# -------------------------------------------------------------------------------- the report
def test_check_and_main_on_files(tmp_path, capsys, monkeypatch):
    book = tmp_path / "book"
    book.mkdir()
    nb = notebook(LABELLED, code(LONG + "  # eq. (time-gradients)", [stream("a\n"), stream("b\n")]))
    nbformat.write(nb, book / "01_one.ipynb")
    (book / "intro.md").write_text("---\ntitle: x\n---\n# Intro\n\nMade in a session on this CPU.\n")
    monkeypatch.setattr(rv, "ROOT", tmp_path)
    found = rv.check(book / "01_one.ipynb")
    assert {k: len(v) for k, v in found.items()} == {
        "code>88": 1, "out>88": 0, "builder": 0, "eq-label": 1, "tables": 0, "boxes": 1, "math": 0}
    assert rv.load(book / "intro.md").cells[0].source.startswith("# Intro")
    assert rv.main([]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[2].split() == ["01_one.ipynb", "1", "0", "0", "1", "0", "1", "0", "2", "/", "3,000"]
    assert lines[3].split() == ["intro.md", "0", "0", "2", "0", "0", "0", "0", "8", "/", "3,000"]
    assert rv.main(["--details", "intro"]) == 0
    details = capsys.readouterr().out
    assert "cell 0 markdown line 3: run remark: session" in details
    assert "cell 0 markdown line 3: machine: this CPU" in details


def test_broken_math_finds_a_formula_split_into_a_list_item():
    nb = notebook(new_markdown_cell("The sum $a\n+ b$ is fine?\n\n- a real item\n- $x$ another\n"
                                    "and $c\n- d$ too"))
    assert rv.broken_math(nb, chapter="c") == [V("c", 0, "markdown", 2, "+ b$ is fine?"),
                                               V("c", 0, "markdown", 7, "- d$ too")]
