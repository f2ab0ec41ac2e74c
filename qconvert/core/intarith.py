"""Integer requantization in the simulation: conv and linear computed as a device's integer kernels do.

The Q/DQ graph runs conv and linear in float32 on dequantized values and rounds the output half
to even. That is within one step of any integer kernel, but not bit-exact: float32 sums and another
rounding rule flip a value near a tie (about one value in a million on digits). Recipe
``requantize.arithmetic`` asks for a device's own arithmetic instead. ``integer_simulation`` returns
a copy of the converted graph in which each such layer computes its int32 accumulator exactly,

    acc = sum((x_q - zp_x) * (w_q - zp_w)) + bias_q      (float64 on integers: exact below 2**53)

and its output integers from ``acc`` by the device's rule:

- ``fp32``: ``q = round_half_even(float32(acc) * s)`` with ``s = float32(s_x * s_w) / s_out`` in
  float32: XNNPACK's fp32 requantization, which LiteRT runs by default on CPU;
- ``gemmlowp``: TFLite's reference integer kernels (TFLite Micro's too): ``QuantizeMultiplier`` of
  the double ratio ``s_x * s_w / s_out`` gives a Q31 multiplier M and a shift; ``q =
  RoundingDivideByPOT(SaturatingRoundingDoublingHighMul(acc * 2**left, M), right)``, two roundings,
  each half away from zero;

then ``q + zp_out`` saturates to the output's range. The layer hands on the dequantized value of
``q`` (exactly on the grid), so the graph's own quantize after it (and a fused ReLU before that)
gives ``q`` back. The graph the exporters read is not changed: only the simulation runs this copy.
"""

from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.fx import GraphModule, Node

from qconvert.core.graph import OpKind, arg_float, arg_int, arg_node, attr_of, module_of, op_kind
from qconvert.core.policy import QuantPolicy

__all__ = ["ARITHMETICS", "IntegerLayer", "integer_simulation", "quantize_multiplier", "requantize_fp32", "requantize_gemmlowp"]

#: Recipe ``requantize.arithmetic`` values that replace the float simulation of a layer.
ARITHMETICS = ("fp32", "gemmlowp")

_qd = torch.ops.quantized_decomposed
_Q = _qd.quantize_per_tensor.default
_DQ = _qd.dequantize_per_tensor.default
_DQC = _qd.dequantize_per_channel.default


def quantize_multiplier(ratio: float) -> tuple[int, int]:
    """TFLite's ``QuantizeMultiplier``: (M, shift) with ratio ~= M * 2**(shift - 31), M in [2**30, 2**31)."""
    if ratio == 0.0:
        return 0, 0
    q, shift = math.frexp(ratio)
    m = math.floor(q * (1 << 31) + 0.5)  # std::round: half away from zero (q > 0)
    if m == 1 << 31:
        m, shift = m // 2, shift + 1
    if shift < -31:
        return 0, 0
    return m, shift


def requantize_gemmlowp(acc: torch.Tensor, multiplier: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
    """TFLite's ``MultiplyByQuantizedMultiplier`` on int64 tensors (broadcast per channel)."""
    left = torch.clamp(shift, min=0)
    right = torch.clamp(-shift, min=0)
    a = acc * torch.pow(2, left)
    ab = a * multiplier
    nudge = torch.where(ab >= 0, torch.tensor(1 << 30, dtype=torch.int64), torch.tensor(1 - (1 << 30), dtype=torch.int64))
    high = torch.div(ab + nudge, 1 << 31, rounding_mode="trunc")
    mask = torch.pow(2, right) - 1
    threshold = torch.bitwise_right_shift(mask, 1) + (high < 0).to(torch.int64)
    return torch.bitwise_right_shift(high, right) + (torch.bitwise_and(high, mask) > threshold).to(torch.int64)


def requantize_fp32(acc: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """XNNPACK's fp32 requantization: float32(acc) * scale in float32, rounded half to even."""
    return torch.round(acc.to(torch.float32) * scale).to(torch.int64)


@dataclass(frozen=True)
class _Layer:
    """What the rewrite reads off one conv/linear and the quantize after it."""

    conv: Node
    x_q: Node
    x_scale: float
    x_zp: int
    weight: torch.Tensor  # integers minus the weight zero point, float64
    w_scale: torch.Tensor  # per output channel, float32
    bias: torch.Tensor | None  # int32 codes, float64
    out_scale: float
    out_zp: int
    qmin: int
    qmax: int


class IntegerLayer(nn.Module):
    """One conv/linear on integer inputs with a device's requantization; returns the dequantized output."""

    # buffers, registered in __init__ (declared here for their type)
    scale: torch.Tensor
    multiplier: torch.Tensor
    shift: torch.Tensor

    def __init__(self, op: Any, layer: _Layer, rest: tuple[Any, ...], arithmetic: str) -> None:
        super().__init__()
        self.op, self.rest, self.arithmetic = op, rest, arithmetic
        self.x_zp, self.out_zp, self.qmin, self.qmax = layer.x_zp, layer.out_zp, layer.qmin, layer.qmax
        self.out_scale = layer.out_scale
        self.register_buffer("weight", layer.weight)
        self.register_buffer("bias", layer.bias)
        channels = layer.w_scale.numel()
        shape = (-1,) if op == torch.ops.aten.linear.default else (1, -1) + (1,) * (layer.weight.dim() - 2)
        self.shape = shape
        if arithmetic == "fp32":
            x = torch.tensor(layer.x_scale, dtype=torch.float32)
            scale = (x * layer.w_scale.to(torch.float32)) / torch.tensor(layer.out_scale, dtype=torch.float32)
            self.register_buffer("scale", scale.reshape(channels))
        else:
            pairs = [quantize_multiplier(float(layer.x_scale) * float(s) / float(layer.out_scale)) for s in layer.w_scale.tolist()]
            self.register_buffer("multiplier", torch.tensor([m for m, _ in pairs], dtype=torch.int64))
            self.register_buffer("shift", torch.tensor([s for _, s in pairs], dtype=torch.int64))

    def forward(self, x_q: torch.Tensor) -> torch.Tensor:
        x = x_q.to(torch.float64) - self.x_zp
        acc = torch.round(self.op(x, self.weight, self.bias, *self.rest)).to(torch.int64)
        if self.arithmetic == "fp32":
            q = requantize_fp32(acc, self.get_buffer("scale").view(self.shape))
        else:
            q = requantize_gemmlowp(acc, self.get_buffer("multiplier").view(self.shape), self.get_buffer("shift").view(self.shape))
        q = torch.clamp(q + self.out_zp, self.qmin, self.qmax)
        return ((q - self.out_zp).to(torch.float32) * self.out_scale).to(torch.float32)


def _value(gm: GraphModule, arg: Any) -> torch.Tensor:
    return attr_of(gm, str(arg.target)) if isinstance(arg, Node) else torch.tensor(arg)


def _weight(gm: GraphModule, dq: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(integers minus zero point as float64, scale per output channel) of a dequantized constant weight."""
    if not isinstance(dq, Node) or dq.target not in (_DQ, _DQC) or not isinstance(dq.args[0], Node) or dq.args[0].op != "get_attr":
        return None
    q = attr_of(gm, str(dq.args[0].target))
    if q.is_floating_point():
        return None
    scale, zp = _value(gm, dq.args[1]).to(torch.float32), _value(gm, dq.args[2]).to(torch.float64)
    if dq.target == _DQC:
        if dq.args[3] != 0:
            return None
        zp = zp.view(-1, *([1] * (q.dim() - 1)))
    return q.to(torch.float64) - zp, scale.reshape(-1)


def _bias(gm: GraphModule, dq: Any) -> torch.Tensor | None | bool:
    """int32 bias codes as float64; None without a bias; False where the bias is not an int32 constant."""
    if dq is None:
        return None
    if not isinstance(dq, Node) or dq.target not in (_DQ, _DQC) or not isinstance(dq.args[0], Node) or dq.args[0].op != "get_attr":
        return False
    q = attr_of(gm, str(dq.args[0].target))
    return q.to(torch.float64) if q.dtype == torch.int32 else False


def _output_quantize(conv: Node) -> Node | None:
    users = list(conv.users)
    if len(users) == 1 and op_kind(users[0]) == OpKind.FUSED_ACT:
        users = list(users[0].users)
    return users[0] if len(users) == 1 and users[0].target == _Q else None


def _read(gm: GraphModule, conv: Node) -> _Layer | None:
    x_dq = conv.args[0]
    if not isinstance(x_dq, Node) or x_dq.target != _DQ or len(conv.args) < 2:
        return None
    w = _weight(gm, conv.args[1])
    bias = _bias(gm, conv.args[2] if len(conv.args) > 2 else None)
    q = _output_quantize(conv)
    if w is None or bias is False or q is None or not isinstance(q.args[1], float):
        return None
    weight, w_scale = w
    channels = weight.shape[0]
    if w_scale.numel() not in (1, channels):
        return None
    return _Layer(conv, arg_node(x_dq, 0), arg_float(x_dq, 1), arg_int(x_dq, 2), weight, w_scale.expand(channels).clone(),
                  bias if isinstance(bias, torch.Tensor) else None, arg_float(q, 1), arg_int(q, 2), arg_int(q, 3), arg_int(q, 4))


def integer_simulation(converted: GraphModule, policy: QuantPolicy) -> tuple[GraphModule | None, tuple[str, ...]]:
    """A copy of ``converted`` with each conv/linear whose ``requantize.arithmetic`` is a device's computed in
    that arithmetic, and the layers done; (None, ()) when no layer asks for it.

    A layer without an int32 bias, a constant integer weight and a per-tensor quantized input and output
    keeps the float simulation (it is not named).
    """
    wanted = {n.name: req.arithmetic for n in converted.graph.nodes if op_kind(n) == OpKind.WEIGHTED
              for req in [policy.requantize(module_of(n))] if req is not None and req.arithmetic in ARITHMETICS}
    if not wanted:
        return None, ()
    gm = copy.deepcopy(converted)
    done: list[str] = []
    for node in list(gm.graph.nodes):
        if node.name not in wanted or node.kwargs:
            continue
        layer = _read(gm, node)
        if layer is None:
            continue
        name = f"_qconvert_integer_{node.name}"
        gm.add_submodule(name, IntegerLayer(node.target, layer, tuple(node.args[3:]), wanted[node.name]))
        with gm.graph.inserting_before(node):
            new = gm.graph.call_module(name, (layer.x_q,))
        new.meta = dict(node.meta)
        node.replace_all_uses_with(new)
        gm.graph.erase_node(node)
        done.append(module_of(new) or node.name)
    gm.graph.eliminate_dead_code()
    gm.recompile()
    return gm, tuple(done)
