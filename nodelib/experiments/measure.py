"""Measurements for Table 1 (chapter "ODE-Net on MNIST"): parameter counts, the "# Params"
column, and the paired comparison of two models' test errors on the same test images.

The "Memory" column is measured with :func:`nodelib.memory.kept_for_backward` (chapter "Memory
and cost"): the bytes of the distinct storages autograd keeps for the backward pass.
"""
from __future__ import annotations

import math
from typing import Iterable

from torch import nn

__all__ = ["count_parameters", "paired_error_difference"]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def _index_set(name: str, wrong: Iterable[int], n: int) -> set:
    items = list(wrong)
    if not all(isinstance(i, int) and 0 <= i < n for i in items) or len(set(items)) != len(items):
        raise ValueError(f"{name} must hold distinct int indices of test images in [0, {n}), got {items[:5]!r}...")
    return set(items)


def paired_error_difference(wrong_a: Iterable[int], wrong_b: Iterable[int], n: int) -> dict:
    """Difference of two models' test errors on the same ``n`` test images, with its paired standard error.

    ``wrong_a`` and ``wrong_b`` are the indices of the images each model misclassifies. With
    :math:`d_i = [a \\text{ wrong on } i] - [b \\text{ wrong on } i] \\in \\{-1, 0, 1\\}`, the
    difference is :math:`\\bar d = (n_a - n_b)/n` and its standard error
    :math:`\\sqrt{\\operatorname{var}(d)/n} = \\sqrt{n_a + n_b - (n_a - n_b)^2/n}\\,/\\,n`, where
    :math:`n_a` counts the images only ``a`` gets wrong and :math:`n_b` those only ``b`` gets wrong
    (the discordant pairs of McNemar's test). Images both models get right or both get wrong do
    not enter, which is why this error is smaller than that of two independent error rates.

    Returns:
        ``{"only_a": n_a, "only_b": n_b, "difference": (n_a - n_b) / n, "se": ...}``.
    """
    if not isinstance(n, int) or n < 1:
        raise ValueError(f"n must be a positive int (the number of test images), got {n!r}.")
    a, b = _index_set("wrong_a", wrong_a, n), _index_set("wrong_b", wrong_b, n)
    only_a, only_b = len(a - b), len(b - a)
    return {"only_a": only_a, "only_b": only_b, "difference": (only_a - only_b) / n,
            "se": math.sqrt(only_a + only_b - (only_a - only_b) ** 2 / n) / n}
