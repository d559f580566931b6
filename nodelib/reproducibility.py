"""Determinism for chapters, tests and experiments: one call seeds every generator nodelib uses."""
from __future__ import annotations

import random

import numpy as np
import torch

__all__ = ["seed_everything"]


def seed_everything(seed: int = 0, *, threads: int | None = None) -> None:
    """Seed Python's, NumPy's and PyTorch's generators; optionally fix PyTorch's CPU thread count.

    Returns None, so a notebook cell that ends with the call shows nothing.

    Example:
        >>> import torch, nodelib
        >>> nodelib.seed_everything(3)
        >>> first = torch.randn(2)
        >>> nodelib.seed_everything(3)
        >>> torch.equal(first, torch.randn(2))
        True
    """
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative int, got {seed!r}.")
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if threads is not None:
        torch.set_num_threads(threads)
