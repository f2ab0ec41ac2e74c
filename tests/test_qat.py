"""Quantization-aware training: fake quantizers, placement, BatchNorm folding, starting from PTQ."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from torch import nn

from qconvert import qat
from qconvert.core.capture import capture
from qconvert.core.plan import TensorQuant
from qconvert.core.quantize import calibrate, quantize
from qconvert.core.scheme import int_range, qparams_from_range
from qconvert.errors import RecipeError
from qconvert.io.model import load_model
from qconvert.qat.convbn import ConvBnQAT
from qconvert.qat.fake_quant import FakeQuant
from qconvert.recipe import QScheme, recipe_from_text

W4A4 = "weights: {bits: 4, mode: sym, granularity: per_channel}\nactivations: {bits: 4, mode: asym_u}\n"


class Tiny(nn.Module):
    """conv-bn-relu -> conv(+bias)-relu -> add -> avgpool -> linear, on 1x8x8 inputs."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1, self.bn1, self.relu1 = nn.Conv2d(1, 4, 3, padding=1, bias=False), nn.BatchNorm2d(4), nn.ReLU()
        self.conv2, self.relu2 = nn.Conv2d(4, 4, 3, padding=1), nn.ReLU()
        self.pool, self.fc = nn.AdaptiveAvgPool2d(1), nn.Linear(4, 3)
        with torch.no_grad():
            self.bn1.running_mean.uniform_(-0.5, 0.5)
            self.bn1.running_var.uniform_(0.5, 2.0)
            self.bn1.weight.uniform_(0.5, 1.5)
            self.bn1.bias.uniform_(-0.2, 0.2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.relu1(self.bn1(self.conv1(x)))
        y = self.relu2(self.conv2(y)) + y
        return self.fc(torch.flatten(self.pool(y), 1))


def tiny(seed: int = 0) -> Tiny:
    torch.manual_seed(seed)
    return Tiny().eval()


def tiny_data(n: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(n, 1, 8, 8, generator=torch.Generator().manual_seed(seed))


def _spec(bits: int, mode: str, per_channel: bool = False) -> TensorQuant:
    scheme = QScheme(bits=bits, mode=mode, granularity="per_channel" if per_channel else "per_tensor")  # type: ignore[arg-type]
    return TensorQuant("t", "weight" if per_channel else "activation", "m", scheme, ch_axis=0 if per_channel else None)


# -- fake quantizers: gradients written from the papers' formulas, not from the code -----------------


def test_lsq_gradients_follow_the_lsq_formula() -> None:
    fq = FakeQuant(_spec(4, "sym"), "lsq")
    fq.init_from_qparams(torch.tensor([0.25]), torch.tensor([0]))
    x = torch.tensor([[-3.0, -0.3, 0.1, 0.62, 1.7, 2.5]], requires_grad=True)
    fq(x).sum().backward()
    s, qmin, qmax = 0.25, -8, 7
    v = x.detach().numpy()[0] / s
    inside = (v >= qmin) & (v <= qmax)
    # LSQ (Esser et al. 2020): dy/dx = 1 inside the grid, 0 outside; dy/ds = round(v) - v inside, the clamp bound outside
    np.testing.assert_array_equal(x.grad.numpy()[0], inside.astype(np.float32))  # type: ignore[union-attr]
    dyds = np.where(inside, np.round(v) - v, np.where(v < qmin, qmin, qmax)).sum()
    # the parameter is the bound amax = 7 s; LSQ scales the step-size gradient by 1/sqrt(N * Qp), N = 6 features
    expected = dyds / 7.0 / np.sqrt(6 * 7)
    assert fq.amax.grad is not None
    assert float(fq.amax.grad) == pytest.approx(expected, rel=1e-5)


def test_pact_bounds_learn_only_from_clipped_values() -> None:
    fq = FakeQuant(_spec(4, "asym_u"), "pact")
    fq.init_from_qparams(torch.tensor([0.1]), torch.tensor([0]))  # grid [0, 1.5]
    x = torch.tensor([[0.2, 0.77, 1.49, 1.6, 3.0]], requires_grad=True)
    upstream = torch.tensor([[1.0, 2.0, 4.0, 8.0, 16.0]])
    (fq(x) * upstream).sum().backward()
    assert fq.hi.grad is not None and fq.lo.grad is not None
    assert float(fq.hi.grad) == pytest.approx(8.0 + 16.0)  # the two values above the grid
    assert float(fq.lo.grad) == 0.0
    np.testing.assert_array_equal(x.grad.numpy(), [[1.0, 2.0, 4.0, 0.0, 0.0]])  # type: ignore[union-attr]


def test_pact2_keeps_power_of_two_scales_and_the_grid_a_build_derives() -> None:
    spec = TensorQuant("t", "activation", "m", QScheme(bits=4, mode="sym", power_of_two=True))
    fq = FakeQuant(spec, "pact")
    with torch.no_grad():
        fq.amax.fill_(1.3)
    scale, _ = fq.qparams()
    assert float(torch.log2(scale)) == round(float(torch.log2(scale)))  # 1.3 / 7 -> 0.25
    lo, hi = fq.deployed_range()
    again, _ = qparams_from_range(lo, hi, spec.scheme, int_range(spec.scheme))
    assert float(again) == float(scale)


# -- the prepared model -----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_w4a4() -> dict[str, object]:
    root = Path(__file__).resolve().parents[1] / "samples" / "digits"
    model = load_model(f"{root / 'model.py'}:build", str(root / "weights.pt"))
    calib = torch.from_numpy(np.load(root / "calib.npz")["x"])
    recipe = recipe_from_text(W4A4 + "no_clip: [fc]\n")
    captured = capture(model, (calib[:2],))
    stats = calibrate(captured, recipe, [(calib[i : i + 64],) for i in range(0, 256, 64)])
    return {"model": model, "recipe": recipe, "stats": stats, "captured": captured, "x": torch.from_numpy(np.load(root / "eval.npz")["x"])}


def test_starting_from_ptq_computes_what_the_ptq_build_simulates(digits_w4a4: dict) -> None:
    d = digits_w4a4
    ptq = quantize(d["captured"], d["recipe"], d["stats"])
    model = qat.prepare(d["model"], d["recipe"], d["x"][:2], calibration=d["stats"]).eval()
    with torch.no_grad():
        expected, got = ptq.graph(d["x"]), model(d["x"])
    # same Q/DQ placement, grids, folded weights and int32 biases: bit for bit
    torch.testing.assert_close(got, expected, rtol=0, atol=0)
    n_qdq = sum(1 for n in ptq.graph.graph.nodes if n.target == torch.ops.quantized_decomposed.quantize_per_tensor.default)
    modules = [model.graph.get_submodule(str(n.target)) for n in model.graph.graph.nodes if n.op == "call_module"]
    acts = [m for m in modules if isinstance(m, FakeQuant) and m.spec.role == "activation" and not m.passive]
    assert len(acts) == n_qdq


def test_caller_model_is_not_modified() -> None:
    model = tiny()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    prepared = qat.prepare(model, recipe_from_text(W4A4), tiny_data(2))
    opt = torch.optim.SGD(prepared.parameters(), lr=0.1)
    prepared(tiny_data()).sum().backward()
    opt.step()
    for k, v in model.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)
    assert not model.training
    assert any(not torch.equal(v, before[k]) for k, v in prepared.float_state().items())


def test_batchnorm_statistics_freeze_after_the_configured_steps() -> None:
    recipe = recipe_from_text(W4A4 + "qat: {freeze_bn_after: 2}\n")
    model = qat.prepare(tiny(), recipe, tiny_data(2))
    mean = model.graph.get_buffer("bn1.running_mean")
    x = tiny_data()
    seen = [mean.clone()]
    for _ in range(4):
        model(x)
        seen.append(mean.clone())
    assert not torch.equal(seen[0], seen[1]) and not torch.equal(seen[1], seen[2])  # steps 1, 2 update
    assert torch.equal(seen[2], seen[3]) and torch.equal(seen[3], seen[4])  # frozen from step 3
    # frozen, training computes what eval (the deployed, folded layer) computes
    with torch.no_grad():
        train_out = model(x)
        torch.testing.assert_close(model.eval()(x), train_out, rtol=0, atol=0)


def test_exclusions_overrides_and_range_choices_follow_the_recipe() -> None:
    recipe = recipe_from_text(
        W4A4 + "exclude: [conv2]\n"
        "overrides: [{match: fc, weights: {bits: 8, mode: sym, granularity: per_channel}, qat_weight_ranges: lsq},\n"
        "            {match: relu1, qat_activation_ranges: pact}]\n"
        "qat: {activation_ranges: ema}\n"
    )
    model = qat.prepare(tiny(), recipe, tiny_data(2))
    fqs = {fq.spec.key: fq for fq in model.fake_quants() if not fq.passive}
    assert "conv2.weight" not in fqs
    assert fqs["fc.weight"].spec.scheme.bits == 8 and fqs["fc.weight"].learn == "lsq"
    assert fqs["conv1.weight"].spec.scheme.bits == 4 and fqs["conv1.weight"].learn == "minmax"
    assert fqs["relu"].learn == "pact" and fqs["x"].learn == "ema"
    convbn = [m for m in model.modules() if isinstance(m, ConvBnQAT)]
    assert len(convbn) == 1 and convbn[0].weight_fq is fqs["conv1.weight"]


def test_post_training_algorithms_are_refused() -> None:
    with pytest.raises(RecipeError, match="bias_correction"):
        qat.prepare(tiny(), recipe_from_text(W4A4 + "bias_correction: true\n"), tiny_data(2))


def test_training_for_a_target_uses_the_types_its_build_uses() -> None:
    """A recipe that leaves activations out trains asym_u by default, and TensorRT's symmetric
    int8 (or TIDL's power-of-two grid) when prepared for that target, as its build will quantize."""
    from qconvert.targets.registry import TargetRegistry

    registry = TargetRegistry()
    recipe = recipe_from_text("weights: {bits: 8, mode: sym, granularity: per_channel}\n")

    def modes(target: str | None) -> set[tuple[str, bool]]:
        model = qat.prepare(tiny(), recipe, tiny_data(2), target=target)
        return {(fq.spec.scheme.mode, fq.spec.scheme.power_of_two) for fq in model.fake_quants()
                if not fq.passive and fq.spec.role == "activation"}

    assert modes(None) == {("asym_u", False)}
    if "tensorrt" in registry.names():
        assert modes("tensorrt") == {("sym", False)}
    if "tidl" in registry.names():
        assert modes("tidl") == {("sym", True)}
