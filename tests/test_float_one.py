"""bench.float_one: an activation quantizer removed from a quantized graph leaves that tensor float and
moves the output closer to float; unknown names are refused; the source graph is not changed."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from bench.float_one import activation_quantizers, groups, with_float
from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.recipe import recipe_from_text


def _quantized() -> tuple[nn.Module, torch.Tensor, torch.fx.GraphModule]:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU6(), nn.Conv2d(8, 8, 1), nn.Flatten(),
                          nn.Linear(8 * 6 * 6, 10)).eval()
    x = torch.randn(32, 3, 6, 6)
    recipe = recipe_from_text("version: 1\nactivations: {bits: 4, mode: asym_u}\n")
    cap = capture(model, (x[:2],))
    return model, x, quantize(cap, recipe, calibrate(cap, recipe, [(x,)])).graph


def _err(ref: torch.Tensor, out: torch.Tensor) -> float:
    return float(((ref - out) ** 2).mean())


def test_float_tensors_leave_the_graph_closer_to_float() -> None:
    model, x, gm = _quantized()
    acts = activation_quantizers(gm)
    ops = [a.op for a in acts]
    assert "hardtanh" in ops and "linear" in ops, ops
    with torch.no_grad():
        ref, before = model(x), gm(x)
        everything = with_float(gm, [a.tensor for a in acts])(x)
        logits = with_float(gm, [a.tensor for a in acts if a.op == "linear"])(x)
        assert torch.equal(gm(x), before)  # the source graph is untouched
    assert _err(ref, everything) < 0.1 * _err(ref, before)
    assert _err(ref, logits) < _err(ref, before)
    assert "logits (the classifier's output)" in groups(acts)


def test_unknown_tensor_is_refused() -> None:
    _, _, gm = _quantized()
    with pytest.raises(KeyError, match="no_such_tensor"):
        with_float(gm, ["no_such_tensor"])
