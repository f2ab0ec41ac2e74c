"""torch.onnx's operator registry built once per process: an export with the shared registry writes the same
ONNX model, byte for byte, as one that builds its own, including after another export with a custom translation
table used (and added to) its copy."""

from __future__ import annotations

import pytest
import torch
from qconvert_onnx import torchlib_registry
from torch import nn

from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.recipe.model import Recipe


def test_shared_registry_exports_the_same_model(monkeypatch: pytest.MonkeyPatch) -> None:
    from qconvert_onnx.dynamic import translation_table  # after torchao registered the quantized_decomposed ops
    from qconvert_onnx.export import _dynamo_export

    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten(), nn.Linear(144, 5)).eval()
    x = torch.randn(8, 3, 8, 8)
    cap = capture(model, (x[:2],))
    graph = quantize(cap, Recipe(), calibrate(cap, Recipe(), [(x,)])).graph

    def export() -> bytes:
        return _dynamo_export(graph, (x[:2],), ("x",), ["y"]).SerializeToString()

    torchlib_registry._BUILT.clear()
    registration = torchlib_registry._registration()
    assert registration is not None, "torch moved ONNXRegistry.from_torchlib: the registry is built per export again"
    original = registration[0].ONNXRegistry.__dict__["from_torchlib"]
    with monkeypatch.context() as m:
        m.setattr(torchlib_registry, "_registration", lambda: None)  # this export builds its own registry, as torch does
        own = export()
    assert not torchlib_registry._BUILT
    first = export()  # builds and keeps the registry
    assert torchlib_registry._BUILT
    _dynamo_export(graph, (x[:2],), ("x",), ["y"], translation_table())  # a copy gets the table; the kept one does not
    again = export()
    assert own == first == again
    assert registration[0].ONNXRegistry.__dict__["from_torchlib"] is original  # restored after each export
