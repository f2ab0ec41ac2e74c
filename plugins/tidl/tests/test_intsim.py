"""The integer simulation against independent references: the core's torch Q/DQ graph and hand-worked rounding."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from qconvert_tidl.constraints import tidl_constraints
from qconvert_tidl.intsim import UnsupportedGraph, round_div, shift_round
from qconvert_tidl.intsim_compile import compile_graph
from qconvert_tidl.options import TidlOptions
from qconvert_tidl.torchsim import tidl_rounding_graph
from torch import nn

from qconvert.core.capture import capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.recipe.model import CalibrationConfig, QScheme, Recipe


def test_rounding_rules_on_ties() -> None:
    ties = np.array([5, 7, -5, -7, 6, -6])  # /2: 2.5 3.5 -2.5 -3.5 3 -3
    np.testing.assert_array_equal(round_div(ties, 2, "half_up"), [3, 4, -2, -3, 3, -3])
    np.testing.assert_array_equal(round_div(ties, 2, "half_even"), [2, 4, -2, -4, 3, -3])
    # TIDL_roundSat: (v + (1 << (s - 1))) >> s
    v = np.array([8, 23, 24, -24, -25, 1000])
    np.testing.assert_array_equal(shift_round(v, 4, "half_up"), [(x + 8) >> 4 for x in v.tolist()])
    np.testing.assert_array_equal(shift_round(v, -2, "half_up"), v * 4)


class Net(nn.Module):
    """x -> conv-bn-relu -> depthwise conv-bn-relu6 -> conv-bn (+ first relu output) -> maxpool -> avgpool(3x3) -> linear."""

    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Sequential(nn.Conv2d(2, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8), nn.BatchNorm2d(8), nn.ReLU6())
        self.b = nn.Sequential(nn.Conv2d(8, 8, 1), nn.BatchNorm2d(8))
        self.pool = nn.MaxPool2d(2)
        self.avg = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.a(x)
        y = self.pool(self.b(self.dw(a)) + a)
        return self.fc(torch.flatten(self.avg(y), 1))


def _qmodel(per_channel_dw: bool, bits: int = 8):
    torch.manual_seed(0)
    net = Net().eval()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 2.0)
    x = torch.randn(64, 2, 6, 6)
    recipe = Recipe(weights=QScheme(bits=bits, granularity="per_channel"), activations=QScheme(bits=bits, mode="sym"),
                    calibration=CalibrationConfig(method="percentile"), on_unsupported="adapt")
    cap = capture(net, (x[:2],))
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(x,)]), tidl_constraints(TidlOptions(per_channel_depthwise=per_channel_dw)), "tidl")
    return qm, torch.randn(200, 2, 6, 6) * 1.5  # eval inputs beyond the calibrated range: saturation is exercised


@pytest.mark.parametrize("per_channel_dw", [False, True], ids=["per-tensor", "per-channel-depthwise"])
def test_torch_rounding_mode_reproduces_the_core_simulation_bit_for_bit(per_channel_dw: bool) -> None:
    qm, x = _qmodel(per_channel_dw)
    (out,) = compile_graph(qm.graph, "torch").run({"x": x.numpy()})
    with torch.no_grad():
        ref = qm.graph(x).numpy()
    np.testing.assert_array_equal(out, ref)


def test_tidl_rounding_matches_the_tidl_rounding_torch_model_and_differs_from_torch_rounding() -> None:
    qm, x = _qmodel(True)
    (out,) = compile_graph(qm.graph, "tidl").run({"x": x.numpy()})
    with torch.no_grad():
        ref = tidl_rounding_graph(qm.graph)(x).numpy()
        core = qm.graph(x).numpy()
    np.testing.assert_array_equal(out, ref)
    # The rounding rule is not a detail: power-of-two grids make ties common.
    assert np.sum(out != core) > 0


def test_sixteen_bit_activations_run_exactly_within_float32_reach() -> None:
    qm, x = _qmodel(False, bits=16)
    (out,) = compile_graph(qm.graph, "torch").run({"x": x[:20].numpy()})
    with torch.no_grad():
        ref = qm.graph(x[:20]).numpy()
    scale = qm.output_scales()[0]
    assert scale is not None
    # torch's float32 accumulation is not exact at 16 bits: agreement within one output step.
    assert np.max(np.abs(out - ref)) <= scale + 1e-9


def test_an_op_without_integer_meaning_is_refused_by_name() -> None:
    net = nn.Sequential(nn.Conv2d(1, 2, 1), nn.Softmax(dim=1)).eval()
    x = torch.randn(4, 1, 3, 3)
    recipe = Recipe(weights=QScheme(), activations=QScheme(mode="sym"), on_unsupported="adapt")
    cap = capture(net, (x[:2],))
    qm = quantize(cap, recipe, calibrate(cap, recipe, [(x,)]), tidl_constraints(TidlOptions()), "tidl")
    with pytest.raises(UnsupportedGraph, match="softmax"):
        compile_graph(qm.graph)


def test_exact_matmul_equals_int64_matmul() -> None:
    """The float64 fast path gives the int64 product exactly; past 2**53 the int64 path is taken."""
    from qconvert_tidl.intsim import exact_matmul

    rng = np.random.default_rng(0)
    a, b = rng.integers(-255, 256, (3, 50, 300)), rng.integers(-128, 128, (3, 300, 7))
    assert np.array_equal(exact_matmul(a, b), a.astype(np.int64) @ b.astype(np.int64))
    big = np.array([[2**30 + 1, 2**30 + 1]], dtype=np.int64)  # a sum near 2**61: beyond float64's exact integers
    assert int(exact_matmul(big, big.T)[0, 0]) == 2 * (2**30 + 1) ** 2
