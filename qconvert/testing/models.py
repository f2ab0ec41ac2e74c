"""The tiny models of the conformance kit (``qconvert.testing.conformance``), built in code with seeded weights.

Each is the smallest network that exercises one thing every target must get right: a
residual block (conv + BatchNorm + ReLU whose output is added back), a depthwise
convolution (per-channel weights on a grouped conv), and a network with two outputs
(outputs kept apart and in order).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

__all__ = ["TINY_MODELS", "ConvBnReluResidual", "DepthwiseSeparable", "TinyModel", "TwoHeadLinear"]


class ConvBnReluResidual(nn.Module):
    # x -> conv-bn-relu (a) -> conv-bn-relu -> conv-bn -> (+ a) -> relu
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU())
        self.body = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8), nn.ReLU(),
                                  nn.Conv2d(8, 8, 3, padding=1, bias=False), nn.BatchNorm2d(8))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.stem(x)
        return torch.relu(a + self.body(a))


class DepthwiseSeparable(nn.Module):
    # x -> conv-relu -> depthwise 3x3-bn-relu6 -> pointwise 1x1
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.dw = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False), nn.BatchNorm2d(8), nn.ReLU6())
        self.pw = nn.Conv2d(8, 4, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.pw(self.dw(self.stem(x)))


class TwoHeadLinear(nn.Module):
    # x -> linear-relu -> (linear a, linear b)
    def __init__(self) -> None:
        super().__init__()
        self.trunk = nn.Sequential(nn.Linear(16, 32), nn.ReLU())
        self.a, self.b = nn.Linear(32, 5), nn.Linear(32, 3)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(x)
        return self.a(h), self.b(h)


@dataclass(frozen=True)
class TinyModel:
    """A kit model: how to build it and the shape of one input sample."""

    name: str
    factory: Callable[[], nn.Module]
    sample_shape: tuple[int, ...]

    def build(self) -> nn.Module:
        """Seeded weights and non-trivial BatchNorm statistics (folding must matter), in eval mode."""
        g = torch.Generator().manual_seed(0)
        with torch.random.fork_rng():
            torch.manual_seed(0)
            model = self.factory()
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                assert m.running_mean is not None and m.running_var is not None  # track_running_stats is on
                m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.2)
                m.running_var.copy_(torch.rand(m.num_features, generator=g) + 0.5)
                m.weight.data.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
        return model.eval()

    def data(self, n: int, seed: int) -> np.ndarray:
        """``n`` samples of standard normal input."""
        return np.random.default_rng(seed).standard_normal((n, *self.sample_shape), dtype=np.float32)


TINY_MODELS: dict[str, TinyModel] = {m.name: m for m in (
    TinyModel("conv_bn_relu_residual", ConvBnReluResidual, (3, 8, 8)),
    TinyModel("depthwise", DepthwiseSeparable, (3, 8, 8)),
    TinyModel("linear_two_outputs", TwoHeadLinear, (16,)),
)}
