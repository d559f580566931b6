"""What Table 1 measures besides accuracy: parameters and the memory a backward pass needs.

:func:`saved_tensor_bytes` counts, exactly and on any device, the bytes that autograd keeps for
the backward pass while a function runs: every tensor that an operation saves for its backward
(``torch.autograd.graph.saved_tensors_hooks`` sees each one) and that is still held when the
function returns, counted once per storage. This is the "memory" column of Table 1: direct
backpropagation through a solver keeps the intermediate states of every step (memory grows with
the number of steps), the adjoint method keeps the states at the output times only (chapter
"ODE-Net on MNIST").
"""
from __future__ import annotations

import weakref
from typing import Callable, Iterable, Tuple

import torch
from torch import Tensor, nn

__all__ = ["count_parameters", "saved_tensor_bytes"]


def count_parameters(module: nn.Module) -> int:
    """Number of trainable scalars of ``module``."""
    return sum(p.numel() for p in module.parameters() if p.requires_grad)


def saved_tensor_bytes(fn: Callable[[], Tensor], *, exclude: Iterable[Tensor] = ()) -> Tuple[Tensor, int]:
    """Run ``fn()`` and count the bytes that autograd saved for the backward pass meanwhile.

    Args:
        fn: a function building a graph, e.g. ``lambda: loss_fn(model(x), y)``.
        exclude: tensors whose storages are not counted (typically the model's parameters, which
            live in memory whatever the backward pass needs).

    Returns:
        ``(fn(), bytes)``: the output (keep it alive: the count is of what its graph holds) and the
        total size of the distinct storages of saved tensors still alive when ``fn`` returns.
        Tensors saved and freed during ``fn`` (branches of the graph that were dropped) are not counted.
    """
    excluded = {t.untyped_storage().data_ptr() for t in exclude}
    saved: list = []

    def pack(tensor: Tensor) -> Tensor:
        saved.append(weakref.ref(tensor))
        return tensor

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda tensor: tensor):
        out = fn()
    storages = {}
    for ref in saved:
        tensor = ref()
        if tensor is None:
            continue
        storage = tensor.untyped_storage()
        if storage.data_ptr() not in excluded:
            storages[storage.data_ptr()] = storage.nbytes()
    return out, sum(storages.values())
