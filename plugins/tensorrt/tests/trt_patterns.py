"""Tiny models with the patterns TensorRT's Q/DQ placement rules are about (a module name no other test dir uses)."""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import torch
from qconvert_tensorrt import TensorRTTarget
from torch import nn

from qconvert.core.capture import capture
from qconvert.core.quantize import QuantizedModel, calibrate, quantize
from qconvert.recipe.model import QScheme, Recipe


class ResidualBlock(nn.Module):
    """x -> conv-bn-relu -> conv-bn -> (+ x) -> relu   (ResNet basic block, identity shortcut)"""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)
        self.conv2, self.bn2 = nn.Conv2d(c, c, 3, padding=1, bias=False), nn.BatchNorm2d(c)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x))))) + x)


class DownsampleBlock(nn.Module):
    """x -> conv(s2)-bn-relu -> conv-bn -> (+ conv1x1(s2)-bn of x) -> relu   (ResNet block with a downsample branch)"""

    def __init__(self, c: int = 8) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * c)
        self.conv2, self.bn2 = nn.Conv2d(2 * c, 2 * c, 3, padding=1, bias=False), nn.BatchNorm2d(2 * c)
        self.downsample = nn.Sequential(nn.Conv2d(c, 2 * c, 1, stride=2, bias=False), nn.BatchNorm2d(2 * c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.bn2(self.conv2(torch.relu(self.bn1(self.conv1(x)))))
        return torch.relu(out + self.downsample(x))


class InvertedResidual(nn.Module):
    """x -> conv1x1-bn-relu6 -> dw3x3-bn-relu6 -> conv1x1-bn -> (+ x)   (MobileNetV2, stride 1)"""

    def __init__(self, c: int = 8, expand: int = 4) -> None:
        super().__init__()
        h = c * expand
        self.block = nn.Sequential(
            nn.Conv2d(c, h, 1, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, h, 3, padding=1, groups=h, bias=False), nn.BatchNorm2d(h), nn.ReLU6(),
            nn.Conv2d(h, c, 1, bias=False), nn.BatchNorm2d(c),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class TransformerBlock(nn.Module):
    """x -> LN -> q,k,v linear -> softmax(q k^T * s) v -> linear -> (+ x) -> LN -> linear-gelu-linear -> (+)   (pre-LN)"""

    def __init__(self, d: int = 16, heads: int = 2) -> None:
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.q, self.k, self.v, self.o = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.fc1, self.fc2 = nn.Linear(d, 2 * d), nn.Linear(2 * d, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        hd = d // self.heads
        y = self.ln1(x)
        q, k, v = (p(y).view(b, t, self.heads, hd).transpose(1, 2) for p in (self.q, self.k, self.v))
        attn = torch.softmax(torch.matmul(q, k.transpose(-2, -1)) * hd**-0.5, dim=-1)
        x = x + self.o(torch.matmul(attn, v).transpose(1, 2).reshape(b, t, d))
        return x + self.fc2(nn.functional.gelu(self.fc1(self.ln2(x))))


class FloatOps(nn.Module):
    """x -> conv, conv -> cat -> * 0.5 -> avgpool + maxpool -> flatten -> linear   (ops TensorRT gets no Q/DQ for)"""

    def __init__(self, c: int = 4) -> None:
        super().__init__()
        self.a, self.b = nn.Conv2d(c, c, 3, padding=1), nn.Conv2d(c, c, 3, padding=1)
        self.fc = nn.Linear(2 * c * 4 * 4, 10)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = torch.cat([self.a(x), self.b(x)], 1) * 0.5
        z = nn.functional.avg_pool2d(y, 2) + nn.functional.max_pool2d(y, 2)
        return self.fc(torch.flatten(z, 1))


PATTERNS: dict[str, tuple[type[nn.Module], tuple[int, ...]]] = {
    "resnet_identity": (ResidualBlock, (8, 8, 8)),
    "resnet_downsample": (DownsampleBlock, (8, 8, 8)),
    "mobilenetv2": (InvertedResidual, (8, 8, 8)),
    "transformer": (TransformerBlock, (6, 16)),
    "float_ops": (FloatOps, (4, 8, 8)),
}


@dataclass(frozen=True)
class Quantized:
    model: nn.Module
    qmodel: QuantizedModel
    onnx: onnx.ModelProto
    x: torch.Tensor


def quantize_for_tensorrt(model: nn.Module, x: torch.Tensor, recipe: Recipe | None = None) -> QuantizedModel:
    """Capture, calibrate and quantize with the tensorrt target's own constraints and placement."""
    recipe = recipe or Recipe(activations=QScheme(mode="sym"))
    cap = capture(model, (x[:2],))
    stats = calibrate(cap, recipe, [(x[i : i + 16],) for i in range(0, len(x), 16)])
    target = TensorRTTarget()
    options = target.parse_options({})
    return quantize(cap, recipe, stats, target.constraints(options), target.name, target.placement(options))
