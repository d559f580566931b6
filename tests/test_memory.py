"""kept_for_backward against hand-counted saved tensors."""
import torch

import nodelib
from nodelib.memory import kept_for_backward


def test_counts_what_autograd_saves():
    x = torch.randn(100, 10, requires_grad=True)
    w = torch.randn(10, 20, requires_grad=True)
    # x @ w saves x and w; tanh saves its output (100 x 20); all float64
    out, kept = kept_for_backward(lambda: torch.tanh(x @ w))
    assert kept == (100 * 10 + 10 * 20 + 100 * 20) * 8
    assert out.shape == (100, 20)


def test_shared_storage_counts_once():
    x = torch.randn(1000, requires_grad=True)
    _, kept = kept_for_backward(lambda: (x * x).sum())  # x saved twice, one storage
    assert kept == 1000 * 8


def test_adjoint_keeps_outputs_only_and_direct_grows_with_steps():
    field = nodelib.MLPField(2, hidden=(16,))
    y0 = torch.randn(32, 2, requires_grad=True)
    t = torch.tensor([0.0, 1.0])
    kept = {}
    for steps in (10, 40):
        opts = dict(method="rk4", options=dict(step_size=1.0 / steps))
        _, kept["adjoint", steps] = kept_for_backward(lambda: nodelib.odeint_adjoint(field, y0, t, **opts))
        _, kept["direct", steps] = kept_for_backward(lambda: nodelib.odeint(field, y0, t, **opts))
    # the adjoint saves the two output states (2 x 32 x 2 float64) and the two times, nothing per step
    assert kept["adjoint", 10] == kept["adjoint", 40] == (2 * 32 * 2 + 2) * 8
    # direct backprop saves per-step activations: four times the steps, about four times the memory
    assert 3.5 < kept["direct", 40] / kept["direct", 10] < 4.1


def test_dropped_graphs_do_not_count():
    x = torch.randn(1000, requires_grad=True)

    def run():
        (x * 2).exp()  # a graph built and dropped: exp saves its 1000-element output, then it is freed
        return x.sin()  # sin saves x

    _, kept = kept_for_backward(run)
    assert kept == 1000 * 8
