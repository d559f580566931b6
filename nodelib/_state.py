"""Tuple states at the boundary: torchdiffeq accepts a tuple of tensors as the state, nodelib too.

Code written for torchdiffeq integrates, for example, ``(z, log p)`` together by passing a tuple
``y0 = (z0, logp0)`` and a field returning a tuple of the same shapes. :func:`nodelib.odeint` and
:func:`nodelib.odeint_adjoint` flatten such a state into one vector once, at the boundary, solve
(and differentiate) the flat problem, and hand back one tensor per element of the tuple, so that
everything in between works with a single tensor.
"""
from __future__ import annotations

import math
from typing import Callable, List, Sequence, Tuple

import torch
from torch import Tensor


class TupleState:
    """The shapes of a tuple state, with the maps between the tuple and one flat vector.

    Args:
        y0: the initial state, a non-empty tuple of floating-point tensors of one dtype and device.
    """

    def __init__(self, y0: tuple):
        if len(y0) == 0:
            raise ValueError("y0 is an empty tuple; pass a tensor or a tuple of at least one tensor.")
        for i, y in enumerate(y0):
            if not isinstance(y, Tensor):
                raise TypeError(f"y0[{i}] must be a torch.Tensor, got {type(y).__name__}.")
            if y.dtype != y0[0].dtype or y.device != y0[0].device:
                raise ValueError(f"y0[{i}] has dtype {y.dtype} on {y.device} but y0[0] has dtype {y0[0].dtype} "
                                 f"on {y0[0].device}; the elements of a tuple state must share dtype and device "
                                 f"(they are solved as one vector).")
        self.shapes: List[torch.Size] = [y.shape for y in y0]
        self.sizes: List[int] = [y.numel() for y in y0]

    @classmethod
    def from_shapes(cls, shapes: Sequence[torch.Size]) -> "TupleState":
        """The maps for a tuple of tensors of the given shapes (no checks: the shapes are nodelib's)."""
        state = cls.__new__(cls)
        state.shapes = [torch.Size(shape) for shape in shapes]
        state.sizes = [math.prod(shape) for shape in state.shapes]
        return state

    def flatten(self, parts: tuple) -> Tensor:
        """One vector from a tuple shaped like the state (differentiable)."""
        return torch.cat([p.reshape(-1) for p in parts])

    def mixed_norm(self, flat: Tensor) -> Tensor:
        """The largest RMS over the elements: torchdiffeq's default error norm for tuple states."""
        # (vector_norm rather than pow-mean-sqrt: its derivative at a zero error is 0, not NaN, which
        # matters when autograd differentiates through the step-size control of a direct solve)
        return torch.stack([torch.linalg.vector_norm(p) / p.numel() ** 0.5
                            for p in flat.split(self.sizes) if p.numel()]).max()

    def split(self, flat: Tensor) -> Tuple[Tensor, ...]:
        """The tuple of tensors from a flat vector ``(..., n)``; leading dimensions are kept."""
        lead = flat.shape[:-1]
        return tuple(p.reshape(lead + shape) for p, shape in zip(flat.split(self.sizes, dim=-1), self.shapes))

    def wrap(self, func: Callable) -> Callable[[Tensor, Tensor], Tensor]:
        """``func`` on tuples as a field on flat vectors; its output is checked at every call."""
        def flat_func(t: Tensor, y: Tensor) -> Tensor:
            if not torch.is_grad_enabled():  # (views made under no_grad of a tensor that requires grad
                y = y.detach()               # confuse a field that calls requires_grad_ on them)
            out = func(t, self.split(y))
            if not isinstance(out, (tuple, list)) or len(out) != len(self.shapes):
                raise TypeError(f"func must return a tuple of {len(self.shapes)} tensors shaped like y0, got "
                                f"{type(out).__name__}{f' of length {len(out)}' if isinstance(out, (tuple, list)) else ''}.")
            for i, (o, shape) in enumerate(zip(out, self.shapes)):
                if not isinstance(o, Tensor) or o.shape != shape:
                    got = tuple(o.shape) if isinstance(o, Tensor) else type(o).__name__
                    raise ValueError(f"func(t, y)[{i}] returned {got} but y[{i}] has shape {tuple(shape)}; the "
                                     f"vector field must return dy/dt with the shape of y.")
            return self.flatten(out)
        return flat_func
