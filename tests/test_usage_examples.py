"""The code a reader copies: the README's "Using nodelib" snippet and the page "Using nodelib without
the book" run as printed, and print what the page says they print."""
import contextlib
import io
import pathlib
import re

import torch

import nodelib

ROOT = pathlib.Path(__file__).resolve().parents[1]


def python_blocks(text):
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_the_readme_snippet_gives_the_gradient_of_direct_backprop():
    section = ROOT.joinpath("README.md").read_text().split("## Using nodelib")[1].split("\n## ")[0]
    (snippet,) = python_blocks(section)
    namespace = {}
    with contextlib.redirect_stdout(io.StringIO()) as said:
        exec(snippet, namespace)
    nfe_forward, nfe_backward = map(int, said.getvalue().split())
    assert nfe_forward > 0 and nfe_backward > 0
    z0, field, t = namespace["z0"], namespace["field"], namespace["t"]
    reference = z0.detach().clone().requires_grad_(True)
    nodelib.odeint(field, reference, t, rtol=1e-10, atol=1e-12).pow(2).mean().backward()
    assert torch.allclose(z0.grad, reference.grad, rtol=1e-4, atol=1e-6)


def test_the_usage_page_runs_and_prints_what_its_comments_say():
    namespace = {}
    for block in python_blocks(ROOT.joinpath("book", "api", "using.md").read_text()):
        with contextlib.redirect_stdout(io.StringIO()) as said:
            exec(block, namespace)
        for line, printed in zip([l for l in block.splitlines() if l.startswith("print(")],
                                 said.getvalue().splitlines()):
            if "  # " in line:
                assert printed == line.split("  # ", 1)[1], (line, printed)
    nll = float(said.getvalue().split()[1])
    assert nll < nodelib.mean_nll(nodelib.CNF(nodelib.MLPField(2, hidden=(32, 32))), namespace["data"][:500])
