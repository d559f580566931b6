"""Vector fields ``f(z, t, θ)`` for the book's ODEs (the ``f`` of every chapter).

``MLPField`` is the free-form field of Parts I and II: a multilayer perceptron on the state with
the time appended to its input, ``f(z, t) = MLP([z, t])`` (chapter "From residual networks to
ODEs"). ``GatedPlanarField`` is the continuous planar flow of Part II, a gated sum of planar terms
whose divergence ``tr ∇_z f`` has a closed form (chapter "Continuous planar flows");
``HyperPlanarField`` is the paper's version, whose planar units come from a hypernetwork of ``t``
(chapter "CNF against NF"). ``ConvField`` is the time-concatenated convolutional field of the
ODE-Net of Chen et al., acting on feature maps (chapter "ODE-Net on MNIST").
``ContractingReadoutField`` is the test problem on which reverse-time reconstruction fails
(chapters "Adjoint gradients in practice" and "Faster and more accurate adjoints"). Fields follow
torchdiffeq's calling convention ``field(t, z)``.
"""
from __future__ import annotations

from typing import Optional, Sequence, Type

import torch
from torch import Tensor, nn

from ._validate import non_negative_float, positive_float, positive_int_sequence, positive_ints

__all__ = ["MLPField", "GatedPlanarField", "HyperPlanarField", "ConvField", "ContractingReadoutField"]


class MLPField(nn.Module):
    """``f(z, t) = MLP([z, t])`` on states of shape ``(..., dim)``.

    Args:
        dim: dimension ``n`` of the state ``z``.
        hidden: widths of the hidden layers.
        activation: the nonlinearity between layers (a module class, default ``nn.Tanh``).
        time_dependent: append ``t`` to the input (``False`` gives an autonomous field ``f(z)``).

    Example:
        >>> import torch, nodelib
        >>> field = nodelib.MLPField(2, hidden=(16,))
        >>> field(torch.tensor(0.5), torch.zeros(4, 2)).shape
        torch.Size([4, 2])
    """

    def __init__(self, dim: int, hidden: Sequence[int] = (64, 64), *, activation: Type[nn.Module] = nn.Tanh,
                 time_dependent: bool = True):
        super().__init__()
        positive_ints(dim=dim)
        hidden = positive_int_sequence("hidden", hidden)
        self.dim = dim
        self.time_dependent = time_dependent
        widths = [dim + int(time_dependent), *hidden]
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), activation()]
        layers.append(nn.Linear(widths[-1], dim))
        self.net = nn.Sequential(*layers)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        if z.shape[-1] != self.dim:
            raise ValueError(f"z must have last dimension {self.dim}, got shape {tuple(z.shape)}.")
        if self.time_dependent:
            z = torch.cat([z, t.to(z).expand(*z.shape[:-1], 1)], dim=-1)
        return self.net(z)


class GatedPlanarField(nn.Module):
    """Gated planar dynamics ``f(z, t) = Σ_m σ_m(t) u_m h(w_mᵀz + b_m)``, ``h = tanh`` (eq. :eq:`gated-planar-field`).

    Each of the ``M`` terms is the field of one planar flow; the gates ``σ(t) ∈ [0, 1]^M`` come from
    a small network on ``t`` (linear, tanh, linear, sigmoid) and switch the terms on and off over
    time, as a stack of planar layers applies its layers one after another (chapter "Continuous
    planar flows", after :cite:`chen2018neural`). Every term has its own offset ``b_m``: with one
    shared ``b`` the ``M`` hyperplanes ``w_mᵀz + b = 0`` could not be placed independently.

    Args:
        dim: dimension ``n`` of the state ``z``.
        n_components: the number ``M`` of planar terms (the note writes ``K``).
        gate_hidden: width of the gate network's hidden layer.
        init_scale: standard deviation of the initial ``u_m``, ``w_m`` and ``b_m``.

    :meth:`divergence` gives ``tr ∇_z f = Σ_m σ_m(t) (u_mᵀw_m) h'(w_mᵀz + b_m)`` in closed form
    (eq. :eq:`gated-planar-trace`), at the cost of one evaluation of ``f``.

    Example:
        >>> import torch, nodelib
        >>> field, t = nodelib.GatedPlanarField(2, 3), torch.tensor(0.3)
        >>> z = torch.randn(5, 2, requires_grad=True)
        >>> exact = nodelib.trace_exact(field(t, z), z)  # one autograd pass per dimension
        >>> torch.allclose(field.divergence(t, z), exact, atol=1e-6)
        True
    """

    def __init__(self, dim: int, n_components: int, *, gate_hidden: int = 8, init_scale: float = 0.5):
        super().__init__()
        positive_ints(dim=dim, n_components=n_components, gate_hidden=gate_hidden)
        non_negative_float("init_scale", init_scale)
        self.dim = dim
        self.n_components = n_components
        self.u = nn.Parameter(init_scale * torch.randn(n_components, dim))
        self.w = nn.Parameter(init_scale * torch.randn(n_components, dim))
        self.b = nn.Parameter(init_scale * torch.randn(n_components))
        self.gate = nn.Sequential(nn.Linear(1, gate_hidden), nn.Tanh(), nn.Linear(gate_hidden, n_components),
                                  nn.Sigmoid())

    def gates(self, t: Tensor | float) -> Tensor:
        """The gates ``σ(t) ∈ [0, 1]^M`` at the scalar time ``t``: shape ``(M,)``."""
        ref = self.w
        t = torch.as_tensor(t, dtype=ref.dtype, device=ref.device)
        if t.numel() != 1:
            raise ValueError(f"t must be a scalar time, got a tensor of shape {tuple(t.shape)}.")
        return self.gate(t.reshape(1))

    def _pre_activation(self, z: Tensor) -> Tensor:
        if not isinstance(z, Tensor) or z.dim() < 1 or z.shape[-1] != self.dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"z must be a tensor of shape (..., {self.dim}), got {shape}.")
        if z.dtype != self.w.dtype or z.device != self.w.device:
            raise ValueError(f"z has dtype {z.dtype} on {z.device} but the field's parameters have dtype "
                             f"{self.w.dtype} on {self.w.device}; convert one of them, e.g. z.to({self.w.dtype}).")
        return z @ self.w.T + self.b

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        """``f(z, t)`` for ``z`` of shape ``(..., n)``; returns shape ``(..., n)``."""
        return (self.gates(t) * torch.tanh(self._pre_activation(z))) @ self.u

    def divergence(self, t: Tensor, z: Tensor) -> Tensor:
        """``tr ∇_z f(z, t) = Σ_m σ_m(t) (u_mᵀw_m) h'(w_mᵀz + b_m)``, shape ``(...,)`` (eq. :eq:`gated-planar-trace`)."""
        h = torch.tanh(self._pre_activation(z))
        return (1 - h * h) @ (self.gates(t) * (self.u * self.w).sum(-1))

class HyperPlanarField(nn.Module):
    """Planar dynamics with time-dependent parameters from a hypernetwork (eq. :eq:`hyper-planar-field`):

    ``f(z, t) = Σ_m σ_m(t) u_m(t) h(w_m(t)ᵀz + b_m(t))``,  ``h = tanh``,  ``m = 1, ..., M``.

    The continuous planar flow of :cite:`chen2018neural` (their §4, "time-dependent dynamics"): the
    parameters ``u_m, w_m ∈ Rⁿ``, ``b_m ∈ R`` of each of the ``M`` hidden units, and a gate logit
    ``g_m`` with ``σ_m = sigmoid(g_m) ∈ (0, 1)``, are all outputs of one small network of ``t``
    (a hypernetwork: an MLP ``1 → hidden → ... → M (2n + 2)`` with tanh activations). Unlike
    :class:`GatedPlanarField`, whose hyperplanes are fixed and only switched on and off, here every
    unit's hyperplane moves with time (chapter "CNF against NF").

    Args:
        dim: dimension ``n`` of the state ``z``.
        width: the number ``M`` of hidden units (planar terms).
        hidden: widths of the hypernetwork's hidden layers.

    Parameters: ``Σ_l (a_l + 1) a_{l+1}`` over the layers of widths ``a = (1, *hidden, M (2n + 2))``
    (:meth:`count_parameters`). :meth:`divergence` gives
    ``tr ∇_z f = Σ_m σ_m(t) (u_m(t)ᵀw_m(t)) h'(w_m(t)ᵀz + b_m(t))`` in closed form
    (eq. :eq:`hyper-planar-trace`): ``t`` enters only through the unit parameters, which do not depend on ``z``.

    Example:
        >>> import torch, nodelib
        >>> field, t = nodelib.HyperPlanarField(2, 8, hidden=(16,)), torch.tensor(0.3)
        >>> z = torch.randn(5, 2, requires_grad=True)
        >>> exact = nodelib.trace_exact(field(t, z), z)
        >>> torch.allclose(field.divergence(t, z), exact, atol=1e-6)
        True
        >>> nodelib.HyperPlanarField.count_parameters(2, 8, (16,)) == sum(
        ...     p.numel() for p in field.parameters())
        True
    """

    def __init__(self, dim: int, width: int, hidden: Sequence[int] = (32, 32)):
        super().__init__()
        positive_ints(dim=dim, width=width)
        hidden = positive_int_sequence("hidden", hidden)
        self.dim, self.width, self.hidden = dim, width, hidden
        widths = (1, *hidden, width * (2 * dim + 2))
        layers: list[nn.Module] = []
        for width_in, width_out in zip(widths[:-1], widths[1:]):
            layers += [nn.Linear(width_in, width_out), nn.Tanh()]
        self.hypernet = nn.Sequential(*layers[:-1])

    @staticmethod
    def count_parameters(dim: int, width: int, hidden: Sequence[int] = (32, 32)) -> int:
        """The number of parameters of ``HyperPlanarField(dim, width, hidden)``, from the layer widths."""
        widths = (1, *hidden, width * (2 * dim + 2))
        return sum((a + 1) * b for a, b in zip(widths[:-1], widths[1:]))

    def unit_parameters(self, t: Tensor | float) -> tuple[Tensor, Tensor, Tensor, Tensor]:
        """``(u, w, b, σ)`` at the scalar time ``t``: shapes ``(M, n)``, ``(M, n)``, ``(M,)``, ``(M,)``."""
        ref = self.hypernet[0].weight
        t = torch.as_tensor(t, dtype=ref.dtype, device=ref.device)
        if t.numel() != 1:
            raise ValueError(f"t must be a scalar time, got a tensor of shape {tuple(t.shape)}.")
        out = self.hypernet(t.reshape(1)).view(self.width, 2 * self.dim + 2)
        n = self.dim
        return out[:, :n], out[:, n:2 * n], out[:, 2 * n], torch.sigmoid(out[:, 2 * n + 1])

    def _check(self, z: Tensor) -> None:
        ref = self.hypernet[0].weight
        if not isinstance(z, Tensor) or z.dim() < 1 or z.shape[-1] != self.dim:
            shape = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"z must be a tensor of shape (..., {self.dim}), got {shape}.")
        if z.dtype != ref.dtype or z.device != ref.device:
            raise ValueError(f"z has dtype {z.dtype} on {z.device} but the field's parameters have dtype "
                             f"{ref.dtype} on {ref.device}; convert one of them, e.g. z.to({ref.dtype}).")

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        """``f(z, t)`` for ``z`` of shape ``(..., n)``; returns shape ``(..., n)``."""
        return self.forward_and_divergence(t, z, divergence=False)[0]

    def divergence(self, t: Tensor, z: Tensor) -> Tensor:
        """``tr ∇_z f(z, t)``, shape ``(...,)`` (eq. :eq:`hyper-planar-trace`)."""
        return self.forward_and_divergence(t, z)[1]

    def forward_and_divergence(self, t: Tensor, z: Tensor, *, divergence: bool = True) -> tuple[Tensor, Optional[Tensor]]:
        """``(f(z, t), tr ∇_z f(z, t))`` from one evaluation of the hypernetwork (the second ``None``
        if ``divergence=False``)."""
        self._check(z)
        u, w, b, gate = self.unit_parameters(t)
        h = torch.tanh(z @ w.T + b)
        f = (gate * h) @ u
        if not divergence:
            return f, None
        return f, (1 - h * h) @ (gate * (u * w).sum(-1))


class ConvField(nn.Module):
    """The ODE-Net field of Chen et al. (2018) on feature maps ``z`` of shape ``(B, C, H, W)``:

    ``f(z, t) = N(K_2(t, ρ(N(K_1(t, ρ(N(z)))))))``,

    where ``N`` is group normalisation, ``ρ`` the ReLU and ``K_i(t, u)`` a ``kernel_size`` convolution
    (stride 1, padding that keeps ``H`` and ``W``) of ``u`` with one more input channel filled with
    the time ``t``: the convolutional analogue of appending ``t`` to an MLP's input. Used as the
    block of the ODE-Net and RK-Net of Table 1 (chapter "ODE-Net on MNIST").

    Args:
        channels: ``C``, the number of feature maps (in and out).
        groups: number of groups of each normalisation; default ``min(32, channels)``.
        kernel_size: odd side ``k`` of the convolution kernels.
        time_dependent: add the time channel (``False`` gives an autonomous field ``f(z)``).

    Parameters: ``2 (C + τ) C k² + 2 C`` in the convolutions (``τ`` = 1 if time-dependent, else 0)
    and ``6 C`` in the three normalisations.

    Example:
        >>> import torch, nodelib
        >>> field = nodelib.ConvField(8)
        >>> field(torch.tensor(0.0), torch.randn(2, 8, 6, 6)).shape
        torch.Size([2, 8, 6, 6])
    """

    def __init__(self, channels: int, *, groups: Optional[int] = None, kernel_size: int = 3,
                 time_dependent: bool = True):
        super().__init__()
        positive_ints(channels=channels)
        groups = min(32, channels) if groups is None else groups
        if isinstance(groups, bool) or not isinstance(groups, int) or groups < 1 or channels % groups:
            raise ValueError(f"groups must be a positive int dividing channels={channels}, got {groups!r}.")
        if isinstance(kernel_size, bool) or not isinstance(kernel_size, int) or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(f"kernel_size must be a positive odd int, got {kernel_size!r}.")
        self.channels = channels
        self.time_dependent = time_dependent
        extra = int(time_dependent)
        self.norm1 = nn.GroupNorm(groups, channels)
        self.conv1 = nn.Conv2d(channels + extra, channels, kernel_size, padding=kernel_size // 2)
        self.norm2 = nn.GroupNorm(groups, channels)
        self.conv2 = nn.Conv2d(channels + extra, channels, kernel_size, padding=kernel_size // 2)
        self.norm3 = nn.GroupNorm(groups, channels)

    def _conv(self, conv: nn.Conv2d, t: Tensor, u: Tensor) -> Tensor:
        if self.time_dependent:
            u = torch.cat([u, t.to(u).expand(u.shape[0], 1, *u.shape[2:])], dim=1)
        return conv(u)

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        if z.dim() != 4 or z.shape[1] != self.channels:
            raise ValueError(f"z must have shape (batch, {self.channels}, height, width), got {tuple(z.shape)}.")
        u = self._conv(self.conv1, t, torch.relu(self.norm1(z)))
        u = self._conv(self.conv2, t, torch.relu(self.norm2(u)))
        return self.norm3(u)


class ContractingReadoutField(nn.Module):
    """``dz1/dt = -λ z1 + g1(z)``, ``dz2/dt = g2(z)`` with ``g`` a small MLP: a stiff test problem.

    Strongly contracting in ``z1`` and neutral in ``z2``; a loss on ``z2`` keeps the adjoint from
    decaying, while reconstructing ``z1`` backwards in time amplifies any error by about
    ``exp(λ t)``: the case where the plain adjoint's gradient is wrong (Gholami et al. 2019), used
    in the chapters "Adjoint gradients in practice" and "Faster and more accurate adjoints".

    Args:
        lam: the contraction rate ``λ`` (positive).
        hidden: width of the MLP ``g``.
    """

    def __init__(self, lam: float, hidden: int = 32):
        super().__init__()
        positive_float("lam", lam)
        positive_ints(hidden=hidden)
        self.lam = float(lam)
        self.g = nn.Sequential(nn.Linear(2, hidden), nn.Tanh(), nn.Linear(hidden, 2))

    def forward(self, t: Tensor, z: Tensor) -> Tensor:
        if z.shape[-1] != 2:
            raise ValueError(f"z must have last dimension 2, got shape {tuple(z.shape)}.")
        g = self.g(z)
        return torch.stack([-self.lam * z[..., 0] + g[..., 0], g[..., 1]], dim=-1)
