"""Learned activation ranges (recipe ``activation_ranges: learned``): calibration data with a rare
outlier stretches min/max ranges; choosing each tensor's range by its error against the float
network narrows them, moves the network's output on held-out data closer to float, and keeps
the quantizers that must share parameters (after pad and pooling) sharing them."""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import nn

from qconvert.core.act_ranges import learn_activation_ranges
from qconvert.core.capture import Captured, capture
from qconvert.core.quantize import calibrate, quantize
from qconvert.core.stats import StatsSet
from qconvert.recipe import recipe_from_text

RECIPE = "activations: {bits: 8, mode: asym_u}\n"
_Q = torch.ops.quantized_decomposed.quantize_per_tensor.default


def _net() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.BatchNorm2d(16), nn.ReLU6(), nn.ZeroPad2d(1),
                         nn.Conv2d(16, 16, 3, groups=16), nn.ReLU6(), nn.Conv2d(16, 8, 1), nn.MaxPool2d(2),
                         nn.Flatten(), nn.Linear(8 * 4 * 4, 10)).eval()


def _data() -> torch.Tensor:
    """96 calibration inputs; one pixel of one of them is an outlier, as real calibration sets have."""
    torch.manual_seed(1)
    x = torch.randn(96, 3, 8, 8)
    x[7, :, 3, 3] = 40.0
    return x


def _sqnr(ref: torch.Tensor, out: torch.Tensor) -> float:
    return float(10 * torch.log10((ref ** 2).sum() / ((ref - out) ** 2).sum()))


def _setup() -> tuple[nn.Module, Captured, Callable[[], list[tuple[torch.Tensor]]], StatsSet]:
    """The test net, its capture, its calibration batches and their statistics."""
    model, x = _net(), _data()
    cap = capture(model, (x[:2],))

    def batches() -> list[tuple[torch.Tensor]]:
        return [(x[i:i + 32],) for i in range(0, len(x), 32)]

    return model, cap, batches, calibrate(cap, recipe_from_text(RECIPE), batches())


def test_learned_ranges_move_the_output_closer_to_float() -> None:
    model, cap, batches, stats = _setup()
    calibrated = quantize(cap, recipe_from_text(RECIPE), stats).graph
    learned = quantize(cap, recipe_from_text(RECIPE + "activation_ranges: learned\nactivation_range_samples: 96\n"), stats,
                       calibration_batches=batches).graph
    torch.manual_seed(2)
    xe = torch.randn(128, 3, 8, 8)
    with torch.no_grad():
        ref = model(xe)
        assert _sqnr(ref, learned(xe)) > _sqnr(ref, calibrated(xe)) + 0.5


def test_ranges_only_narrow_and_errors_only_fall() -> None:
    _, cap, batches, stats = _setup()
    qgm = quantize(cap, recipe_from_text(RECIPE), stats).graph
    rows = learn_activation_ranges(cap.graph, qgm, batches, samples=96)
    assert rows
    narrowed = 0
    for r in rows:
        assert r.lo_before - 1e-6 <= r.lo <= 0.0 <= r.hi <= r.hi_before + 1e-6
        if r.error_after == r.error_after:  # not nan: chosen here, not shared
            assert r.error_after <= r.error_before
        narrowed += r.hi < r.hi_before - 1e-6 or r.lo > r.lo_before + 1e-6
    assert narrowed >= 2


def test_shared_quantizers_keep_sharing() -> None:
    """A pad or a max pool passes its input's integers through: its output quantizer must keep its input's parameters."""
    _, cap, batches, stats = _setup()
    gm = quantize(cap, recipe_from_text(RECIPE + "activation_ranges: learned\n"), stats, calibration_batches=batches).graph
    checked = 0
    for n in gm.graph.nodes:
        if n.target in (torch.ops.aten.pad.default, torch.ops.aten.constant_pad_nd.default,
                        torch.ops.aten.max_pool2d.default):
            q_out = next(u for u in n.users if u.target == _Q)
            q_in = n.args[0].args[0]  # dequantize <- quantize
            assert q_in.target == _Q
            assert q_out.args[1:3] == q_in.args[1:3]
            checked += 1
    assert checked == 2
