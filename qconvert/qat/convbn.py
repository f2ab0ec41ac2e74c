"""A convolution with its BatchNorm folded in on the fly, for training.

A build folds BatchNorm into the convolution before quantizing its weights, so the
weights that train must be the folded ones: w * gamma / sqrt(running_var + eps),
fake-quantized per output channel. Until the statistics freeze, the convolution's
output is divided back by that factor and normalized with the batch statistics,
which also updates the running ones (Krishnamoorthi 2018; torchao's QAT conv-bn
pattern). Once frozen, and in eval mode, it is exactly the deployed layer: the folded
weights and the folded bias (beta + (b - running_mean) * gamma / sqrt(running_var + eps)),
computed with the same expressions as torch's ``fuse_conv_bn_weights``, which the
core's BatchNorm folding calls.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from qconvert.qat.fake_quant import BiasFakeQuant, FakeQuant

__all__ = ["ConvBnQAT"]


class ConvBnQAT(nn.Module):
    """Called from the training graph as ``(x, weight, bias, gamma, beta, running_mean, running_var)``.

    The tensors stay attributes of the graph (their names are the float model's), so
    the trained float model is the graph's own state; this module holds the conv's
    literal arguments, BatchNorm's momentum and eps, and the weight's fake quantizer.
    """

    def __init__(self, conv: Callable[..., torch.Tensor], conv_args: tuple[Any, ...], momentum: float, eps: float,
                 weight_fq: FakeQuant | None) -> None:
        super().__init__()
        self.conv, self.conv_args = conv, conv_args
        self.momentum, self.eps = momentum, eps
        self.weight_fq = weight_fq
        #: Set when a build quantizes the folded bias (int32); applied once BatchNorm is frozen.
        self.bias_fq: BiasFakeQuant | None = None
        #: Set by ``QATModel`` each step: BatchNorm statistics frozen.
        self.bn_frozen = False

    def forward(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, gamma: torch.Tensor | None,
                beta: torch.Tensor | None, running_mean: torch.Tensor, running_var: torch.Tensor) -> torch.Tensor:
        gamma = gamma if gamma is not None else torch.ones_like(running_mean)
        beta = beta if beta is not None else torch.zeros_like(running_mean)
        rsqrt = torch.rsqrt(running_var + self.eps)
        factor = gamma * rsqrt
        w_shape = [-1] + [1] * (weight.dim() - 1)
        w = weight * factor.reshape(w_shape)
        if self.weight_fq is not None:
            w = self.weight_fq(w)
        if self.training and not self.bn_frozen:
            out_shape = [1, -1] + [1] * (weight.dim() - 2)
            y = self.conv(x, w, None, *self.conv_args) / factor.reshape(out_shape)
            if bias is not None:
                y = y + bias.reshape(out_shape)
            return F.batch_norm(y, running_mean, running_var, gamma, beta, True, self.momentum, self.eps)
        b = bias if bias is not None else torch.zeros_like(running_mean)
        folded_bias = (b - running_mean) * rsqrt * gamma + beta
        if self.bias_fq is not None:
            folded_bias = self.bias_fq(folded_bias)
        return self.conv(x, w, folded_bias, *self.conv_args)
