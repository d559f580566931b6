"""The one number every check in the book reports: the relative error of a result against a reference."""
from __future__ import annotations

from typing import Sequence, Union

import torch
from torch import Tensor

__all__ = ["relative_error"]

Tensors = Union[Tensor, Sequence[Tensor]]


def relative_error(result: Tensors, reference: Tensors) -> float:
    """``|result - reference| / |reference|`` in the Euclidean norm, over all entries.

    Either argument may be a tensor or a sequence of tensors (for example one gradient per
    parameter), flattened and concatenated in order; both must hold the same number of entries.
    """
    a, b = _flatten(result, "result"), _flatten(reference, "reference")
    if a.shape != b.shape:
        raise ValueError(f"result has {a.numel()} entries but reference has {b.numel()}; they must match.")
    scale = b.detach().norm()
    if scale == 0:
        raise ValueError("reference is zero, so a relative error is undefined; compare absolute errors instead.")
    return float((a.detach().to(b.dtype) - b.detach()).norm() / scale)


def _flatten(x: Tensors, name: str) -> Tensor:
    if isinstance(x, Tensor):
        return x.reshape(-1)
    if isinstance(x, (list, tuple)) and x and all(isinstance(t, Tensor) for t in x):
        return torch.cat([t.reshape(-1) for t in x])
    raise TypeError(f"{name} must be a tensor or a non-empty sequence of tensors, got {type(x).__name__}.")
