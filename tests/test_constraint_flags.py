"""Constraint rules that need more than one fix, depthwise-only per-channel weights, unsigned ReLU outputs.

Model: conv-bn-relu -> depthwise conv -> conv (signed output), built in code.
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

from qconvert.core.capture import capture
from qconvert.core.constraints import QuantConstraints
from qconvert.core.quantize import calibrate, quantize
from qconvert.errors import ConstraintError
from qconvert.recipe.model import QScheme, Recipe

QD = torch.ops.quantized_decomposed

# x -> conv(4) -> bn -> relu -> depthwise conv(4) -> conv(2)
NET = nn.Sequential(
    nn.Conv2d(1, 4, 3, padding=1), nn.BatchNorm2d(4), nn.ReLU(),
    nn.Conv2d(4, 4, 3, padding=1, groups=4), nn.Conv2d(4, 2, 1),
)
TIDL_LIKE = QuantConstraints(activation_modes=frozenset({"sym"}), weight_modes=frozenset({"sym"}), weight_per_channel=True,
                             per_channel_depthwise_only=True, power_of_two="required", unsigned_nonnegative=True)


def _quantized(recipe: Recipe, constraints: QuantConstraints):  # type: ignore[no-untyped-def]
    torch.manual_seed(0)
    x = torch.randn(16, 1, 8, 8)
    cap = capture(NET.eval(), (x[:2],))
    return quantize(cap, recipe, calibrate(cap, recipe, [(x,)]), constraints, "t")


def _recipe(on_unsupported: str) -> Recipe:
    return Recipe(weights=QScheme(granularity="per_channel"), activations=QScheme(mode="asym_u"), on_unsupported=on_unsupported)


def test_every_violated_rule_is_adapted_not_only_the_last() -> None:
    qm = _quantized(_recipe("adapt"), TIDL_LIKE)
    acts = [tq for tq in qm.decisions.values() if tq.role == "activation"]
    assert acts and all(tq.scheme.mode == "sym" and tq.scheme.power_of_two for tq in acts)
    weights = {tq.module: tq for tq in qm.decisions.values() if tq.role == "weight"}
    assert weights["3"].per_channel and weights["3"].depthwise  # the depthwise conv keeps per-channel weights
    assert not weights["0"].per_channel and not weights["4"].per_channel
    assert any("only depthwise convolution weights may be per_channel" in w for w in qm.warnings)


def test_error_mode_names_the_first_broken_rule() -> None:
    with pytest.raises(ConstraintError, match="activation mode must be one of"):
        _quantized(_recipe("error"), TIDL_LIKE)


def test_non_negative_sym_activation_uses_the_unsigned_range_and_signed_ones_stay_signed() -> None:
    qm = _quantized(_recipe("adapt"), TIDL_LIKE)
    grids = {n.args[0].name: n.args[1:6] for n in qm.graph.graph.nodes if n.target == QD.quantize_per_tensor.default}
    _, zp, qmin, qmax, dtype = grids["relu"]
    assert (zp, qmin, qmax, dtype) == (0, 0, 255, torch.uint8)
    out = grids["conv2d_2"]
    assert (out[1], out[2], out[3], out[4]) == (0, -128, 127, torch.int8)
    for s, *_ in grids.values():
        assert float(s) == 2.0 ** round(torch.log2(torch.tensor(float(s))).item())
