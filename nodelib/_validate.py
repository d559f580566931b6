"""Argument checks shared by nodelib's constructors and loops: one wording for every message,
naming the argument and what was expected (``bool`` is never taken for a number)."""
from __future__ import annotations

import math
from typing import Any, Sequence


def is_real(value: Any) -> bool:
    """A Python int or float (``bool`` and tensors excluded)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def positive_ints(**values: Any) -> None:
    """Each keyword's value must be an ``int`` >= 1."""
    for name, value in values.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}.")


def positive_int_sequence(name: str, values: Any) -> tuple:
    """``values`` must be a sequence of ints >= 1; returned as a tuple."""
    if not isinstance(values, Sequence) or isinstance(values, str) or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in values):
        raise ValueError(f"{name} must be a sequence of positive ints, got {values!r}.")
    return tuple(values)


def positive_float(name: str, value: Any) -> None:
    """``value`` must be a finite number > 0."""
    if not is_real(value) or not 0 < value < math.inf:
        raise ValueError(f"{name} must be a positive float, got {value!r}.")


def non_negative_float(name: str, value: Any) -> None:
    """``value`` must be a finite number >= 0."""
    if not is_real(value) or not 0 <= value < math.inf:
        raise ValueError(f"{name} must be a non-negative float, got {value!r}.")
