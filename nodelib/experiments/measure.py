"""Parameter counts, the "# Params" column of Table 1 (chapter "ODE-Net on MNIST").

The "Memory" column is measured with :func:`nodelib.memory.kept_for_backward` (chapter "Memory
and cost"): the bytes of the distinct storages autograd keeps for the backward pass.
"""
from __future__ import annotations

from torch import nn

__all__ = ["count_parameters"]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)
