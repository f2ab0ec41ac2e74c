"""Float twins of quantized layers: the float computation, a ``Tap`` where each quantizer was."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

__all__ = ["TappedAct", "TappedConv", "TappedLinear"]


class TappedConv(nn.Module):
    """A float convolution (BatchNorm folded) with taps where the QAT module quantized.

    ``m`` is the QAT convolution of torch.ao, Brevitas or ModelOpt: its stride, padding, dilation and groups are copied.
    """

    def __init__(self, m: Any, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool,
                 wtap: nn.Module | None, otap: nn.Module | None, itap: nn.Module | None = None) -> None:
        super().__init__()
        self.itap = itap or nn.Identity()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone()) if bias is not None else None
        self.stride, self.padding, self.dilation, self.groups = m.stride, m.padding, m.dilation, m.groups
        self.dims = weight.dim() - 2
        self.relu = relu
        self.wtap = wtap or nn.Identity()
        self.otap = otap or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        conv = (F.conv1d, F.conv2d, F.conv3d)[self.dims - 1]
        y = conv(self.itap(x), self.wtap(self.weight), self.bias, self.stride, self.padding, self.dilation, self.groups)
        return self.otap(F.relu(y) if self.relu else y)


class TappedLinear(nn.Module):
    def __init__(self, weight: torch.Tensor, bias: torch.Tensor | None, relu: bool, wtap: nn.Module | None, otap: nn.Module | None,
                 itap: nn.Module | None = None) -> None:
        super().__init__()
        self.itap = itap or nn.Identity()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone()) if bias is not None else None
        self.relu = relu
        self.wtap = wtap or nn.Identity()
        self.otap = otap or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.linear(self.itap(x), self.wtap(self.weight), self.bias)
        return self.otap(F.relu(y) if self.relu else y)


class TappedAct(nn.Module):
    """An activation (or identity) between an input tap and an output tap."""

    def __init__(self, act: nn.Module, itap: nn.Module | None, otap: nn.Module | None) -> None:
        super().__init__()
        self.act = act
        self.itap = itap or nn.Identity()
        self.otap = otap or nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.otap(self.act(self.itap(x)))
