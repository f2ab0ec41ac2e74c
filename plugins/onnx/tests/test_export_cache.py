"""One ONNX export per distinct graph: an equal graph (even quantized again, with other node names) is a hit
and gives an equal model; a changed weight or scale is a miss."""

from __future__ import annotations

import copy

import numpy as np
import onnxruntime as ort
import torch
from qconvert_onnx import export_cache
from qconvert_onnx.export import dynamo_export
from torch import nn

from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.recipe.model import Recipe


def _qgraph(model: nn.Module, x: torch.Tensor, recipe: Recipe) -> torch.fx.GraphModule:
    cap = capture(model, (x[:2],))
    return quantize(cap, recipe, calibrate(cap, recipe, [(x,)])).graph


def _run(model_bytes: bytes, x: torch.Tensor) -> np.ndarray:
    sess = ort.InferenceSession(model_bytes, providers=["CPUExecutionProvider"])
    return sess.run(None, {"x": x.numpy()})[0]


def test_equal_graphs_share_one_export_and_changes_do_not() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 4, 3), nn.Flatten()).eval()
    x = torch.randn(8, 3, 8, 8)
    recipe = Recipe()
    first, again = _qgraph(model, x, recipe), _qgraph(model, x, recipe)  # quantized twice, as two targets do
    before = export_cache.stats()
    a = dynamo_export(first, (x[:2],), ("x",), ["y"])
    b = dynamo_export(again, (x[:2],), ("x",), ["y"])
    after = export_cache.stats()
    assert after["hits"] == before["hits"] + 1 and after["misses"] == before["misses"] + 1
    assert np.array_equal(_run(a.SerializeToString(), x), _run(b.SerializeToString(), x))
    b.graph.node.pop()  # the caller's copy is its own: rewriting it leaves the cached model whole
    c = dynamo_export(first, (x[:2],), ("x",), ["y"])
    assert len(c.graph.node) == len(a.graph.node)

    changed = copy.deepcopy(model)
    conv = changed[0]
    assert isinstance(conv, nn.Conv2d)
    with torch.no_grad():
        conv.weight[0, 0, 0, 0] += 1.0
    misses = export_cache.stats()["misses"]
    dynamo_export(_qgraph(changed, x, recipe), (x[:2],), ("x",), ["y"])  # another weight
    dynamo_export(_qgraph(model, x, Recipe(activations={"bits": 8, "mode": "sym"})), (x[:2],), ("x",), ["y"])  # another grid
    assert export_cache.stats()["misses"] == misses + 2
