"""Memory kept for the backward pass: the quantity the adjoint method keeps constant.

Chapter "Memory and cost". :func:`kept_for_backward` counts the bytes of the distinct tensor
storages that autograd saves while a function runs (activations, inputs of nonlinearities, the
states an adjoint keeps). It is exact, works on any device, and measures what the backward pass
will need, unlike a process-level peak that also counts transient buffers.
"""
from __future__ import annotations

from typing import Any, Callable, Tuple

import torch

__all__ = ["kept_for_backward"]


def kept_for_backward(run: Callable[[], Any]) -> Tuple[Any, int]:
    """Call ``run()`` and return ``(its result, bytes saved by autograd for the backward pass)``.

    A storage saved several times (a parameter used at every step, a state saved by two operations)
    counts once.
    """
    storages: dict[tuple, int] = {}

    def pack(x: torch.Tensor) -> torch.Tensor:
        storage = x.untyped_storage()
        storages[(x.device, storage.data_ptr())] = storage.nbytes()
        return x

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda x: x):
        out = run()
    return out, sum(storages.values())
