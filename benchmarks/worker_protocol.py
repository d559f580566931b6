"""The protocol between ``benchmarks/compiled.py`` (or ``compiled_cnf.py``) and its worker processes.

A worker prints one line ``@@ {json}`` when it is ready (what it measured while warming up), then, for
every line ``run`` on its standard input, makes one timed call of each of its variants and answers
``@@ {name: [cpu s, wall s]}`` (process CPU time and wall time); any other line ends it. Plain Python,
so that a PyTorch worker and a JAX worker, each in its own virtual environment, both import it.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Callable, Dict


def announce(info: dict) -> None:
    """One ``@@ {json}`` line on standard output."""
    print("@@ " + json.dumps(info), flush=True)


def serve(variants: Dict[str, Callable[[], object]]) -> None:
    """Answer every ``run`` on standard input with one timed call of each variant, in order."""
    for line in sys.stdin:
        if line.strip() != "run":
            break
        times = {}
        for name, call in variants.items():
            cpu, wall = time.process_time(), time.perf_counter()
            call()
            times[name] = [time.process_time() - cpu, time.perf_counter() - wall]
        announce(times)
