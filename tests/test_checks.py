"""relative_error against hand-computed values."""
import pytest
import torch

from nodelib.checks import relative_error


def test_tensor_and_sequence():
    assert relative_error(torch.tensor([3.0, 4.0]), torch.tensor([0.0, 5.0])) == pytest.approx(10 ** 0.5 / 5.0)
    parts = [torch.tensor([1.0]), torch.tensor([[2.0, 2.0]])]
    shifted = [torch.tensor([1.0]), torch.tensor([[2.0, 3.0]])]
    assert relative_error(shifted, parts) == pytest.approx(1.0 / 3.0)


def test_bad_input():
    with pytest.raises(ValueError, match="reference is zero"):
        relative_error(torch.ones(2), torch.zeros(2))
    with pytest.raises(ValueError, match="result has 3 entries but reference has 2"):
        relative_error(torch.ones(3), torch.ones(2))
    with pytest.raises(TypeError, match="result must be a tensor"):
        relative_error(1.0, torch.ones(2))
