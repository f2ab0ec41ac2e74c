"""A deep network for parity tests: many requantizations in a chain, where one-step rounding
differences between integer kernels and the float simulation add up (README "Parity at depth").

``build_deep`` runs a real build of it for one target object (a plugin's target, or a subclass
that damages its artifact after emitting it) and returns the build's result.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from torch import nn

from qconvert.pipeline import BuildRequest, BuildResult, build
from qconvert.targets.base import Target
from qconvert.targets.registry import TargetRegistry

__all__ = ["BLOCKS", "DEEP_RECIPE", "DeepDwResNet", "build_deep", "deep_data", "deep_net"]

BLOCKS = 12
DEEP_RECIPE = """version: 1
activations: {mode: asym_u}
calibration: {num_samples: 128, batch_size: 32}
on_unsupported: adapt
"""


class _Block(nn.Module):
    # x -> dw3x3 -> BN -> ReLU6 -> pw1x1 -> BN -> (+ x)
    def __init__(self, c: int) -> None:
        super().__init__()
        self.dw = nn.Sequential(nn.Conv2d(c, c, 3, padding=1, groups=c, bias=False), nn.BatchNorm2d(c), nn.ReLU6())
        self.pw = nn.Sequential(nn.Conv2d(c, c, 1, bias=False), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.pw(self.dw(x))


class DeepDwResNet(nn.Module):
    """stem conv -> 12 depthwise-separable residual blocks -> 1x1 conv head (per-pixel classes, as a
    segmentation net): 39 requantizations deep, and no pooling to average rounding differences away."""

    def __init__(self, c: int = 16) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, c, 3, padding=1), nn.ReLU())
        self.blocks = nn.Sequential(*(_Block(c) for _ in range(BLOCKS)))
        self.head = nn.Conv2d(c, 5, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.blocks(self.stem(x)))


def deep_net() -> nn.Module:
    """Seeded random weights with non-trivial BatchNorm statistics, as a trained network has."""
    g = torch.Generator().manual_seed(0)
    with torch.random.fork_rng():
        torch.manual_seed(0)
        model = DeepDwResNet()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert m.running_mean is not None and m.running_var is not None  # track_running_stats is on
            m.running_mean.copy_(torch.randn(m.num_features, generator=g) * 0.1)
            m.running_var.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.5)
            m.weight.data.copy_(torch.rand(m.num_features, generator=g) * 0.5 + 0.75)
    return model.eval()


def deep_data(d: Path) -> dict[str, Path]:
    """Calibration and evaluation inputs (128 each, 3x16x16) and the recipe, written into ``d``."""
    rng = np.random.default_rng(0)
    np.savez(d / "calib.npz", x=rng.standard_normal((128, 3, 16, 16), dtype=np.float32))
    np.savez(d / "eval.npz", x=rng.standard_normal((128, 3, 16, 16), dtype=np.float32))
    (d / "recipe.yaml").write_text(DEEP_RECIPE)
    return {"calib": d / "calib.npz", "eval": d / "eval.npz", "recipe": d / "recipe.yaml", "dir": d}


def build_deep(data: dict[str, Path], target: Target, out: str) -> BuildResult:
    """A real build of the deep net for ``target`` alone (registered under its own name)."""
    registry = TargetRegistry(autoload=False)
    registry.register(target)
    req = BuildRequest(model="qconvert.testing.deep:deep_net", recipe=data["recipe"], calib_data=data["calib"],
                       out=data["dir"] / out, targets=(target.name,), eval_data=data["eval"], latency=False)
    return build(req, registry)
