"""The protocol between the compiled-path benchmarks (``compiled.py``, ``compiled_cnf.py``,
``compiled_odenet.py``) and their worker processes, and the timing pieces they share.

A worker prints one line ``@@ {json}`` when it is ready (what it measured while warming up), then, for
every line ``run`` on its standard input, makes one timed call of each of its variants and answers
``@@ {name: [cpu s, wall s]}`` (process CPU time and wall time); any other line ends it. Plain Python,
so that a PyTorch worker and a JAX worker, each in its own virtual environment, both import it.
"""
from __future__ import annotations

import json
import sys
import time
from typing import Callable, Dict, Iterator, List, Optional, Tuple


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


def compile_times(calls: Dict[str, Callable[[], object]]) -> Dict[str, float]:
    """Call each twice; the first call's extra seconds over the second, its compilation (wall clock)."""
    seconds = {}
    for name, call in calls.items():
        start = time.perf_counter()
        call()
        first = time.perf_counter() - start
        start = time.perf_counter()
        call()
        seconds[name] = first - (time.perf_counter() - start)
    return seconds


def rotating_rounds(turns: List[Optional[str]], repeats: int) -> Iterator[List[Optional[str]]]:
    """The order of each of ``repeats`` rounds: ``turns`` rotated by one more place every round, so that
    no variant always runs right after the same one (the turn after a worker process's starts with
    colder caches)."""
    for i in range(repeats):
        k = i % len(turns)
        yield turns[k:] + turns[:k]


def take_turns(local: Dict[str, Callable[[], Tuple[float, float]]], repeats: int,
               worker=None) -> Dict[str, list]:
    """``repeats`` rounds in :func:`rotating_rounds` order: one call of each ``local`` variant (returning
    ``(cpu s, wall s)``) and, with a ``worker`` (``compiled.py``'s ``Worker``), one ``run`` of all of its
    variants. Returns every variant's list of ``(cpu s, wall s)``, the local ones first."""
    runs = {name: [] for name in local}
    turns = [*local, *([None] if worker is not None else [])]
    for order in rotating_rounds(turns, repeats):
        for name in order:
            for key, value in (worker.run() if name is None else {name: local[name]()}).items():
                runs.setdefault(key, []).append(value)
    return runs
