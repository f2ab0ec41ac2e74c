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


def test_a_variant_holds_only_its_live_values(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """A variant run from the input frees each value after its last reader, like the graph's own forward:
    a 40-layer chain never holds more than a few activations at once (it held all 40 before)."""
    from qconvert.sensitivity import onward

    layers = [m for _ in range(40) for m in (torch.nn.Linear(8, 8), torch.nn.ReLU())]
    model = torch.nn.Sequential(*layers).eval()
    x = torch.randn(16, 8)
    cap = capture(model, (x[:2],))
    recipe = Recipe()
    stats = calibrate(cap, recipe, [(x,)])
    reference = quantize(cap, recipe, stats).graph
    variant = quantize(cap, kept(recipe, ("0",), "float"), stats).graph
    live: list[int] = []
    run_node = onward._run_node

    def counting(gm: torch.fx.GraphModule, n: torch.fx.Node, env: dict, const: dict) -> object:  # type: ignore[type-arg]
        if const:  # a walk (reference or variant); constants() computes the weights with an empty const
            live.append(len(env))
        return run_node(gm, n, env, const)

    monkeypatch.setattr(onward, "_run_node", counting)
    np.savez(tmp_path / "x.npz", x=x.numpy())
    evaluator = Evaluator(model, open_dataset(tmp_path / "x.npz", ("x",), None), 16)
    (score,) = score_onward(evaluator, reference, [variant])
    assert score == evaluator.score(variant)
    assert max(live) <= 4, max(live)
