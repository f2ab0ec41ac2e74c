"""Sensitivity from the changed layer onward gives exactly the figures of running every variant from the input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.io.data import open_dataset
from qconvert.io.model import load_model
from qconvert.recipe.model import Recipe
from qconvert.sensitivity.onward import divergence, node_signatures, score_onward
from qconvert.sensitivity.rank import rank_layers
from qconvert.sensitivity.simulate import Evaluator
from qconvert.sensitivity.variants import candidate_layers, kept

ROOT = Path(__file__).resolve().parents[1] / "samples"


@pytest.mark.parametrize("sample", ["digits", "dwsep"])
def test_onward_scores_equal_from_input_scores(sample: str) -> None:
    model = load_model(f"{ROOT / sample / 'model.py'}:build", str(ROOT / sample / "weights.pt"))
    data = open_dataset(ROOT / "digits" / "eval.npz", ("x",), None)  # dwsep is trained on the digits data too
    calib = torch.from_numpy(np.load(ROOT / "digits" / "calib.npz")["x"][:128])
    cap = capture(model, (calib[:2],))
    recipe = Recipe()
    stats = calibrate(cap, recipe, [(calib,)])
    evaluator = Evaluator(model, data, 64, limit=128)
    types = {n: type(m).__name__ for n, m in model.named_modules()}
    layers = candidate_layers(cap.graph, types)
    assert len(layers) >= 3

    def quant(r: Recipe) -> torch.fx.GraphModule:
        return quantize(cap, r, stats)

    onward = rank_layers(recipe, layers, quant, evaluator, keep="float")
    direct = rank_layers(recipe, layers, quant, evaluator, keep="float", onward=False)
    assert onward.entry() == direct.entry()  # every figure, bit for bit (SQNR, agreement, accuracy)
    assert [s.all_but for s in onward.layers] == [s.all_but for s in direct.layers]

    # the last layer kept in float departs from the full quantization late in the graph, the first one early
    full = quant(recipe).graph
    ref = node_signatures(full)
    first = divergence(ref, node_signatures(quant(kept(recipe, (layers[0].name,), "float")).graph))
    last = divergence(ref, node_signatures(quant(kept(recipe, (layers[-1].name,), "float")).graph))
    assert 0 < first < last < len(ref)
    # a variant equal to the reference (quantized again: other node names) scores as the reference
    again = quant(recipe).graph
    assert divergence(ref, node_signatures(again)) == len(ref)
    assert score_onward(evaluator, full, [again]) == [evaluator.score(full)]
