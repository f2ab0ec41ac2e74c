"""A width-reduced MobileNetV2 for scikit-learn's digits at 1x16x16.

stem conv-bn-relu6 (8) -> inverted residuals [t=1 c=8 s=1], [t=4 c=16 s=2], [t=4 c=16 s=1, residual],
[t=4 c=24 s=2], [t=4 c=24 s=1, residual] -> 1x1 conv-bn-relu6 (64) -> global avgpool (4x4) -> linear 10.
Each inverted residual: 1x1 expand conv-bn-relu6, 3x3 depthwise conv-bn-relu6, 1x1 project conv-bn
(linear bottleneck), + input where stride 1 and widths match. Every activation and add is a module, as
TI's guidelines ask, so the TIDL lint stays quiet on it.
"""

from __future__ import annotations

import torch
from torch import nn


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, groups: int = 1, act: bool = True) -> nn.Sequential:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, groups=groups, bias=False), nn.BatchNorm2d(cout)]
    if act:
        layers.append(nn.ReLU6())
    return nn.Sequential(*layers)


class Add(nn.Module):
    """The residual add as a module (TI's AddBlock pattern)."""

    def forward(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return a + b


class InvertedResidual(nn.Module):
    def __init__(self, cin: int, cout: int, stride: int, expand: int) -> None:
        super().__init__()
        hidden = cin * expand
        layers = [conv_bn(cin, hidden, 1)] if expand != 1 else []
        layers += [conv_bn(hidden, hidden, 3, stride, groups=hidden), conv_bn(hidden, cout, 1, act=False)]
        self.conv = nn.Sequential(*layers)
        self.add = Add() if stride == 1 and cin == cout else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.conv(x)
        return self.add(x, y) if self.add is not None else y


class MobileNetV2Digits(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        cfg = [(1, 8, 1), (4, 16, 2), (4, 16, 1), (4, 24, 2), (4, 24, 1)]
        blocks: list[nn.Module] = [conv_bn(1, 8, 3)]
        cin = 8
        for t, c, s in cfg:
            blocks.append(InvertedResidual(cin, c, s, t))
            cin = c
        blocks.append(conv_bn(cin, 64, 1))
        self.features = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.classifier = nn.Linear(64, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.flatten(self.pool(self.features(x))))


def build() -> MobileNetV2Digits:
    """Factory for ``qconvert build --model samples/mbv2_digits/model.py:build``."""
    return MobileNetV2Digits()
