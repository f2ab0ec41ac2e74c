"""Small scriptable adapters and the constructors of torch.ao quantized modules.

aten.lstm/aten.gru return flat tuples while torch.ao's dynamic LSTM/GRU return
(output, hidden) and hide ``forward`` from TorchScript, so two adapters keep the
graph's calling convention. TorchScript stores their code in the artifact: loading
it needs torch only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn
from torch.ao.nn import intrinsic as _nni  # noqa: F401  (registers the fused quantized modules)
from torch.ao.nn import quantized as nnq
from torch.ao.nn.intrinsic import quantized as nniq
from torch.ao.nn.quantized import dynamic as nnqd

__all__ = [
    "DynamicGRU",
    "DynamicLSTM",
    "dynamic_linear",
    "dynamic_rnn",
    "quantized_conv",
    "quantized_embedding",
    "quantized_linear",
]


class DynamicLSTM(nn.Module):
    """aten.lstm's convention (output, h_n, c_n) around torch.ao's dynamic LSTM."""

    def __init__(self, lstm: nnqd.LSTM) -> None:
        super().__init__()
        self.lstm = lstm

    def forward(self, x: Tensor, h0: Tensor, c0: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        out, hidden = self.lstm.forward_tensor(x, (h0, c0))
        return out, hidden[0], hidden[1]


class DynamicGRU(nn.Module):
    """aten.gru's convention (output, h_n) around torch.ao's dynamic GRU."""

    def __init__(self, gru: nnqd.GRU) -> None:
        super().__init__()
        self.gru = gru

    def forward(self, x: Tensor, h0: Tensor) -> tuple[Tensor, Tensor]:
        return self.gru.forward_tensor(x, h0)


def quantized_conv(rank: int, qweight: Tensor, bias: Tensor | None, stride: list[int], padding: list[int],
                   dilation: list[int], groups: int, relu: bool, scale: float, zero_point: int) -> nn.Module:
    """A static quantized Conv1d/Conv2d (fused with ReLU when ``relu``) with the given output parameters."""
    cls: Any = {(1, False): nnq.Conv1d, (1, True): nniq.ConvReLU1d, (2, False): nnq.Conv2d, (2, True): nniq.ConvReLU2d}[(rank, relu)]
    out_ch, in_per_group = qweight.shape[0], qweight.shape[1]
    m = cls(in_per_group * groups, out_ch, tuple(qweight.shape[2:]), stride=tuple(stride), padding=tuple(padding),
            dilation=tuple(dilation), groups=groups, bias=bias is not None)
    m.set_weight_bias(qweight, bias)
    m.scale, m.zero_point = float(scale), int(zero_point)
    return m


def quantized_linear(qweight: Tensor, bias: Tensor | None, relu: bool, scale: float, zero_point: int) -> nn.Module:
    m = (nniq.LinearReLU if relu else nnq.Linear)(qweight.shape[1], qweight.shape[0], bias_=bias is not None)
    m.set_weight_bias(qweight, bias)
    m.scale, m.zero_point = float(scale), int(zero_point)
    return m


def dynamic_linear(qweight: Tensor, bias: Tensor | None) -> nn.Module:
    """torch.ao's dynamic Linear: it quantizes its input per call with ``reduce_range``,
    which fbgemm/x86 honours (7-bit) and qnnpack ignores (8-bit)."""
    m = nnqd.Linear(qweight.shape[1], qweight.shape[0], bias_=bias is not None, dtype=torch.qint8)
    m.set_weight_bias(qweight, bias)
    return m


def quantized_embedding(qweight: Tensor) -> nn.Module:
    """Weight-only int8 Embedding. torch stores its rows as uint8 with float per-row
    parameters; a signed code q with zero point z is the unsigned code q + 128 with
    zero point z + 128, so the rows dequantize to exactly the simulation's values."""
    per_channel = qweight.qscheme() in _PER_CHANNEL
    rows = qweight.shape[0]
    scales = qweight.q_per_channel_scales().float() if per_channel else torch.full((rows,), qweight.q_scale())
    zps = qweight.q_per_channel_zero_points().float() if per_channel else torch.full((rows,), float(qweight.q_zero_point()))
    m = nnq.Embedding(rows, qweight.shape[1], dtype=torch.quint8)
    m.set_weight(torch.quantize_per_channel(qweight.dequantize(), scales, zps + 128.0, 0, torch.quint8))
    return m


def dynamic_rnn(kind: str, qweights: list[Tensor], biases: list[Tensor], num_layers: int, bidirectional: bool,
                batch_first: bool) -> nn.Module:
    """torch.ao's dynamic LSTM/GRU from per-layer int8 matrices, wrapped in aten's calling convention."""
    directions = 2 if bidirectional else 1
    hidden = qweights[1].shape[1]
    cls: Any = nnqd.LSTM if kind == "lstm" else nnqd.GRU
    rnn = cls(qweights[0].shape[1], hidden, num_layers, bias=True, batch_first=batch_first, bidirectional=bidirectional,
              dtype=torch.qint8)
    params: dict[str, Tensor] = {}
    for i in range(num_layers * directions):
        layer, direction = divmod(i, directions)
        suffix = f"_l{layer}" + ("_reverse" if direction else "")
        params[f"weight_ih{suffix}"], params[f"weight_hh{suffix}"] = qweights[2 * i], qweights[2 * i + 1]
        params[f"bias_ih{suffix}"], params[f"bias_hh{suffix}"] = biases[2 * i], biases[2 * i + 1]
    rnn.set_weight_bias(params)
    return DynamicLSTM(rnn) if kind == "lstm" else DynamicGRU(rnn)


_PER_CHANNEL = (torch.per_channel_affine, torch.per_channel_symmetric)
