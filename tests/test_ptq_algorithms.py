"""Cross-layer equalization and bias correction on the depthwise-separable sample,
and method switching on saved statistics."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from qconvert.cli import main
from qconvert.core.capture import Captured, capture
from qconvert.core.equalize import equalize
from qconvert.core.quantize import calibrate, quantize
from qconvert.io.model import load_model
from qconvert.recipe import recipe_from_text
from qconvert.verify.metrics import CompareAccumulator

ROOT = Path(__file__).resolve().parents[1]
CALIB = torch.from_numpy(np.load(ROOT / "samples/digits/calib.npz")["x"])
EVAL = torch.from_numpy(np.load(ROOT / "samples/digits/eval.npz")["x"])


@pytest.fixture(scope="module")
def dwsep() -> tuple[torch.nn.Module, Captured]:
    model = load_model(f"{ROOT / 'samples/dwsep/model.py'}:build", str(ROOT / "samples/dwsep/weights.pt"))
    return model, capture(model, (CALIB[:2],))


def _sqnr(model: torch.nn.Module, cap: Captured, recipe_text: str) -> float:
    recipe = recipe_from_text(recipe_text)
    if recipe.equalization:
        cap, _ = equalize(cap)
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(CALIB,)]), calibration_batches=lambda: [(CALIB,)])
    acc = CompareAccumulator()
    with torch.no_grad():
        acc.update(model(EVAL).numpy(), qm.graph(EVAL).numpy())
    return acc.result().sqnr_db


W5 = "weights: {bits: 5, mode: sym, granularity: per_tensor}\n"


def test_equalization_keeps_the_function_and_evens_ranges(dwsep: tuple[torch.nn.Module, Captured]) -> None:
    model, cap = dwsep
    eq, pairs = equalize(cap)
    assert len(pairs) == 6  # stem->dw, dw->pw in each of the 3 blocks
    with torch.no_grad():
        np.testing.assert_allclose(eq.graph(EVAL)[0].numpy() if isinstance(eq.graph(EVAL), tuple) else eq.graph(EVAL).numpy(),
                                   model(EVAL).numpy(), atol=1e-4)
    assert eq.fingerprint != cap.fingerprint


def test_equalization_helps_per_tensor_weights(dwsep: tuple[torch.nn.Module, Captured]) -> None:
    model, cap = dwsep
    assert _sqnr(model, cap, W5 + "equalization: true\n") > _sqnr(model, cap, W5) + 1.0


def test_bias_correction_helps_and_zeroes_the_mean_shift(dwsep: tuple[torch.nn.Module, Captured]) -> None:
    model, cap = dwsep
    assert _sqnr(model, cap, W5 + "bias_correction: true\n") > _sqnr(model, cap, W5) + 1.0


def test_bias_correction_without_data_is_refused(dwsep: tuple[torch.nn.Module, Captured]) -> None:
    from qconvert.errors import DataError

    _, cap = dwsep
    recipe = recipe_from_text("bias_correction: true\n")
    with pytest.raises(DataError, match="bias_correction needs the calibration data"):
        quantize(cap, recipe, calibrate(cap, recipe, [(CALIB,)]), calibration_batches=lambda: iter(()))


def test_switching_method_on_saved_stats_changes_the_artifact_without_data(tmp_path: Path, digits: dict[str, Path]) -> None:
    runner = CliRunner()
    common = ["--model", f"{digits['model']}:build", "--weights", str(digits["weights"])]
    r = runner.invoke(main, ["calibrate", *common, "--recipe", str(digits["recipe"]), "--calib-data", str(digits["calib"]),
                             "--out", str(tmp_path / "stats")])
    assert r.exit_code == 0, r.output
    outs = {}
    for method in ("minmax", "entropy"):
        recipe = tmp_path / f"{method}.yaml"
        recipe.write_text(f"version: 1\ninput_shape: [1, 1, 16, 16]\ncalibration: {{method: {method}, percentile: 99.0}}\n")
        out = tmp_path / method
        # no --calib-data: the statistics file is the only source of ranges
        r = runner.invoke(main, ["build", *common, "--recipe", str(recipe), "--stats", str(tmp_path / "stats"),
                                 "--eval-data", str(digits["eval"]), "--target", "onnx", "--out", str(out)])
        assert r.exit_code == 0, r.output
        assert json.loads((out / "report.json").read_text())["calibration"]["ranges"] == "from stats file"
        outs[method] = (out / "onnx" / "model.onnx").read_bytes()
    assert len(set(outs.values())) == 2


def test_override_sets_a_layers_method(dwsep: tuple[torch.nn.Module, Captured]) -> None:
    _, cap = dwsep
    recipe = recipe_from_text("calibration: {method: minmax}\noverrides:\n  - {match: 'blocks.1.*', method: entropy}\n")
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(CALIB,)]))
    methods = {q.module: q.method for q in qm.qparams if q.role == "activation"}
    assert {m for mod, m in methods.items() if mod.startswith("blocks.1.")} == {"entropy"}
    assert {m for mod, m in methods.items() if not mod.startswith("blocks.1.")} == {"minmax"}


def test_weight_mse_clipping_and_depthwise_per_channel(dwsep: tuple[torch.nn.Module, Captured]) -> None:
    model, cap = dwsep
    plain = "weights: {bits: 4, mode: sym, granularity: per_tensor}\n"
    assert _sqnr(model, cap, plain + "weight_method: mse\n") > _sqnr(model, cap, plain)
    recipe = recipe_from_text(plain + "depthwise_per_channel: true\n")
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(CALIB,)]))
    grans = {q.module: q.granularity for q in qm.qparams if q.role == "weight"}
    assert grans["blocks.0.0"] == "per_channel" and grans["blocks.0.3"] == "per_tensor"


def test_six_bit_asym_per_channel_clipped_beats_sym_per_tensor_minmax() -> None:
    """Distiller's observation, on the digits sample: clipping + per-channel + asymmetric wins at 6 bits."""
    model = load_model(f"{ROOT / 'samples/digits/model.py'}:build", str(ROOT / "samples/digits/weights.pt"))
    cap = capture(model, (CALIB[:2],))
    labels = np.load(ROOT / "samples/digits/eval.npz")["y"]
    base = recipe_from_text("version: 1\n")
    stats = calibrate(cap, base, [(CALIB,)])

    def accuracy(text: str) -> float:
        qm = quantize(cap, recipe_from_text(text + "no_clip: [fc]\n"), stats)
        with torch.no_grad():
            return float(np.mean(qm.graph(EVAL).argmax(1).numpy() == labels))

    clipped = accuracy("weights: {bits: 6, mode: asym_u, granularity: per_channel}\nactivations: {bits: 6, mode: asym_u}\n"
                       "calibration: {method: percentile}\n")
    plain = accuracy("weights: {bits: 6, mode: sym, granularity: per_tensor}\nactivations: {bits: 6, mode: sym}\n"
                     "calibration: {method: minmax}\n")
    assert clipped > plain
