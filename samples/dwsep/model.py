"""A MobileNetV1-style depthwise-separable CNN for scikit-learn's digits (1x16x16).

stem conv-bn-relu (16) -> 3 x [depthwise 3x3-bn-relu -> pointwise 1x1-bn-relu] -> avgpool -> linear

Depthwise convolutions with folded BatchNorm have per-channel weight ranges that
differ by orders of magnitude: per-tensor weight quantization suffers, which is
what cross-layer equalization and bias correction are for.
"""

from __future__ import annotations

import torch
from torch import nn


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cin, 3, stride, 1, groups=cin, bias=False), nn.BatchNorm2d(cin), nn.ReLU(),
        nn.Conv2d(cin, cout, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(),
    )


class DWSepNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 16, 3, 1, 1, bias=False), nn.BatchNorm2d(16), nn.ReLU())
        self.blocks = nn.Sequential(_block(16, 32, 1), _block(32, 64, 2), _block(64, 64, 2))
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.flatten(self.pool(self.blocks(self.stem(x))), 1))


def build() -> DWSepNet:
    return DWSepNet()
