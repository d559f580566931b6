"""nodelib.benchmark.count_operations against counts known in closed form."""
import pytest
import torch

import nodelib
from nodelib.benchmark import count_operations


def test_count_operations_counts_each_dispatched_kernel_once():
    a, b = torch.ones(3), torch.full((3,), 2.0)
    assert count_operations(lambda: [a + b for _ in range(5)]) == {"aten.add": 5}
    x, y = torch.ones(3, requires_grad=True), torch.ones(3, requires_grad=True)
    counts = count_operations(lambda: (x * y).sum().backward())
    # forward x*y; backward d/dx = y*g and d/dy = x*g: three multiplications, one sum (chain rule)
    assert counts["aten.mul"] == 3 and counts["aten.sum"] == 1


def test_count_operations_sees_every_field_evaluation_of_a_solve():
    class SineField(torch.nn.Module):
        def forward(self, t, z):
            return torch.sin(z)

    counts = count_operations(lambda: nodelib.odeint(SineField(), torch.ones(2), torch.tensor([0.0, 1.0]),
                                                     method="rk4", options=dict(step_size=0.25)))
    assert counts["aten.sin"] == 4 * 4  # four evaluations per rk4 step, four steps


def test_count_operations_refuses_a_non_callable():
    with pytest.raises(TypeError, match="fn must be a callable"):
        count_operations(3)
