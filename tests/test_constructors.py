"""Bad constructor arguments of the fields and flows: a ValueError naming the argument and what was
expected, before any tensor is built (bool is not taken for a number)."""
import pytest

import nodelib
from nodelib.dynamics import ContractingReadoutField, ConvField, GatedPlanarField, HyperPlanarField, MLPField
from nodelib.flows import PlanarLayer


@pytest.mark.parametrize("build,match", [
    (lambda: MLPField(True), r"dim must be a positive int, got True"),
    (lambda: MLPField(2, hidden=(0,)), r"hidden must be a sequence of positive ints, got \(0,\)"),
    (lambda: MLPField(2, hidden=5), r"hidden must be a sequence of positive ints, got 5"),
    (lambda: ConvField(True), r"channels must be a positive int, got True"),
    (lambda: ConvField(64, groups=3), r"groups must be a positive int dividing channels=64, got 3"),
    (lambda: ConvField(8, kernel_size=2), r"kernel_size must be a positive odd int, got 2"),
    (lambda: ContractingReadoutField(lam=0.0), r"lam must be a positive float, got 0.0"),
    (lambda: ContractingReadoutField(lam=1.0, hidden=0), r"hidden must be a positive int, got 0"),
    (lambda: GatedPlanarField(2, 3, init_scale="a"), r"init_scale must be a non-negative float, got 'a'"),
    (lambda: HyperPlanarField(2, 4, hidden=(8, -1)), r"hidden must be a sequence of positive ints"),
    (lambda: PlanarLayer(2, init_scale=float("nan")), r"init_scale must be a positive float, got nan"),
    (lambda: PlanarLayer(2, init_scale=0.0), r"init_scale must be a positive float, got 0.0: at w = 0"),
    (lambda: nodelib.PlanarFlow(2, 0), r"n_layers must be a positive int, got 0"),
])
def test_bad_constructor_arguments_name_the_argument(build, match):
    with pytest.raises(ValueError, match=match):
        build()
