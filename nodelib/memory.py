"""Memory kept for the backward pass: the quantity the adjoint method keeps constant.

Chapter "Memory and cost". :func:`kept_for_backward` counts the bytes of the distinct tensor
storages that autograd saves while a function runs (activations, inputs of nonlinearities, the
states an adjoint keeps). It is exact, works on any device, and measures what the backward pass
will need, unlike a process-level peak that also counts transient buffers.
"""
from __future__ import annotations

import gc
import weakref
from typing import Any, Callable, Tuple

import torch

__all__ = ["kept_for_backward"]


def kept_for_backward(run: Callable[[], Any]) -> Tuple[Any, int]:
    """Call ``run()`` and return ``(its result, bytes saved by autograd for the backward pass)``.

    Only tensors still held by a graph when ``run()`` returns count: a graph that was built and
    dropped along the way (a solver's internal arithmetic, say) is not kept for the backward pass.
    A storage saved several times (a parameter used at every step, a state saved by two operations)
    counts once.
    """
    records: list = []

    def pack(x: torch.Tensor) -> torch.Tensor:
        # A detached alias: the same storage, without the grad_fn that would make a saved output a
        # reference cycle (and keep a dropped graph alive until the garbage collector runs).
        held = x.detach()
        storage = held.untyped_storage()
        records.append((weakref.ref(held), held.device, storage.data_ptr(), storage.nbytes()))
        return held

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda held: held):
        out = run()
    gc.collect()
    alive = {(device, pointer): nbytes for ref, device, pointer, nbytes in records if ref() is not None}
    return out, sum(alive.values())
