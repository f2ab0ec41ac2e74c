"""BatchNorm folded once per capture gives the very Q/DQ graph prepare_pt2e's own folding gives."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from qconvert.core import quantize as q
from qconvert.core.capture import capture
from qconvert.io.model import load_model
from qconvert.recipe.model import Recipe
from qconvert.sensitivity.onward import node_signatures

ROOT = Path(__file__).resolve().parents[1] / "samples"


@pytest.mark.parametrize("sample", ["dwsep", "mbv2_digits"])
def test_folding_once_quantizes_identically(sample: str, monkeypatch: pytest.MonkeyPatch) -> None:
    model = load_model(f"{ROOT / sample / 'model.py'}:build", str(ROOT / sample / "weights.pt"))
    x = torch.from_numpy(np.load(ROOT / "digits" / "calib.npz")["x"][:64])
    if sample == "mbv2_digits":
        x = torch.from_numpy(np.load(ROOT / sample / "calib.npz")["x"][:64])
    cap = capture(model, (x[:2],))
    assert any("batch_norm" in str(n.target) for n in cap.graph.graph.nodes)
    recipe = Recipe()
    once = [node_signatures(q.quantize(cap, recipe, q.calibrate(cap, recipe, [(x,)])).graph) for _ in range(2)]
    assert any("batch_norm" in str(n.target) for n in cap.graph.graph.nodes)  # the capture keeps its BatchNorms
    monkeypatch.setattr(q, "bn_folded", lambda g: g)  # prepare_pt2e folds its own copy, as before
    each = node_signatures(q.quantize(cap, recipe, q.calibrate(cap, recipe, [(x,)])).graph)
    assert once[0] == once[1] == each
