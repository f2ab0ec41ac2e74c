"""A dead channel (weights ~0, large negative bias, ReLU6 after it) must not overflow the int32
accumulator: EfficientNet-Lite's stem has four. Its weight scale, max|w|/127, is so small that
the bias in accumulator units (bias / (input scale x weight scale)) saturates int32; onnxruntime
then adds the products to -2**31 and wraps to +2**31 (85 output steps where the simulation has 0).
The weight scale of such a channel is widened until bias plus products fit. Real onnxruntime runs."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

import qconvert


class DeadChannelStem(nn.Module):
    """EfficientNet-Lite's stem construct: asymmetric zero pad, 3x3 stride-2 conv, ReLU6, then a 1x1 conv."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.pad = nn.ZeroPad2d((0, 1, 0, 1))
        self.conv = nn.Conv2d(3, 8, 3, stride=2)
        self.act = nn.ReLU6()
        self.head = nn.Conv2d(8, 4, 1)
        with torch.no_grad():
            self.conv.weight[2].uniform_(-1e-5, 1e-5)  # a pruned channel: weights ~0, bias well below zero
            self.conv.bias[2] = -3.0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.act(self.conv(self.pad(x))))


def test_dead_channel_keeps_int32_bias_in_range(tmp_path) -> None:  # type: ignore[no-untyped-def]
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(32, 3, 17, 17)).astype(np.float32)
    recipe = {"version": 1, "weights": {"bits": 8, "mode": "sym", "granularity": "per_channel"},
              "activations": {"bits": 8, "mode": "asym_u"}, "calibration": {"method": "minmax", "num_samples": 32, "batch_size": 16}}
    report = qconvert.build(DeadChannelStem(), recipe, targets=["onnx"], out=tmp_path / "out", calib_data=x, latency=False)
    onnx_result = report.targets["onnx"]
    assert onnx_result.first_divergence is None, onnx_result.first_divergence
    assert onnx_result.layer_parity_lsb is not None and onnx_result.layer_parity_lsb <= 1.0
    assert report.passed, report.gates
