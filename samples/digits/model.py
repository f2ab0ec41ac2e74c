"""A small CNN for scikit-learn's digits, upsampled to 1x16x16.

stem conv-bn-relu -> residual block (conv-bn-relu, conv-bn, add, relu)
-> depthwise conv-bn-relu (stride 2) -> pointwise conv-bn-relu -> avgpool -> linear
"""

from __future__ import annotations

import torch
from torch import nn


class DigitsNet(nn.Module):
    def __init__(self, width: int = 16) -> None:
        super().__init__()
        w = width
        self.stem = nn.Sequential(nn.Conv2d(1, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.block_conv1 = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.block_conv2 = nn.Sequential(nn.Conv2d(w, w, 3, padding=1, bias=False), nn.BatchNorm2d(w))
        self.block_relu = nn.ReLU()
        self.dw = nn.Sequential(nn.Conv2d(w, w, 3, stride=2, padding=1, groups=w, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.pw = nn.Sequential(nn.Conv2d(w, 2 * w, 1, bias=False), nn.BatchNorm2d(2 * w), nn.ReLU())
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(2 * w, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.stem(x)
        x = self.block_relu(self.block_conv2(self.block_conv1(x)) + x)
        x = self.pw(self.dw(x))
        return self.fc(torch.flatten(self.pool(x), 1))


def build() -> DigitsNet:
    """Factory used by ``qconvert build --model samples/digits/model.py:build``."""
    return DigitsNet()
