"""Recipe ``requantize``: conv/linear scale ratios as an integer multiplier and a shift, folded into the scales."""

from __future__ import annotations

import math
import random
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch
from onnx import numpy_helper

from qconvert.core.requantize import approximate_ratio, multiplier_and_shift
from qconvert.recipe import recipe_from_text

ROOT = Path(__file__).resolve().parents[1]
DIGITS = ROOT / "samples" / "digits"


def _tflite_quantize_multiplier(x: float) -> tuple[int, int]:
    """TFLite's QuantizeMultiplier (kernels/internal/quantization_util.cc), written from its description:
    frexp gives x = q * 2**shift with q in [0.5, 1); q is rounded to Q31 (std::round: half away from zero)."""
    q, shift = math.frexp(x)
    q_fixed = math.floor(q * (1 << 31) + 0.5)
    if q_fixed == 1 << 31:
        q_fixed //= 2
        shift += 1
    return q_fixed, shift  # x ~= q_fixed * 2**(shift - 31)


def test_32_bit_multiplier_is_tflites() -> None:
    rng = random.Random(0)
    ratios = [rng.uniform(1e-5, 0.999) for _ in range(2000)] + [2.0**-7, 0.75, 1 - 2**-40, 3.5]
    m, n = multiplier_and_shift(torch.tensor(ratios, dtype=torch.float64), 32)
    for r, mi, ni in zip(ratios, m.tolist(), n.tolist()):
        q, shift = _tflite_quantize_multiplier(r)
        assert (mi, ni) == (q, 31 - shift), r


@pytest.mark.parametrize("bits", [8, 12, 16, 24, 32])
def test_multiplier_fits_its_bits_and_error_bound(bits: int) -> None:
    r = torch.rand(5000, dtype=torch.float64) * 3 + 1e-4
    m, _ = multiplier_and_shift(r, bits)
    assert int(m.max()) < 2 ** (bits - 1) and int(m.min()) >= 2 ** (bits - 2)
    err = (approximate_ratio(r, bits) / r - 1).abs().max()
    assert float(err) <= 2.0 ** -(bits - 1) + 1e-15  # half a step of a (bits-2)-bit fraction
    floor = approximate_ratio(r, bits, "floor")
    assert torch.all(floor <= r) and float((1 - floor / r).max()) < 2.0 ** -(bits - 2)


def _const(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    values = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    for n in model.graph.node:
        if n.op_type == "Constant":
            values[n.output[0]] = numpy_helper.to_array(n.attribute[0].t)
    return values


def _conv_ratios(model: onnx.ModelProto) -> list[np.ndarray]:
    """Per conv/gemm of an ONNX QDQ model: input scale x weight scale / output scale, read from the file."""
    values = _const(model)
    producer = {o: n for n in model.graph.node for o in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in model.graph.node:
        for i in n.input:
            consumers.setdefault(i, []).append(n)
    ratios = []
    for n in model.graph.node:
        if n.op_type not in ("Conv", "Gemm", "MatMul"):
            continue
        x_dq, w_dq = producer[n.input[0]], producer[n.input[1]]
        out = n.output[0]
        nxt = consumers.get(out, [])
        if len(nxt) == 1 and nxt[0].op_type == "Relu":
            out = nxt[0].output[0]
            nxt = consumers.get(out, [])
        qs = [c for c in nxt if c.op_type == "QuantizeLinear"]
        if not qs or x_dq.op_type != "DequantizeLinear" or w_dq.op_type != "DequantizeLinear":
            continue
        s_x, s_w, s_out = (values[x_dq.input[1]].astype(np.float64), values[w_dq.input[1]].astype(np.float64),
                           values[qs[0].input[1]].astype(np.float64))
        ratios.append(s_x * s_w / s_out)
    return ratios


def _build(tmp_path: Path, extra: str, target: str = "onnx") -> Path:
    from qconvert.pipeline import BuildRequest, build
    from qconvert.targets.registry import TargetRegistry

    recipe = tmp_path / "recipe.yaml"
    recipe.write_text((DIGITS / "recipe.yaml").read_text() + extra)
    out = tmp_path / "OUT"
    build(BuildRequest(model=f"{DIGITS / 'model.py'}:build", recipe=recipe, calib_data=DIGITS / "calib.npz", out=out,
                       targets=(target,), weights=DIGITS / "weights.pt", eval_data=DIGITS / "eval.npz", latency=False),
          TargetRegistry())
    return out


def test_onnx_scales_carry_8_bit_multipliers(tmp_path: Path) -> None:
    """Every conv/linear ratio in the exported file is m * 2**-n with m a 7-bit magnitude (8 bits signed)."""
    out = _build(tmp_path, "requantize: {multiplier_bits: 8}\n")
    ratios = _conv_ratios(onnx.load(out / "onnx" / "model.onnx"))
    assert len(ratios) >= 5
    for r in ratios:
        n = 6 - np.floor(np.log2(r))
        m = r * np.exp2(n)
        # float32 scales hold the folded ratio to ~2**-22 relative
        assert np.all(np.abs(m - np.round(m)) < 1e-3) and np.all((np.round(m) >= 64) & (np.round(m) <= 128))
    import json

    report = json.loads((out / "report.json").read_text())
    folded = report["targets"]["onnx"]["requantization"]
    assert {f["multiplier_bits"] for f in folded} == {8} and len(folded) == len(ratios)


def test_recipe_requantize_per_layer() -> None:
    r = recipe_from_text("requantize: {multiplier_bits: 16}\noverrides: [{match: fc, requantize: {multiplier_bits: 8, rounding: floor}}]\n")
    from qconvert.core.policy import QuantPolicy

    p = QuantPolicy(r)
    assert p.requantize("stem.0").multiplier_bits == 16  # type: ignore[union-attr]
    assert p.requantize("fc").rounding == "floor"  # type: ignore[union-attr]


def test_auto_arithmetic_is_the_targets_own_and_float_without_a_target_or_for_16_bit() -> None:
    """``requantize.arithmetic: auto`` (the default): tflite/onnx declare fp32 (XNNPACK, MLAS); no target and
    16-bit activations (TFLite's 16x8 reference kernels) keep the float simulation."""
    from qconvert.core.constraints import QuantConstraints
    from qconvert.core.policy import QuantPolicy
    from qconvert.recipe.model import Recipe

    recipe = Recipe.model_validate({"version": 1, "requantize": {"multiplier_bits": 32},
                                    "overrides": [{"match": "wide", "activations": {"bits": 16, "mode": "sym"}}]})
    assert recipe.requantize is not None and recipe.requantize.arithmetic == "auto"
    fp32 = QuantConstraints(requantize_arithmetic="fp32")
    assert QuantPolicy(recipe, fp32).requantize("conv").arithmetic == "fp32"  # type: ignore[union-attr]  # set above
    assert QuantPolicy(recipe, fp32).requantize("wide").arithmetic == "float"  # type: ignore[union-attr]  # set above
    assert QuantPolicy(recipe, None).requantize("conv").arithmetic == "float"  # type: ignore[union-attr]  # set above
    assert QuantPolicy(recipe, QuantConstraints()).requantize("conv").arithmetic == "float"  # type: ignore[union-attr]  # set above
