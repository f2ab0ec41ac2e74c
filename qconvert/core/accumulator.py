"""How wide each conv/linear accumulator gets on real data, against the device's width.

A quantized conv or linear multiplies integer inputs (minus their zero point) by
integer weights and sums the products, plus the int32 bias, in an accumulator. Where
the sum is added up in any order (SIMD lanes, tiles), any subset of the products can
be a partial sum, so the widest partial sum of one output lies between minus the sum
of its negative terms and the sum of its positive terms. ``widest_accumulators``
runs the Q/DQ simulation on data and measures, per layer, that bound and the final
sum, as signed bit widths; a layer whose bound needs more bits than its accumulator
has would overflow (or saturate) on the device for some order of additions.

Sums are computed in float64 from the integers of the Q/DQ graph: products of 16-bit
values summed over fewer than 2**21 terms stay below 2**53, where float64 is exact.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import torch
from torch.fx import GraphModule, Interpreter, Node

from qconvert.core.graph import OpKind, arg_int, arg_node, attr_of, module_of, op_kind

__all__ = ["AccumulatorWidth", "signed_bits", "widest_accumulators"]


def _dequantize_ops() -> tuple[set[Any], set[Any]]:
    """Per-tensor and per-channel dequantize ops (registered once torchao's PT2E is imported)."""
    import torchao.quantization.pt2e  # noqa: F401

    qd = torch.ops.quantized_decomposed
    return {qd.dequantize_per_tensor.default, qd.dequantize_per_tensor.tensor}, {qd.dequantize_per_channel.default}


def signed_bits(peak: int) -> int:
    """Bits of a two's-complement integer holding every value in [-peak, peak] (sign included)."""
    return int(peak).bit_length() + 1


@dataclass(frozen=True)
class AccumulatorWidth:
    """The widest accumulator one layer needed on the data, and the width it is checked against."""

    layer: str
    fan_in: int
    #: Signed bits of the widest final sum (products plus bias).
    final_bits: int
    #: Signed bits of the widest partial sum in any order of additions.
    partial_bits: int
    limit: int | None

    @property
    def overflows(self) -> bool:
        return self.limit is not None and self.partial_bits > self.limit


@dataclass
class _Peak:
    fan_in: int
    final: float = 0.0
    partial: float = 0.0


def _ints_of(dq: Node, value: torch.Tensor, gm: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor] | None:
    """(integers minus zero point in float64, scale) of what a dequantize node reads, or None."""
    per_tensor, per_channel = _dequantize_ops()
    if dq.target in per_tensor:
        scale, zp = dq.args[1], dq.args[2]
        scale_t = torch.as_tensor(attr_of(gm, scale.target) if isinstance(scale, Node) else scale, dtype=torch.float64)
        zp_v = attr_of(gm, zp.target) if isinstance(zp, Node) else zp
        return value.double() - torch.as_tensor(zp_v, dtype=torch.float64), scale_t.reshape(())
    if dq.target in per_channel:
        s, z = attr_of(gm, arg_node(dq, 1).target).double(), attr_of(gm, arg_node(dq, 2).target).double()
        shape = [1] * value.dim()
        shape[arg_int(dq, 3, "axis", 0)] = -1
        return value.double() - z.view(shape), s
    return None


class _Measure(Interpreter):
    def __init__(self, gm: GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=False)  # the integers feeding a dequantize are read after it ran
        self.peaks: dict[str, _Peak] = {}

    def run_node(self, n: Node) -> Any:
        result = super().run_node(n)
        if op_kind(n) == OpKind.WEIGHTED:
            self._measure(n)
        return result

    def _int_arg(self, arg: Any) -> tuple[torch.Tensor, torch.Tensor] | None:
        if not isinstance(arg, Node) or arg.op != "call_function" or not isinstance(arg.args[0], Node):
            return None
        src = arg.args[0]
        value = attr_of(self.module, src.target) if src.op == "get_attr" else self.env.get(src)
        if not isinstance(value, torch.Tensor) or value.is_floating_point():
            return None
        return _ints_of(arg, value, self.module)

    def _measure(self, n: Node) -> None:
        x, w = self._int_arg(n.args[0]), self._int_arg(n.args[1])
        if x is None or w is None:
            return
        (xi, sx), (wi, sw) = x, w
        rest = tuple(n.args[3:])
        op = n.target

        def run(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
            return op(a, b, None, *rest, **n.kwargs)  # type: ignore[operator]  # fx types a call_function target as str too

        xp, xn, wp, wn = xi.clamp(min=0), (-xi).clamp(min=0), wi.clamp(min=0), (-wi).clamp(min=0)
        pos = run(xp, wp) + run(xn, wn)
        neg = run(xp, wn) + run(xn, wp)
        bias = self._bias(n, sx * sw, pos)
        final = (pos - neg + bias).abs().amax()
        partial = torch.maximum(pos + bias.clamp(min=0), neg + (-bias).clamp(min=0)).amax()
        peak = self.peaks.setdefault(module_of(n) or n.name, _Peak(int(wi[0].numel())))
        peak.final, peak.partial = max(peak.final, float(final)), max(peak.partial, float(partial))

    def _bias(self, n: Node, acc_scale: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        """The bias in accumulator units, broadcast over the output channels (conv: axis 1, linear: last)."""
        arg = n.args[2] if len(n.args) > 2 else None
        if not isinstance(arg, Node):
            return torch.zeros((), dtype=torch.float64)
        ints = self._int_arg(arg)
        value = ints[0] if ints is not None else torch.round(self.env[arg].double() / acc_scale)
        shape = [1] * like.dim()
        shape[1 if n.target != torch.ops.aten.linear.default else -1] = -1
        return value.reshape(shape)


@torch.no_grad()
def widest_accumulators(graph: GraphModule, batches: Iterable[tuple[torch.Tensor, ...]],
                        limit_of: Callable[[str], int | None]) -> tuple[AccumulatorWidth, ...]:
    """Per quantized conv/linear layer of ``graph`` (a converted Q/DQ graph), the widest accumulator
    over ``batches``, with the width ``limit_of(layer)`` it must fit (None: not checked)."""
    measure = _Measure(graph)
    for batch in batches:
        measure.run(*batch)
    return tuple(
        AccumulatorWidth(layer, p.fan_in, signed_bits(round(p.final)), signed_bits(round(p.partial)), limit_of(layer))
        for layer, p in measure.peaks.items()
    )
