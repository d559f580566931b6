"""Every test runs in float64 from a fixed seed, on one thread.

One thread: on a small shared machine, PyTorch's default of one thread per core oversubscribes the
CPU whenever anything else runs, and its spinning worker threads can slow a test down tenfold.
"""
import pytest
import torch

torch.set_num_threads(1)


@pytest.fixture(autouse=True)
def _float64_seeded():
    old = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    torch.manual_seed(0)
    yield
    torch.set_default_dtype(old)
